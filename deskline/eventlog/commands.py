"""``deskline db upgrade`` and ``deskline db current``, registered by ``deskline.cli``.

Both also handle the desk's own tables when the desk (``--desk`` / ``DESKLINE_DESK``) declares a
migrations folder (``deskline.eventlog.desk_schema``): upgraded after deskline's, reported beside.

Exit codes: 0 done (``current``: the database is at the code's revision), 1 an error (the
database cannot be reached, a migration failed), 2 (``current`` only) the database needs
``deskline db upgrade`` or was migrated by a newer deskline.
"""

from __future__ import annotations

import json
from typing import Annotated, NoReturn

import typer

db = typer.Typer(help="The database schema: which revision it is at, and upgrading it.", no_args_is_help=True)
UrlOpt = Annotated[str | None, typer.Option("--database", help="A database URL [env DESKLINE_DATABASE_URL].")]
DeskOpt = Annotated[str | None, typer.Option("--desk", help="The desk, as module:attribute [env DESKLINE_DESK; "
                                                            "the built-in desk].")]


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _engine(url: str | None, *, migrating: bool = False):  # type: ignore[no-untyped-def]
    from dataclasses import replace

    from deskline.config import Settings
    from deskline.eventlog.database import DbTimeouts, make_engine
    from deskline.logs import configure

    settings = Settings.from_env()
    configure(settings.log_format, settings.log_level)
    timeouts = DbTimeouts.from_env()
    if migrating:  # a migration may rewrite a large table: no 5 s statement limit for it
        timeouts = replace(timeouts, statement_s=max(timeouts.statement_s, 3600.0))
    return make_engine(url or settings.database_url, timeouts)


def _desk(spec: str | None):  # type: ignore[no-untyped-def]
    from deskline.config import Settings
    from deskline.runtime import desk_for

    settings = Settings.from_env()
    return desk_for(settings.with_(desk=spec) if spec else settings)


@db.command("upgrade")
def upgrade(
    database: UrlOpt = None,
    revision: Annotated[str, typer.Option(help="The revision to upgrade to (deskline's tables).")] = "head",
    desk: DeskOpt = None,
) -> None:
    """Migrate the database to this code's schema (a database made by deskline 0.1.0 is adopted:
    its missing tables are created, its rows are left as they are). Safe to run twice, and from
    several hosts at once: one migrates, the others wait and find nothing to do."""
    from deskline.errors import DesklineError
    from deskline.eventlog.desk_schema import upgrade_desk
    from deskline.eventlog.schema import upgrade as run_upgrade

    try:
        definition = _desk(desk)
        engine = _engine(database, migrating=True)
        before, after = run_upgrade(engine, revision)
        if before.revision == after.revision:
            typer.echo(f"already at revision {after.revision}; nothing to do")
        else:
            typer.echo(f"upgraded from {before.revision or ('0.1.0 tables' if before.tables else 'empty')} "
                       f"to {after.revision}")
        own = upgrade_desk(engine, definition)
    except DesklineError as exc:
        _fail(exc.message)
    except Exception as exc:  # a migration that failed: its own sentence, no traceback
        _fail(f"the migration failed ({type(exc).__name__}): {exc}")
    if own is not None:
        was, now = own
        if was.revision == now.revision:
            typer.echo(f"desk {now.desk}: already at revision {now.revision}; nothing to do")
        else:
            typer.echo(f"desk {now.desk}: upgraded from {was.revision or 'empty'} to {now.revision}")


@db.command("current")
def current(database: UrlOpt = None, as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
            desk: DeskOpt = None) -> None:
    """The database's schema revision (and the desk's own, if it has a migrations folder), and
    whether this code can serve it (exit 2 when not)."""
    from deskline.errors import DesklineError
    from deskline.eventlog.desk_schema import desk_state
    from deskline.eventlog.schema import HEAD, state

    try:
        engine = _engine(database)
        found = state(engine)
        own = desk_state(engine, _desk(desk))
    except DesklineError as exc:
        _fail(exc.message)
    if as_json:
        typer.echo(json.dumps({"revision": found.revision, "head": HEAD, "current": found.current,
                               "tables": sorted(found.tables), "state": found.describe(),
                               "desk": own.to_json() if own is not None else None}))
    else:
        typer.echo(f"{found.revision or 'none'}  ({found.describe()})")
        if own is not None:
            typer.echo(f"desk {own.desk}: {own.revision or 'none'}  ({own.describe()})")
    if (not found.current and not found.empty) or (own is not None and not own.current):
        raise typer.Exit(2)


def register(app: typer.Typer) -> None:
    app.add_typer(db, name="db")
