"""Finding the desk to run: ``--desk module:attribute``, ``DESKLINE_DESK``, or the built-in one.

As with uvicorn, the current directory is importable, so ``deskline chat --desk shop.desk:desk``
works from a desk project's folder without installing it. The attribute may be a ``Desk`` or a
function with no arguments that returns one.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

from deskline.definition.model import Desk
from deskline.definition.validate import DeskDefinitionError, validate

BUILTIN_DESK = "deskline.agents.builtin:desk"
_LOADED: dict[tuple[str, str | None], Desk] = {}


def desk_spec(spec: str | None = None) -> str:
    """The desk to load: ``spec``, else ``$DESKLINE_DESK``, else the built-in desk."""
    return spec or os.environ.get("DESKLINE_DESK") or BUILTIN_DESK


def load_desk(spec: str | None = None, *, router: str | Path | None = None, check: bool = True) -> Desk:
    """The validated desk named by ``spec`` (see ``desk_spec``), with ``router`` (else
    ``$DESKLINE_ROUTER``, else its own) as its router file. Loaded once per process.
    ``check=False``: as imported, not validated (tools that inspect a desk being written)."""
    spec = desk_spec(spec)
    router = router or os.environ.get("DESKLINE_ROUTER") or None
    if not check:
        return _import(spec).with_router(router)
    key = (spec, str(router) if router else None)
    found = _LOADED.get(key)
    if found is None:
        found = _LOADED[key] = validate(_import(spec).with_router(router))
    return found


def _import(spec: str) -> Desk:
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise DeskDefinitionError(spec, [f"{spec!r} is not module:attribute (e.g. shop.desk:desk)"])
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise DeskDefinitionError(spec, [f"cannot import module {module_name!r}: {exc}"]) from exc
    value = module
    for part in attribute.split("."):
        if not hasattr(value, part):
            raise DeskDefinitionError(spec, [f"module {module_name!r} has no attribute {attribute!r}"])
        value = getattr(value, part)
    if not isinstance(value, Desk) and callable(value):
        value = value()
    if not isinstance(value, Desk):
        raise DeskDefinitionError(spec, [f"{spec} is a {type(value).__name__}, not a deskline.Desk"])
    return value
