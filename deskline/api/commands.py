"""``deskline serve`` and ``deskline agents add|list|remove``, registered by ``deskline.cli``.

Only typer is imported here at module level: the CLI imports this file on every start, and
``deskline ask`` must not pay for FastAPI or uvicorn.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

if TYPE_CHECKING:
    from deskline.api.auth import AuthStore
    from deskline.config import Settings

agents = typer.Typer(help="Human agents: keys for the console.", no_args_is_help=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _settings() -> Settings:
    from deskline.config import Settings
    from deskline.logs import configure

    settings = Settings.from_env()
    configure(settings.log_format, settings.log_level)
    return settings


def _fail(message: str) -> NoReturn:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


def _auth() -> AuthStore:
    from deskline.api.auth import AuthStore
    from deskline.eventlog.database import make_engine

    return AuthStore(make_engine(_settings().database_url))


def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on [env DESKLINE_HOST; 127.0.0.1].")] = None,
    port: Annotated[int | None, typer.Option(help="Port [env DESKLINE_PORT; 8000].")] = None,
    workers: Annotated[int, typer.Option(min=1, help="uvicorn worker processes sharing the database.")] = 1,
    models: Annotated[str | None, typer.Option(help="A litellm-style models file [env DESKLINE_MODELS].")] = None,
    desk: Annotated[str | None, typer.Option("--desk", help="The desk, as module:attribute [env DESKLINE_DESK; "
                                                            "the built-in desk].")] = None,
    router: Annotated[str | None, typer.Option("--router", help="A router file [env DESKLINE_ROUTER].")] = None,
) -> None:
    """Serve the chat page (/), the human console (/console) and the API (/docs) with uvicorn."""
    import asyncio
    import os

    import uvicorn

    from deskline.api.server_limits import ServerLimits
    from deskline.api.settings import WebSettings
    from deskline.errors import DesklineError
    from deskline.runtime import open_desk

    # The workers build their desks from the environment.
    for name, value in (("DESKLINE_MODELS", models), ("DESKLINE_DESK", desk), ("DESKLINE_ROUTER", router)):
        if value:
            os.environ[name] = value
    if desk and os.getcwd() not in os.environ.get("PYTHONPATH", "").split(os.pathsep):
        # As with uvicorn: a desk module in the current directory imports in the workers too.
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")]))
    try:
        settings, web, limits = _settings(), WebSettings.from_env(), ServerLimits.from_env()
        # Create a brand-new database and seed the demo data once, here, before workers race to;
        # refuse a schema older than the code (SchemaOutOfDate names `deskline db upgrade`); and
        # fail with a sentence (not a worker's traceback) when the database cannot be reached.
        support = open_desk(settings)
        from deskline.eventlog.desk_schema import check_desk
        from deskline.eventlog.store import SqlEventStore

        if isinstance(support.store, SqlEventStore):
            check_desk(support.store.engine, support.definition)  # the desk's own tables, likewise
        _auth()
        # Messages accepted before a crash and never answered are answered now, exactly once.
        recovered = asyncio.run(support.recover_all(wait=False))  # turns a live process holds stay its own
    except DesklineError as exc:
        _fail(exc.message)
    if recovered:
        typer.secho(f"recovered {len(recovered)} unanswered message(s) from before the last stop", err=True)
    host, port = host or web.host, port or web.port
    typer.secho(f"deskline on http://{host}:{port}  chat: /  console: /console  API docs: /docs", err=True)
    # uvicorn handles SIGTERM/SIGINT (graceful shutdown), then restores the handlers it found and
    # raises the signal again; these no-op handlers make that a clean exit 0 once the requests in
    # flight are done, which is what a process manager expects from a stop it asked for.
    import signal

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    uvicorn.run(
        "deskline.api.app:create_app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=settings.log_level.lower(),
        # On SIGTERM uvicorn stops accepting, closes idle connections and lets requests in flight
        # (turns, streams) finish for up to DESKLINE_GRACEFUL_SHUTDOWN_S; requests are read under a
        # deadline and a concurrency limit (deskline.api.server_limits).
        **limits.uvicorn_options(),
        server_header=False,
        # Whose X-Forwarded-For to believe is the app's decision (DESKLINE_TRUSTED_PROXIES), not
        # uvicorn's: its default believes any local peer, so a local client could pick its own address.
        proxy_headers=False,
        # The app logs every request itself (``http.request``, PII masked, no query string);
        # uvicorn's access line would print the raw path and query, unmasked.
        access_log=False,
    )
    typer.secho("deskline stopped", err=True)


@agents.command("add")
def agents_add(
    name: Annotated[str, typer.Argument(help="The agent's name, shown to customers.")],
) -> None:
    """Create a human agent and print their key, once: only a hash of it is kept."""
    from deskline.errors import DesklineError

    try:
        key = _auth().add_agent(name)
    except DesklineError as exc:
        _fail(exc.message)
    typer.echo(key)
    typer.secho(f"key for {name.strip()!r} printed above: store it now, it cannot be shown again", err=True)


@agents.command("list")
def agents_list(as_json: JsonOpt = False) -> None:
    """List human agents (names and key ids, never keys)."""
    from datetime import UTC, datetime

    from deskline.errors import DesklineError

    try:
        found = _auth().agents()
    except DesklineError as exc:
        _fail(exc.message)
    if as_json:
        typer.echo(json.dumps([{"name": a.name, "key_id": a.key_id, "created_at": a.created_at} for a in found]))
        return
    for a in found:
        created = datetime.fromtimestamp(a.created_at, UTC).strftime("%Y-%m-%d %H:%M")
        typer.echo(f"{a.name}\tdka_{a.key_id}_…\t{created} UTC")


@agents.command("remove")
def agents_remove(name: Annotated[str, typer.Argument(help="The agent to remove.")]) -> None:
    """Remove a human agent; their key stops working at once on running servers, and their open
    console streams end within seconds (``DESKLINE_STREAM_RECHECK_S``)."""
    from deskline.errors import DesklineError

    try:
        removed = _auth().remove_agent(name)
    except DesklineError as exc:
        _fail(exc.message)
    if not removed:
        _fail(f"no agent named {name!r}")
    typer.echo(f"removed {name}")


def customer_token(
    customer: Annotated[str, typer.Argument(help="The customer id the token names (its `sub`).")],
    ttl: Annotated[int, typer.Option("--ttl", min=1, help="Seconds the token lives.")] = 300,
) -> None:
    """Print a customer token signed with DESKLINE_JWT_SECRET, as the host site would sign one (for
    trying the chat page as a signed-in customer: open /#customer_token=TOKEN)."""
    from deskline.api.identity import mint_token
    from deskline.api.settings import WebSettings
    from deskline.errors import DesklineError

    try:
        web = WebSettings.from_env()
    except DesklineError as exc:
        _fail(exc.message)
    if not web.jwt_secret or not web.jwt_issuer or not web.jwt_audience:
        _fail("set DESKLINE_JWT_SECRET (32+ bytes), DESKLINE_JWT_ISSUER and DESKLINE_JWT_AUDIENCE first")
    typer.echo(mint_token(customer, web.jwt_secret, web.jwt_issuer, web.jwt_audience, ttl))


def register(app: typer.Typer) -> None:
    app.command()(serve)
    app.command("customer-token")(customer_token)
    app.add_typer(agents, name="agents")
