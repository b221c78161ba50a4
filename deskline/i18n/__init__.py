"""Languages: which one a customer writes in, and the desk's words, amounts and dates in it."""

from deskline.i18n.catalog import Catalog, CatalogError, read_catalog
from deskline.i18n.detect import Detection, detect, resolve
from deskline.i18n.formats import language_names, localise_facts

__all__ = ["Catalog", "CatalogError", "Detection", "detect", "language_names", "localise_facts", "read_catalog",
           "resolve"]
