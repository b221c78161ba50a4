"""``deskline eval``, ``deskline export-queries`` and ``deskline eval-replay``.

Registered on the main CLI by ``deskline.cli``; pydantic-evals, pydantic-ai and the desk are
imported inside the commands, so ``deskline ask`` never pays for them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from typer import Option

if TYPE_CHECKING:
    from deskline.config import Settings
    from deskline.errors import DesklineError
    from deskline.evals.dataset import EvalDataset
    from deskline.evals.runner import EvalRun

TOLERANCE = 0.005

DatasetOpt = Annotated[list[Path] | None,
                       Option("--dataset", "-d", help="CSV or JSONL queries (repeatable).")]
ModelsOpt = Annotated[Path | None, Option("--models", help="Models file (litellm-style YAML).")]
ThresholdOpt = Annotated[float | None,
                         Option("--abstain-threshold", help="Override the router's threshold.")]
JsonOpt = Annotated[bool, Option("--json", help="Print one JSON object.")]
DatabaseOpt = Annotated[str | None,
                        Option("--database", help="Event log URL (default: the configured one).")]
DeskOpt = Annotated[str | None, Option("--desk", help="The desk, as module:attribute (default: $DESKLINE_DESK, "
                                                      "else the built-in desk).")]
RouterOpt = Annotated[Path | None, Option("--router", help="A router file from `deskline train` "
                                                           "(default: $DESKLINE_ROUTER, else the desk's).")]
RAW_HELP = "Write personal data unmasked; only for a trusted, private destination."
RawOpt = Annotated[bool, Option("--raw", help=RAW_HELP)]


def register(app: typer.Typer) -> None:
    """Add the eval commands to the ``deskline`` app."""
    app.command("eval")(eval_command)
    app.command("export-queries")(export_queries_command)
    app.command("eval-replay")(replay_command)


def eval_command(
    dataset: DatasetOpt = None,
    models: ModelsOpt = None,
    as_json: JsonOpt = False,
    report: Annotated[Path | None, Option("--report", help="Write an HTML report here.")] = None,
    compare: Annotated[list[str] | None, Option(
        "--compare", help="Another models file, or a saved --json result (give two saved results "
                          "and no --dataset to compare them).")] = None,
    mode: Annotated[str, Option(
        "--mode", help="plan (the desk) or loop (plan-once against agentic loops).")] = "plan",
    profile: Annotated[str | None, Option(
        "--profile", help="Simulated model for --mode loop: latency=400ms,price=0.002.")] = None,
    limit: Annotated[int | None, Option("--limit", min=1, help="Only the first N cases.")] = None,
    repeat: Annotated[int | None, Option(
        "--repeat", min=1, help="Runs per configuration, to measure noise (default 1; 3 with "
                                "--compare).")] = None,
    concurrency: Annotated[int, Option(
        "--concurrency", min=1, help="Cases at once when a model is configured.")] = 8,
    engine: Annotated[str, Option("--engine", help="auto, direct or pydantic-evals.")] = "auto",
    abstain_threshold: ThresholdOpt = None,
    baseline: Annotated[Path | None, Option(
        "--baseline", help="Exit 1 below this baseline's macro-F1 or human recall.")] = None,
    update_baseline: Annotated[bool, Option(
        "--update-baseline", help="Write the --baseline file from this run instead.")] = False,
    desk: DeskOpt = None,
    router: RouterOpt = None,
    raw: Annotated[bool, Option("--raw", help=f"{RAW_HELP} Query texts in the summary, --json and "
                                              "--report are masked without it.")] = False,
) -> None:
    """Run recorded queries through a fresh desk and score routing, escalation, cost and speed.

    Query texts shown (worst misroutes, failures) have card numbers, IBANs, SSNs, emails and phone
    numbers masked unless ``--raw``."""
    from deskline.errors import DesklineError

    if mode not in ("plan", "loop") or engine not in ("auto", "direct", "pydantic-evals"):
        _fail_text("--mode is plan or loop; --engine is auto, direct or pydantic-evals", as_json)
    try:
        import pydantic_evals  # noqa: F401 - the suite's framework; an optional extra of deskline
    except ImportError:
        _fail_text("the eval suite needs pydantic-evals: pip install 'deskline[evals]'", as_json)
    settings = _settings(models, abstain_threshold, desk, router)
    try:
        saved = [_saved(c) for c in compare or ()]
        if compare and len(compare) == 2 and not dataset:
            if saved[0] is None or saved[1] is None:
                _fail_text("two --compare values without --dataset must be saved results", as_json)
            _print_compare((compare[0], saved[0]), (compare[1], saved[1]), as_json)
            return
        if not dataset:
            _fail_text("give --dataset FILE (or two saved results to --compare)", as_json)
        data = _load(dataset, limit, settings)
        if mode == "loop":
            _loop(data, settings, profile, as_json)
            return
        if compare:
            runs = repeat or 3
            _compare(data, dataset, settings, compare[0], saved[0], runs, engine, concurrency, as_json)
            return
        done = [_run(data, settings, engine, concurrency) for _ in range(repeat or 1)]
    except DesklineError as exc:
        _fail(exc, as_json)
    summary = enrich(done, dataset, settings)
    if as_json:
        typer.echo(json.dumps(summary if raw else _masked_failures(summary)))
    else:
        from deskline.evals.report import print_summary

        print_summary(summary, done[0].rows, raw=raw)
    if report is not None:
        from deskline.evals.report import html_report

        report.write_text(html_report(summary, done[0].rows, raw=raw), encoding="utf-8")
        typer.echo(f"report written to {report}", err=True)
    if baseline is not None:
        _baseline(summary, baseline, dataset, update_baseline)


def _masked_failures(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary with the texts and errors of its failed turns masked."""
    if not summary.get("failures"):
        return summary
    from deskline.privacy import mask

    return {**summary, "failures": [{**f, "text": mask(f.get("text") or ""), "error": mask(f.get("error") or "")}
                                    for f in summary["failures"]]}


