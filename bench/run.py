"""deskline's performance benchmarks: one command, every figure, against its target.

    python bench/run.py                      # everything, default sizes (~10 min on 2 cores)
    python bench/run.py --json               # the same, one JSON object on stdout (tables on stderr)
    python bench/run.py --quick              # smoke version, ~2-3 min
    python bench/run.py --only peers,cold_start
    python bench/run.py --profile default    # where a turn's time goes (pyinstrument), no sections
    python bench/run.py --snapshot HEAD      # measure the committed desk while deskline/ is being edited

Run it with the project's virtualenv (``/tmp/dv/bin/python bench/run.py``). Sections:

* ``peers``          orchestration overhead against OpenAI Agents SDK, LangGraph and pydantic-ai:
                     runs ``../shared/bench/peers/run_all.py`` with deskline's two adapter rows
                     (``bench/fw_deskline.py`` through ``PEER_ADAPTER_PATH``), then measures the same
                     rows in process on an on-disk SQLite file and splits the model path's turn into
                     time inside ``ModelRouter.complete`` (litellm) and the desk's own time.
* ``critical_path``  a three-agent parallel plan under a simulated model (plan 400 ms, write 500 ms,
                     skills 50-300 ms) against plan + slowest skill + write, beside the eval suite's
                     loop mode (``deskline.evals.loop``) on the same profile.
* ``throughput``     sustained turns/s of the embedded default: one process on SQLite, 1/2/4 processes
                     sharing PostgreSQL; p50/p99; memory and event-log bytes per open conversation.
* ``cold_start``     ``deskline ask ... --json`` start to exit (hyperfine when installed).
* ``observability``  turn latency with metrics (DeskMetrics) and tracing (OpenTelemetry SDK, in-memory
                     exporter) on versus off.
* ``eventlog``       ``bench/eventlog.py``'s append and turn throughput on SQLite and PostgreSQL.

The code: this file is the command (sections to run, tables, results files); ``sections.py`` holds
each section and its tables, ``workers.py`` the measurements themselves, ``common.py`` the paths,
targets and helpers they share.

Every measurement runs in a fresh worker process (``run.py --worker NAME``), so globals (litellm's
provider map, the tracer, RSS) never leak between measurements. The machine is a shared 2-core VM:
each section records the load average and the whole machine's CPU use before/after, and each
timed phase its own CPU share (CPU time / wall). Writes ``bench/results/latest.json`` and
``latest.md`` and, after the peers section, ``docs/peers.svg``. A benchmark, not a test: it exits 0
whether or not a target is met (1 only if a section failed to run).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the bench/ modules, beside this script

from common import (  # noqa: E402  (bench/ is on sys.path: these scripts run from it)
    DEFAULT_PG,
    REPO,
    RESULTS,
    SECTIONS,
    LoadProbe,
    load_note,
    log,
    machine_info,
    run_worker,
)
from sections import SECTION_FUNCS  # noqa: E402
from workers import worker_main  # noqa: E402


def md_table(columns: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(columns, *rows, strict=True)]
    lines = ["| " + " | ".join(str(h).ljust(w) for h, w in zip(columns, widths, strict=True)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)) + " |" for row in rows]
    return "\n".join(lines)


def targets_table(doc: dict[str, Any]) -> dict[str, Any]:
    rows = []
    for name, s in doc["sections"].items():
        if "error" in s:
            rows.append([name, "section failed", s["error"][:80], "", "NO", ""])
            continue
        for t in s.get("targets", []):
            v = t["value"]
            value = "-" if v is None else (f"{v:.3f}" if abs(v) < 10 else f"{v:,.0f}")
            rows.append([name, t["figure"], f"{value} {t['unit']}".strip(),
                         f"{t['op']} {t['target']:g} {t['unit']}".strip(), "yes" if t["met"] else "NO",
                         (t.get("note") or "") + "; " + load_note(s["load"])])
    return {"title": "targets", "columns": ["section", "figure", "measured", "target", "met", "note"], "rows": rows}


def print_tables(tables: list[dict[str, Any]], stream: Any) -> None:
    try:
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table
        from rich.text import Text

        console = Console(file=stream, width=200)
        for t in tables:  # Text cells: a reply like "[billing] ..." is not rich markup
            table = Table(*[escape(c) for c in t["columns"]], title=Text(t["title"]), title_justify="left")
            for row in t["rows"]:
                table.add_row(*[Text(str(x)) for x in row])
            console.print(table)
    except ImportError:
        for t in tables:
            print(f"\n{t['title']}\n\n{md_table(t['columns'], t['rows'])}", file=stream)


def markdown(doc: dict[str, Any], tables: list[dict[str, Any]]) -> str:
    m = doc["machine"]
    head = (f"# deskline benchmarks ({doc['generated_utc']}{', --quick' if doc['quick'] else ''})\n\n"
            f"Machine: {m['cpu']}, {m['cpus']} CPUs, {m['memory']}, {m['platform']}, Python {m['python']}; "
            f"deskline {m['deskline_commit']}. Load average {doc['loadavg_before'][0]:.2f} before, "
            f"{doc['loadavg_after'][0]:.2f} after; {doc['total_seconds']:.0f} s in all.\n")
    parts = [head]
    for t in tables:
        parts.append(f"### {t['title']}\n\n{md_table(t['columns'], t['rows'])}\n")
    return "\n".join(parts)


def snapshot(ref: str, dest: Path) -> str:
    """The ``deskline`` package as committed at ``ref``, extracted into ``dest`` (``git archive``: the
    working tree is not touched), put first on every worker's path; returns the commit measured."""
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", ref], capture_output=True, text=True,
                            check=True).stdout.strip()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref, "deskline"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(dest) + (os.pathsep + old if old else "")
    return commit


