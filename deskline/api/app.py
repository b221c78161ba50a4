"""The FastAPI app: customer chat API, human console API, and the two pages, on one desk.

``create_app`` wires ports it is given (or opens the configured desk) into one ``Services``
object on ``app.state``; nothing is created at import. ``deskline serve`` runs
``create_app_from_env`` in each uvicorn worker, and the workers share only the database (and
Redis, when configured): a stream in one worker is woken by another worker's appends through the
event bus (PostgreSQL LISTEN/NOTIFY or Redis pub/sub, ``deskline.api.bus``), and otherwise finds
them on its poll.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio.to_thread
import structlog
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from deskline import __version__
from deskline.api import console, customers, problems
from deskline.api.auth import AuthStore
from deskline.api.bus import open_bus
from deskline.api.deps import Services
from deskline.api.identity import CustomerTokens
from deskline.api.middleware import BodyLimit, RequestLog
from deskline.api.quotas import Quotas
from deskline.api.schemas import MAX_TEXT_CHARS_DOC
from deskline.api.settings import WebSettings
from deskline.api.streams import Notifier
from deskline.api.sweeper import sweeping
from deskline.config import Settings
from deskline.definition import Desk
from deskline.errors import ConfigError, StoreUnavailable
from deskline.eventlog.database import make_engine
from deskline.eventlog.queue import HumanQueue
from deskline.eventlog.store import SqlEventStore
from deskline.hierarchy.desk import SupportDesk
from deskline.hierarchy.humans import HumanConsole
from deskline.observe.hooks import NullObserver
from deskline.observe.metrics import DeskMetrics

_log = structlog.get_logger("deskline.api")
STATIC = Path(__file__).parent / "static"
_PAGE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _lifespan(bus: Any, desk: SupportDesk, sweep_interval_s: float) -> Callable[[FastAPI], Any]:
    """The event bus's listener (if any) and the recovery sweep, for as long as the app serves."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            from deskline.i18n.detect import warm

            await asyncio.get_running_loop().run_in_executor(None, warm)  # the language model, off the loop
            if getattr(app.state, "freeze_startup_heap", False):
                from deskline.runtime import freeze_startup_heap

                freeze_startup_heap()
            if bus is not None:
                await stack.enter_async_context(bus.lifespan(app))
            await stack.enter_async_context(sweeping(desk, sweep_interval_s))
            yield

    return lifespan