def _settings(models: Path | None, threshold: float | None, desk: str | None = None,
              router: Path | None = None) -> Settings:
    import os

    from deskline.config import Settings
    from deskline.logs import configure

    settings = Settings.from_env()
    if not os.environ.get("DESKLINE_LOG_LEVEL"):  # a warning per bad reply would bury the summary
        settings = settings.with_(log_level="error")
    configure(settings.log_format, settings.log_level)
    changes: dict[str, object] = {}
    if models is not None:
        changes["models_path"] = models
    if threshold is not None:
        changes["abstain_threshold"] = threshold
    if desk is not None:
        changes["desk"] = desk
    if router is not None:
        changes["router_path"] = router
    return settings.with_(**changes) if changes else settings


def _load(paths: list[Path], limit: int | None, settings: Settings) -> EvalDataset:
    """The datasets, checked against the desk's departments and entities."""
    from deskline.evals.dataset import check_against, limit_cases, load_datasets, resolve_data
    from deskline.runtime import desk_for

    desk = desk_for(settings)
    data = load_datasets([resolve_data(p) for p in paths], training=desk.training_data)
    check_against(data, desk.all_departments, [e.name for e in desk.entities])
    return limit_cases(data, limit)


def _run(data: EvalDataset, settings: Settings, engine: str, concurrency: int) -> EvalRun:
    import asyncio

    from deskline.evals.runner import evaluate
    from deskline.runtime import memory_desk

    desk = memory_desk(settings)  # fresh store, backend and route cache for every run
    return asyncio.run(evaluate(data, desk, engine=engine,  # type: ignore[arg-type]
                                concurrency=concurrency, progress=sys.stderr.isatty()))


