"""The web layer: customer chat (REST + Server-Sent Events), the human console, and their pages.

``create_app(settings, desk)`` builds the FastAPI app; ``deskline serve`` runs it under uvicorn.
"""

from deskline.api.app import create_app, create_app_from_env
from deskline.api.auth import AuthStore
from deskline.api.settings import WebSettings

__all__ = ["AuthStore", "WebSettings", "create_app", "create_app_from_env"]