def create_app(
    settings: Settings,
    desk: SupportDesk | Desk | None = None,
    *,
    web: WebSettings | None = None,
    engine: Engine | None = None,
    clock: Callable[[], float] = time.time,
) -> FastAPI:
    """The web app over ``desk``: a running ``SupportDesk``, or a ``Desk`` definition opened on
    ``settings.database_url`` (default: the desk the settings name, else the built-in one).
    Quotas (``deskline.api.quotas``) are on at the limits ``web`` gives.

    Tokens and agent keys go in ``engine``'s database: by default the desk's own; an in-memory
    desk gets an in-memory SQLite. ``clock`` is what the queue measures waiting times against.
    """
    from deskline.runtime import open_desk

    web = web or WebSettings.from_env()
    metrics = DeskMetrics()
    if desk is None or isinstance(desk, Desk):
        desk = open_desk(settings, observer=metrics, desk=desk)
    elif isinstance(desk.observer, NullObserver):
        desk.observer = metrics
    if engine is None:
        engine = desk.store.engine if isinstance(desk.store, SqlEventStore) else make_engine("sqlite://")
    notifier = Notifier()
    bus = open_bus(settings, web, desk, notifier)  # wraps desk.store: every append is published
    svc = Services(
        settings=settings,
        web=web,
        desk=desk,
        console=HumanConsole(desk),
        auth=AuthStore(engine, key_cache_s=web.agent_key_cache_s),
        notifier=notifier,
        queue=HumanQueue(),
        clock=clock,
        tokens=CustomerTokens.configured(web.jwt_secret, web.jwt_public_key, web.jwt_issuer, web.jwt_audience,
                                         web.jwt_max_age_s),
        quotas=Quotas(web, metrics),
    )

    app = FastAPI(
        title="deskline",
        version=__version__,
        summary="Customer chat (REST + Server-Sent Events) and the human agents' console.",
        lifespan=_lifespan(bus, desk, web.sweep_interval_s),
    )
    app.state.deskline = svc
    problems.install(app)
    app.include_router(customers.router)
    app.include_router(console.router)
    _pages(app, web)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process and its event loop answer. Touches neither the database nor the
        thread pool, so a hung database never makes an orchestrator restart a healthy process."""
        return {"status": "ok"}

    ready_timeout_s = _ready_timeout()
    redis_client: list[Any] = []

    @app.get("/readyz", tags=["ops"], responses={503: {"description": "A dependency did not answer in time."}})
    async def readyz() -> JSONResponse:
        """Readiness: the database (and Redis, when configured) answered within
        ``DESKLINE_READY_TIMEOUT_S``. A 503 names which check failed, never the driver's error."""
        checks = {"database": await _check(lambda: anyio.to_thread.run_sync(_select_one, engine), ready_timeout_s)}
        if web.redis_url:
            if not redis_client:
                redis_client.append(_redis(web.redis_url, ready_timeout_s))
            checks["redis"] = await _check(redis_client[0].ping, ready_timeout_s)
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
    def scrape() -> PlainTextResponse:
        """Prometheus metrics of this process (each API process exposes its own). With the
        database down the queue gauges keep their last values; the scrape still answers."""
        try:
            svc.queue.refresh(desk.store)
            now = clock()
            entries = svc.queue.entries()
            metrics.queue(len(entries), sum(1 for e in entries if e.breaching(now, web.sla_seconds)))
        except (StoreUnavailable, DBAPIError, PoolTimeout) as exc:
            _log.warning("metrics.queue_unavailable", error=type(exc).__name__)
        return PlainTextResponse(metrics.scrape(), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def _pool_timeout(_request: Any, _exc: Exception) -> JSONResponse:
        _log.error("api.database_pool_exhausted")
        return JSONResponse({"error": StoreUnavailable.code, "message": "the database is not available; try again "
                             "shortly"}, status_code=503)

    app.add_exception_handler(PoolTimeout, _pool_timeout)

    app.add_middleware(BodyLimit, max_bytes=web.max_body_bytes)
    if web.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(web.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID"],
            expose_headers=["Idempotent-Replayed", "X-Request-ID"],
            max_age=600,
        )
    app.add_middleware(RequestLog)
    app.openapi = lambda: _openapi(app, settings.max_message_chars)  # type: ignore[method-assign]
    return app


def _ready_timeout() -> float:
    import os

    raw = os.environ.get("DESKLINE_READY_TIMEOUT_S", "").strip()
    try:
        return float(raw) if raw else 2.0
    except ValueError as exc:
        raise ConfigError(f"DESKLINE_READY_TIMEOUT_S must be a number, not {raw!r}") from exc


def _select_one(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def _redis(url: str, timeout_s: float) -> Any:
    import redis.asyncio

    return redis.asyncio.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)


async def _check(probe: Callable[[], Awaitable[Any]], timeout_s: float) -> str:
    """``ok``, ``timeout`` or ``error``: the kind of failure, never its text (hosts, ports)."""
    try:
        async with asyncio.timeout(timeout_s):
            await probe()
    except TimeoutError:
        return "timeout"
    except Exception as exc:  # any failure of the dependency is "not ready"
        _log.warning("readyz.failed", error=type(exc).__name__)
        return "error"
    return "ok"


def create_app_from_env() -> FastAPI:
    """For uvicorn's ``--factory``: one app per worker, configured from ``DESKLINE_*``; a server
    process of its own, so what start-up leaves alive is frozen out of full collections."""
    app = create_app(Settings.from_env(), web=WebSettings.from_env())
    app.state.freeze_startup_heap = True
    return app


def _pages(app: FastAPI, web: WebSettings) -> None:
    ancestors = " ".join(("'self'", *web.cors_origins))  # the chat page may be framed by allowed sites
    csp = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors {}"
    )

    @app.get("/", include_in_schema=False)
    def chat_page() -> FileResponse:
        return FileResponse(
            STATIC / "index.html",
            headers={**_PAGE_HEADERS, "Content-Security-Policy": csp.format(ancestors)},
        )

    @app.get("/console", include_in_schema=False)
    def console_page() -> FileResponse:
        return FileResponse(
            STATIC / "console.html",
            headers={
                **_PAGE_HEADERS,
                "Content-Security-Policy": csp.format("'none'"),
                "X-Frame-Options": "DENY",
            },
        )

    app.mount("/static", StaticFiles(directory=STATIC), name="static")


def _openapi(app: FastAPI, max_chars: int) -> dict[str, Any]:
    """The generated schema, with the configured message limit in place of the default one."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
        for name in ("MessageIn", "HumanMessageIn"):
            text = schema.get("components", {}).get("schemas", {}).get(name, {}).get("properties", {}).get("text")
            if text is not None and text.get("maxLength") == MAX_TEXT_CHARS_DOC:
                text["maxLength"] = max_chars
        app.openapi_schema = schema
    return app.openapi_schema