def enrich(runs: list[EvalRun], paths: list[Path], settings: Settings) -> dict[str, Any]:
    """The first run's summary with the dataset, its label, the configuration and the timings."""
    from deskline.evals.dataset import LABEL_MAP
    from deskline.evals.report import HEADLINE, label_for, pick

    first = runs[0]
    from_map = any(LABEL_MAP in extra for case in first.report.cases for extra in (case.metadata or {})["extra"])
    summary: dict[str, Any] = {"dataset": ", ".join(str(p) for p in paths),
                               "label": label_for(first.summary.get("trained_on_share"), from_map),
                               **first.summary}
    summary["config"] = {"models": str(settings.models_path) if settings.models_path else None,
                         "abstain_threshold": settings.abstain_threshold}
    summary["run"] = {"engine": first.engine, "cases": len(first.report.cases), "repeat": len(runs),
                      "elapsed_s": round(first.elapsed_s, 3),
                      "queries_per_s": round(first.queries_per_s, 1)}
    if len(runs) > 1:
        summary["runs"] = [{path: pick(r.summary, path) for _, path, _ in HEADLINE} for r in runs]
    return summary


def _saved(value: str) -> dict[str, Any] | None:
    """A saved ``--json`` result, or ``None`` when ``value`` is not one (a models file)."""
    path = Path(value)
    if path.suffix.lower() != ".json" or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) and "n" in data and "accuracy" in data else None


def _compare(data: EvalDataset, paths: list[Path], settings: Settings, other: str,
             saved: dict[str, Any] | None, repeat: int, engine: str, concurrency: int,
             as_json: bool) -> None:
    def runs(config: Settings) -> dict[str, Any]:
        return enrich([_run(data, config, engine, concurrency) for _ in range(repeat)], paths, config)

    name = str(settings.models_path or "embedded default")
    if saved is not None:
        _print_compare((other, saved), (name, runs(settings)), as_json)
        return
    if not Path(other).is_file():
        _fail_text(f"--compare {other}: no such models file or saved result", as_json)
    other_settings = settings.with_(models_path=Path(other))
    _print_compare((name, runs(settings)), (other, runs(other_settings)), as_json)


def _print_compare(a: tuple[str, dict[str, Any]], b: tuple[str, dict[str, Any]],
                   as_json: bool) -> None:
    from deskline.evals.report import comparison_dict, differences, print_comparison

    diffs = differences(a[1], b[1])
    if as_json:
        typer.echo(json.dumps({"a": a[1], "b": b[1], "comparison": comparison_dict(a[0], b[0], diffs)}))
        return
    reps = (len(a[1].get("runs") or [1]), len(b[1].get("runs") or [1]))
    print_comparison(a[0], b[0], diffs, reps)


def _loop(data: EvalDataset, settings: Settings, profile: str | None, as_json: bool) -> None:
    import asyncio

    from deskline.evals.loop import Profile, compare_modes, print_table
    from deskline.runtime import memory_desk

    try:
        chosen = Profile.parse(profile) if profile else Profile()
    except ValueError as exc:
        _fail_text(str(exc), as_json)
    comparison = asyncio.run(compare_modes(data, memory_desk(settings),
                                           lambda: memory_desk(settings), chosen))
    if as_json:
        typer.echo(json.dumps(comparison.to_dict()))
    else:
        print_table(comparison)


def _baseline(summary: dict[str, Any], path: Path, datasets: list[Path], update: bool) -> None:
    from deskline.evals.metrics import gate

    if update:
        human = summary["per_department"].get("human", {}).get("recall")
        again = " ".join(f"--dataset {p.name}" for p in datasets)
        models = {role: {k: figures[k] for k in ("failure_rate", "rejection_rate")}
                  for role, figures in (summary.get("models") or {}).items()}
        body = {"split": [p.name for p in datasets], "n": summary["n"],
                "macro_f1": summary["macro_f1"], "human_recall": human, "tolerance": TOLERANCE,
                **({"models": models} if models else {}),
                "regenerate": f"deskline eval {again} --baseline {path} --update-baseline"}
        path.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
        typer.echo(f"baseline written to {path}", err=True)
        return
    problems = gate(summary, json.loads(path.read_text(encoding="utf-8")))
    for p in problems:
        typer.secho(f"regression: {p}", fg=typer.colors.RED, err=True)
    if problems:
        raise typer.Exit(1)


