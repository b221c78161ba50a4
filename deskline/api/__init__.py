"""The web layer: customer chat (REST + Server-Sent Events), the human console, and their pages.

``create_app(settings, desk)`` builds the FastAPI app; ``deskline serve`` runs it under uvicorn.
Names are imported on first use: ``deskline.api.commands`` is loaded by every ``deskline``
start, and ``deskline ask`` must not pay for FastAPI.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "AuthStore": "deskline.api.auth",
    "WebSettings": "deskline.api.settings",
    "create_app": "deskline.api.app",
    "create_app_from_env": "deskline.api.app",
}

__all__ = ["AuthStore", "WebSettings", "create_app", "create_app_from_env"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'deskline.api' has no attribute {name!r}")
