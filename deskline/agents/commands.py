"""``deskline agent-server``, registered by ``deskline.cli``.

Only typer is imported here at module level: the CLI imports this file on every start.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer


def agent_server(
    desk: Annotated[str | None, typer.Option("--desk", help="The desk whose skills to serve, as module:attribute "
                                                            "[env DESKLINE_DESK; the built-in desk].")] = None,
    agent: Annotated[list[str] | None,
                     typer.Option("--agent", help="An agent to serve (repeat; default: all).")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8100,
    token_env: Annotated[str, typer.Option("--token-env", help="The environment variable holding the bearer "
                                                               "token the desk sends.")] = "DESKLINE_AGENT_TOKEN",
) -> None:
    """Serve a desk's agents over HTTP for remote desks (POST /v1/tasks; OpenAPI at /docs), on the
    desk's own system of record in the configured database (DESKLINE_DATABASE_URL)."""
    import uvicorn

    from deskline.agents.server import create_agent_app
    from deskline.config import Settings
    from deskline.definition import load_desk
    from deskline.errors import DesklineError
    from deskline.eventlog.database import make_engine
    from deskline.logs import configure

    settings = Settings.from_env()
    configure(settings.log_format, settings.log_level)
    token = os.environ.get(token_env, "")
    if not token:
        typer.secho(f"error: set {token_env} to the bearer token the desk will send", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    try:
        definition = load_desk(desk or settings.desk, router=settings.router_path)
        records = definition.system_of_record(make_engine(settings.database_url), settings.database_url)
        app = create_agent_app(definition, token=token, agents=tuple(agent or ()), records=records)
    except (DesklineError, ValueError) as exc:
        typer.secho(f"error: {getattr(exc, 'message', exc)}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from exc
    typer.secho(f"deskline agent server for {definition.name} on http://{host}:{port}  (OpenAPI: /docs)", err=True)
    uvicorn.run(app, host=host, port=port, log_level=settings.log_level.lower(), access_log=False,
                server_header=False, timeout_graceful_shutdown=5)


def register(app: typer.Typer) -> None:
    app.command("agent-server")(agent_server)
