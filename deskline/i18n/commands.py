"""``deskline catalog extract`` and ``deskline catalog check``, registered by ``deskline.cli``.

Exit codes: 0 done, 1 the desk cannot be loaded or a file cannot be written, 2 (``check``) a
catalogue lacks translations or gets placeholders wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer

catalog = typer.Typer(help="The desk's words in each language it answers in (gettext catalogues).",
                      no_args_is_help=True)
DeskOpt = Annotated[str | None, typer.Option("--desk", help="The desk, as module:attribute [env DESKLINE_DESK].")]


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _desk(spec: str | None):  # type: ignore[no-untyped-def]
    from deskline.config import Settings
    from deskline.definition import DeskDefinitionError, load_desk

    try:
        return load_desk(spec or Settings.from_env().desk, check=False)
    except DeskDefinitionError as exc:
        _fail(str(exc))


@catalog.command("extract")
def extract(
    out: Annotated[Path, typer.Option("--out", help="The .pot file to write (or a language's .po to update).")],
    desk: DeskOpt = None,
    language: Annotated[str | None, typer.Option("--language", help="Update this language's catalogue: keep "
                                                                    "what it already translates.")] = None,
) -> None:
    """Write every text the desk says, in its default language, as a gettext template."""
    from deskline.i18n.catalog import CatalogError, read_catalog, write_template

    definition = _desk(desk)
    kept = []
    if language is not None and out.exists():
        try:
            kept.append(read_catalog(out, language))
        except CatalogError as exc:
            _fail(str(exc))
    try:
        count = write_template(definition, out, kept)
    except OSError as exc:
        _fail(f"cannot write {out}: {exc.strerror or exc}")
    typer.echo(f"wrote {count} messages to {out}")


@catalog.command("check")
def check(desk: DeskOpt = None) -> None:
    """Say what each language's catalogue lacks; exit 2 if anything."""
    from deskline.i18n.catalog import CatalogError, messages, missing

    definition = _desk(desk)
    try:
        catalogs = definition.catalog_map
    except CatalogError as exc:
        _fail(str(exc))
    total = len(messages(definition))
    problems = [p for c in catalogs.values() for p in missing(definition, c)]
    for language in definition.languages:
        typer.echo(f"{language}: {'default' if language == definition.default_language else 'catalogue'}")
    for problem in problems:
        typer.echo(f"  {problem}")
    typer.echo(f"{total} messages, {len(problems)} problem(s)")
    if problems:
        raise typer.Exit(2)


def register(app: typer.Typer) -> None:
    app.add_typer(catalog, name="catalog")
