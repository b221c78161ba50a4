"""Each package's ``__all__`` names exactly what it exports, and every name resolves."""

import importlib

import pytest


@pytest.mark.parametrize("package", ["deskline", "deskline.handoffs", "deskline.eventlog", "deskline.hierarchy",
                                     "deskline.agents", "deskline.routing", "deskline.api", "deskline.observe"])
def test_all_names_resolve(package: str) -> None:
    """Every name in __all__ is importable from the package."""
    module = importlib.import_module(package)
    assert module.__all__, package
    for name in module.__all__:
        assert hasattr(module, name), f"{package}.{name}"