def export_queries_command(
    out: Annotated[Path | None, Option("--out", help="JSONL file (default: stdout).")] = None,
    database: DatabaseOpt = None,
    desk: DeskOpt = None,
    raw: RawOpt = False,
) -> None:
    """Write every recorded customer turn as a labelled query (JSONL) for ``deskline eval``.

    Personal data is masked unless ``--raw``: card numbers, IBANs, SSNs, emails and phone
    numbers in the texts, and the desk's personal entities written by name only (``email``,
    not ``email=...``), so the export still evaluates."""
    from deskline.errors import DesklineError
    from deskline.evals.dataset import export_queries
    from deskline.runtime import desk_for

    settings = _settings(None, None, desk)
    count = 0
    try:
        personal = () if raw else desk_for(settings).extractor.personal
        store = _log_store(database or settings.database_url)
        with out.open("w", encoding="utf-8") if out else _stdout() as sink:
            for row in export_queries(store, raw=raw, personal=personal):
                sink.write(json.dumps(row) + "\n")
                count += 1
    except DesklineError as exc:
        _fail(exc, False)
    typer.echo(f"exported {count} turn(s){f' to {out}' if out else ''}", err=True)


def replay_command(
    models: ModelsOpt = None,
    abstain_threshold: ThresholdOpt = None,
    database: DatabaseOpt = None,
    limit: Annotated[int | None, Option("--limit", min=1, help="The first N conversations.")] = None,
    as_json: JsonOpt = False,
    desk: DeskOpt = None,
    router: RouterOpt = None,
    raw: RawOpt = False,
) -> None:
    """Replay the logged conversations under a new configuration; list turns that would change
    (their texts masked unless ``--raw``)."""
    import asyncio

    from deskline.errors import DesklineError
    from deskline.eventlog.projections import fold
    from deskline.hierarchy.replay import replay
    from deskline.privacy import mask
    from deskline.runtime import memory_desk

    settings = _settings(models, abstain_threshold, desk, router)
    changed: list[dict[str, Any]] = []
    turns = 0
    try:
        store = _log_store(database or settings.database_url)
        support = memory_desk(settings)  # the new configuration; the log is only read
        ids = store.conversation_ids()[:limit]
        for cid in ids:
            records = store.load(cid)
            texts = {t.turn: t.text if raw else mask(t.text) for t in fold(cid, records).turns}
            for t in asyncio.run(replay(support, cid, records)):
                turns += 1
                if not t.same:
                    changed.append({"conversation_id": cid, "turn": t.turn, "text": texts.get(t.turn),
                                    "department": t.department, "mode": t.mode,
                                    "differences": list(t.differences)})
    except DesklineError as exc:
        _fail(exc, as_json)
    if as_json:
        typer.echo(json.dumps({"conversations": len(ids), "turns": turns, "changed": changed}))
        return
    from rich.console import Console
    from rich.table import Table

    title = f"{len(changed)} of {turns} turn(s) in {len(ids)} conversation(s) would change"
    table = Table("conversation", "turn", "text", "was", "first difference", title=title,
                  title_justify="left")
    for c in changed:
        table.add_row(c["conversation_id"], str(c["turn"]), (c["text"] or "")[:50],
                      f"{c['department']} · {c['mode']}", c["differences"][0][:90])
    Console().print(table)


def _log_store(url: str) -> Any:
    from deskline.errors import ConfigError
    from deskline.eventlog.database import make_engine
    from deskline.eventlog.store import SqlEventStore

    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        file = Path(url.removeprefix("sqlite:///"))
        if not file.is_file():  # opening it would create an empty log and export nothing
            raise ConfigError(f"no event log at {file}", url=url)
    return SqlEventStore(make_engine(url))


def _stdout() -> Any:
    import contextlib

    return contextlib.nullcontext(sys.stdout)


def _fail(exc: DesklineError, as_json: bool) -> NoReturn:
    if as_json:
        typer.echo(json.dumps(exc.to_dict()), err=True)
    else:
        typer.secho(f"error: {exc.message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2 if exc.code == "invalid_dataset" else 1)


def _fail_text(message: str, as_json: bool) -> NoReturn:
    if as_json:
        typer.echo(json.dumps({"error": "usage", "message": message}), err=True)
    else:
        typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)
