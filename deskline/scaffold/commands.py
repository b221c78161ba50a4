"""``deskline init DIR``: write a small, working desk project (an online shop) into DIR.

Registered on the main CLI by ``deskline.cli``; it copies files and imports nothing heavy.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer
from typer import Argument, Option

DirectoryArg = Annotated[
    Path, Argument(help="The folder to create the project in (new, or empty).", show_default=False)
]
ForceOpt = Annotated[
    bool,
    Option("--force", help="Write into a folder that is not empty, overwriting the files the template writes."),
]


def register(app: typer.Typer) -> None:
    """Add ``init`` to the ``deskline`` app."""
    app.command("init")(init_command)


def init_command(directory: DirectoryArg, force: ForceOpt = False) -> None:
    """Create a desk project to start from: an online shop's desk, its records, router, evals and tests."""
    from deskline.scaffold import ScaffoldError, create

    try:
        written = create(directory, force=force)
    except ScaffoldError as exc:
        typer.secho(f"error: {exc.message}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    except OSError as exc:
        typer.secho(f"error: cannot write {directory}: {exc.strerror or exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    where = shlex.quote(str(directory))
    typer.echo(f"Created a shop desk in {directory} ({len(written.files)} files).")
    typer.echo("")
    typer.echo("Next:")
    typer.echo(f"  cd {where}")
    typer.echo("  DESKLINE_DESK=shop_desk.desk:desk deskline chat")
    typer.echo("  python -m pytest")
    typer.echo("")
    typer.echo(f"{directory / 'README.md'} explains the project, retraining its router, evals and serving.")