def run_sections(args: argparse.Namespace) -> int:
    only = [s.strip() for s in args.only.split(",")] if args.only else list(SECTIONS)
    unknown = set(only) - set(SECTIONS)
    if unknown:
        sys.exit(f"unknown section(s): {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}")
    started = time.perf_counter()
    doc: dict[str, Any] = {"generated_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                           "command": " ".join(["python", "bench/run.py", *sys.argv[1:]]), "quick": args.quick,
                           "machine": machine_info(), "loadavg_before": [round(x, 2) for x in os.getloadavg()],
                           "sections": {}}
    stream = sys.stderr if args.json else sys.stdout
    all_tables: list[dict[str, Any]] = []
    failed = False
    with tempfile.TemporaryDirectory(prefix="deskline-bench-") as tmpdir:
        if args.snapshot:
            src = Path(tmpdir) / "src"
            src.mkdir()
            doc["machine"]["deskline_commit"] = snapshot(args.snapshot, src) + f" (snapshot of {args.snapshot})"
            log(f"measuring deskline as committed at {doc['machine']['deskline_commit']}")
        for name in SECTIONS:
            if name not in only:
                continue
            log(f"== {name} (load {os.getloadavg()[0]:.2f})")
            probe = LoadProbe()
            sec_tmp = Path(tmpdir) / name
            sec_tmp.mkdir()
            func, tabler = SECTION_FUNCS[name]
            try:
                result = func(args, sec_tmp)
                result["load"] = probe.done()
                tables = tabler(result)
                for t in tables:
                    t["title"] += f"  [{load_note(result['load'])}]"
            except Exception as exc:
                failed = True
                traceback.print_exc(file=sys.stderr)
                result = {"error": f"{type(exc).__name__}: {exc}", "load": probe.done(), "targets": []}
                tables = [{"title": f"{name}: FAILED", "columns": ["error"], "rows": [[result["error"][:300]]]}]
            doc["sections"][name] = result
            all_tables.extend(tables)
            print_tables(tables, stream)
    doc["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    doc["total_seconds"] = round(time.perf_counter() - started, 1)
    summary = targets_table(doc)
    doc["targets"] = [dict(t, section=n) for n, s in doc["sections"].items() for t in s.get("targets", [])]
    doc["all_targets_met"] = all(t["met"] for t in doc["targets"]) and not failed
    all_tables.append(summary)
    print_tables([summary], stream)
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "latest.json").write_text(json.dumps(doc, indent=2, default=str) + "\n", encoding="utf-8")
        (RESULTS / "latest.md").write_text(markdown(doc, all_tables), encoding="utf-8")
        log(f"wrote {RESULTS / 'latest.json'} and latest.md ({doc['total_seconds']:.0f} s)")
    if args.json:
        print(json.dumps(doc, indent=2, default=str))
    return 1 if failed else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout (tables go to stderr)")
    ap.add_argument("--quick", action="store_true", help="smoke version with small sizes (~2-3 min)")
    ap.add_argument("--only", help=f"comma-separated sections: {','.join(SECTIONS)}")
    ap.add_argument("--postgres", default=os.environ.get("DESKLINE_TEST_POSTGRES_URL", DEFAULT_PG))
    ap.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL measurements")
    ap.add_argument("--no-write", action="store_true", help="do not write bench/results/ or docs/peers.svg")
    ap.add_argument("--snapshot", metavar="REF", help="measure deskline as committed at REF (e.g. HEAD), extracted "
                    "with git archive into a temp dir, instead of the working tree (which may be mid-edit)")
    ap.add_argument("--profile", choices=("default", "model"), help="profile N turns of a path and exit")
    ap.add_argument("--profile-turns", type=int, default=2000)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--params", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker_main(args.worker, json.loads(args.params or "{}"))
        return 0
    if args.profile:
        print(run_worker("profile", {"mode": args.profile, "turns": args.profile_turns})["text"])
        return 0
    return run_sections(args)


if __name__ == "__main__":
    sys.exit(main())
