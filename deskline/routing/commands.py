"""``deskline train``: train a desk's own router from labelled examples.

Registered on the main CLI by ``deskline.cli``. Only typer is imported at module level: the CLI
imports this file on every start, and ``deskline ask`` must not pay for scikit-learn (which
only training needs; the router file it writes is read without it).
"""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from typer import Argument, Option

if TYPE_CHECKING:
    from deskline.routing.train import Scores

FilesArg = Annotated[
    list[Path],
    Argument(help="CSV or JSON-lines files with 'text', 'department' and optionally 'intent'.", show_default=False),
]
OutOpt = Annotated[Path, Option("--out", "-o", help="Where to write the router file.", show_default=False)]
FoldsOpt = Annotated[int, Option("--folds", min=2, help="Cross-validation folds (stratified by department).")]
JsonOpt = Annotated[bool, Option("--json", help="Print one JSON object.")]
NoCvOpt = Annotated[bool, Option("--no-cv", help="Skip cross-validation (faster; no quality figures).")]

_WORST = 5  # confusions shown in the table


def register(app: typer.Typer) -> None:
    """Add ``train`` to the ``deskline`` app."""
    app.command("train")(train_command)


def train_command(
    files: FilesArg,
    out: OutOpt,
    folds: FoldsOpt = 5,
    as_json: JsonOpt = False,
    no_cv: NoCvOpt = False,
) -> None:
    """Train a router on labelled examples: cross-validate it, then write it to --out."""
    from deskline.routing.train import TrainingDataError, build, cross_validate, read_examples, write

    if not _has_sklearn():
        _fail(
            "training a router needs scikit-learn (the router itself does not): pip install scikit-learn",
            "missing_dependency",
            as_json,
            exit_code=1,
        )
    try:
        examples = read_examples(files)
        scores = None
        if not no_cv:
            if not as_json:
                typer.secho(f"cross-validating on {len(examples)} examples ({folds} folds)...", dim=True, err=True)
            scores = cross_validate(examples, folds=folds)
        artifact = build(examples)
    except TrainingDataError as exc:
        _fail(exc.message, exc.code, as_json, fields=exc.fields)
    try:
        written = write(artifact, out)
    except OSError as exc:
        _fail(f"cannot write {out}: {exc.strerror or exc}", "write_failed", as_json, exit_code=1)
    header = artifact["header"]
    counts = Counter(e.department for e in examples)
    summary: dict[str, Any] = {
        "out": str(written),
        "bytes": written.stat().st_size,
        "rows": len(examples),
        "departments": {d: counts[d] for d in header["departments"]},
        "intents": len(header["intents"]),
        "cross_validation": scores.to_dict() if scores is not None else None,
        "parity": header["metadata"].get("parity"),
    }
    if as_json:
        typer.echo(json.dumps(summary))
        return
    _print_summary(summary, scores)


def _has_sklearn() -> bool:
    return importlib.util.find_spec("sklearn") is not None


def _print_summary(summary: dict[str, Any], scores: Scores | None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    if scores is not None:
        table = Table(title=f"cross-validated routing ({scores.folds} folds, {scores.rows} examples)")
        for column in ("department", "examples", "precision", "recall", "F1"):
            table.add_column(column, justify="left" if column == "department" else "right")
        for name, s in scores.departments.items():
            table.add_row(name, str(s.support), f"{s.precision:.3f}", f"{s.recall:.3f}", f"{s.f1:.3f}")
        table.add_section()
        table.add_row("[bold]macro[/]", str(scores.rows), "", "", f"[bold]{scores.macro_f1:.3f}[/]")
        console.print(table)
        if scores.confusions:
            worst = Table(title="worst confusions")
            worst.add_column("true")
            worst.add_column("predicted")
            worst.add_column("count", justify="right")
            for true, predicted, count in scores.confusions[:_WORST]:
                worst.add_row(true, predicted, str(count))
            console.print(worst)
        else:
            console.print("no confusions")
    departments = ", ".join(f"{d} ({n})" for d, n in summary["departments"].items())
    console.print(
        f"wrote {summary['out']} ({summary['bytes'] / 1e3:.0f} kB): {summary['rows']} examples, "
        f"{summary['intents']} intents; departments {departments}"
    )


def _fail(
    message: str, error: str, as_json: bool, *, exit_code: int = 2, fields: dict[str, object] | None = None
) -> NoReturn:
    """Print ``error: message`` (or, with --json, one JSON object) on stderr and exit."""
    if as_json:
        typer.echo(json.dumps({"error": error, "message": message, **(fields or {})}), err=True)
    else:
        typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(exit_code)
