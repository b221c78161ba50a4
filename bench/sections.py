"""The sections of ``run.py``: each runs its workers and returns its figures; a ``tables_*``
function turns a section's figures into printed tables."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import (
    ASK_TEXT,
    HERE,
    PEERS,
    PLAN_MS,
    REPO,
    SKILL_MS,
    TARGET_COLD_S,
    TARGET_CRITICAL,
    TARGET_DEFAULT_RATIO,
    TARGET_MODEL_RATIO,
    TARGET_SQLITE_TPS,
    WRITE_MS,
    cpu_ticks,
    f0,
    f1,
    f2,
    f3,
    log,
    pct,
    run_worker,
    target,
    worker_env,
)
from pgschema import drop_schema, pg_schema


def section_peers(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    out_dir = tmp / "peers_results"
    venv = Path(sys.executable).parent.parent
    extra = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    # the import-time column: with a --snapshot, import that (run_all.py drops PYTHONPATH for its children)
    stmt = "".join(f"import sys; sys.path.insert(0, {p!r}); " for p in reversed(extra)) + "import deskline"
    cmd = [sys.executable, str(PEERS / "run_all.py"), "--out-dir", str(out_dir),
           "--add", f"deskline={venv}:{stmt}", "--add", f"deskline_default={venv}:{stmt}"]
    if args.quick:
        cmd.append("--quick")
    # a --snapshot is on PYTHONPATH, which run_all.py drops for its children: pass it as an adapter path too
    env = dict(os.environ, PEER_ADAPTER_PATH=os.pathsep.join([str(HERE), *extra]))
    env.pop("DESKLINE_BENCH_DB", None)
    env.pop("DESKLINE_BENCH_MODE", None)
    log("   " + " ".join(cmd[1:]))
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=3600)
    for line in proc.stdout.splitlines():
        if line.startswith(("== ", "   import", "note:", "WARNING")):
            log("   " + line)
    if not (out_dir / "latest.json").exists():
        raise RuntimeError(f"run_all.py wrote no results (rc={proc.returncode}): {proc.stdout[-3000:]}")
    doc = json.loads((out_dir / "latest.json").read_text())
    rows: dict[str, dict[str, Any]] = {}
    for r in doc["results"]:
        if "error" in r:
            rows[r["framework"]] = {"error": r["error"]}
            continue
        s, c = r["sequential"], r["concurrent"]
        fs = r.get("fanout_sequential") or {}
        rows[r["framework"]] = {
            "version": r.get("version") or f"py{r['python']}", "median_us": s["median_us"], "p99_us": s["p99_us"],
            "cpu_us_per_turn": s["cpu_us_per_turn"], "best_block_median_us": s["best_block_median_us"],
            "turns_per_s_at_50": c["turns_per_s"], "fanout_median_us": fs.get("median_us"),
            "model_calls_per_turn": s["model_per_turn"], "import_s": r["import"]["import_s"],
            "peak_rss_mib": r["peak_rss_mib"],
            "cpu_share_min": min(r[k]["cpu_share"] for k in ("sequential", "concurrent", "fanout_sequential",
                                                              "fanout_concurrent") if r.get(k)),
            "loadavg": [r["loadavg_start"][0], r["loadavg_end"][0]],
            "inprocess_baseline_us": r.get("calibration_baseline_median_us")}
    peers = {k: v for k, v in rows.items()
             if k not in ("baseline", "deskline", "deskline_default") and "error" not in v}
    if not peers:
        raise RuntimeError(f"no peer row ran: {rows}")
    fastest = min(peers, key=lambda k: peers[k]["median_us"])
    fastest_cpu = min(peers, key=lambda k: peers[k]["cpu_us_per_turn"])
    for r in rows.values():
        if "error" not in r:
            r["x_fastest_median"] = r["median_us"] / peers[fastest]["median_us"]
            r["x_fastest_cpu"] = r["cpu_us_per_turn"] / peers[fastest_cpu]["cpu_us_per_turn"]
    # in process: on-disk SQLite next to in-memory, and the model path's split
    inproc: dict[str, Any] = {}
    n = 300 if args.quick else 2000
    for mode in ("model", "default"):
        for label, db in (("memory", "sqlite://"), ("file", f"sqlite:///{tmp}/peers-{mode}.db")):
            log(f"   in-process {mode} on {label} SQLite ({n} turns)")
            inproc[f"{mode}/{label}"] = run_worker("peers_inproc", {"mode": mode, "db": db, "turns": n,
                                                                     "warmup": 100 if args.quick else 300})
    ref = peers[fastest]["median_us"]
    for v in inproc.values():
        v["x_fastest_median"] = v["plain"]["median_us"] / ref
    targets = []
    for row, mode, limit in (("deskline", "model", TARGET_MODEL_RATIO),
                             ("deskline_default", "default", TARGET_DEFAULT_RATIO)):
        r = rows.get(row, {})
        if "x_fastest_median" in r:
            value, note = r["x_fastest_median"], f"{f0(r['median_us'])} µs vs {f0(ref)} µs (peer harness row)"
        else:  # the harness row failed (e.g. a wrong answer): the in-process figure, said so
            v = inproc[f"{mode}/memory"]
            value = v["x_fastest_median"]
            note = (f"{f0(v['plain']['median_us'])} µs vs {f0(ref)} µs: IN-PROCESS figure, the harness row failed "
                    f"({r.get('error', 'missing')[:90]})")
        targets.append(target(f"{row}: median / fastest peer ({fastest}) median, in-memory SQLite", value, "<=",
                              limit, "×", note=note))
    for key, v in inproc.items():
        if key.endswith("/memory") and v["plain"].get("wrong_answers"):
            targets[-1 if key.startswith("default") else 0]["note"] += (
                f"; {v['plain']['wrong_answers']}/{v['plain']['n']} wrong answers in process ({key}): "
                + "; ".join(v["plain"]["wrong_examples"]))
    plot_rows = dict(rows)
    for row, mode in (("deskline", "model"), ("deskline_default", "default")):
        if "median_us" not in rows.get(row, {}):
            v = inproc[f"{mode}/memory"]["plain"]
            plot_rows[f"{row} (in-process)"] = {"median_us": v["median_us"], "p99_us": v["p99_us"],
                                                 "model_calls_per_turn": v["model_calls_per_turn"],
                                                 "x_fastest_median": v["median_us"] / ref}
    svg = None
    try:
        if args.no_write:
            raise RuntimeError("--no-write: docs/peers.svg left as it is")
        sys.path.insert(0, str(HERE))
        import plot

        svg_path = REPO / "docs" / "peers.svg"
        svg_path.parent.mkdir(exist_ok=True)
        svg_path.write_text(plot.peers_svg(plot_rows, fastest, title_note=f"{doc['generated_utc']}, "
                                           f"load {rows[fastest]['loadavg'][0]:.2f}"), encoding="utf-8")
        svg = str(svg_path.relative_to(REPO))
    except Exception as exc:  # the figures matter more than the picture
        log(f"   plot failed: {exc}")
    return {"fastest_peer": fastest, "fastest_peer_by_cpu": fastest_cpu, "rows": rows, "inprocess": inproc,
            "plot_rows": plot_rows,
            "peer_table_md": doc.get("table_md"), "peer_params": doc.get("params"), "svg": svg,
            "targets": targets}


def tables_peers(s: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for name, r in sorted(s["rows"].items(), key=lambda kv: kv[1].get("median_us", 1e18)):
        if "error" in r:
            rows.append([name, "ERROR", r["error"][:60], "", "", "", "", "", ""])
            continue
        rows.append([name + (" *" if name.startswith("deskline") else ""), r["version"], f0(r["median_us"]),
                     f0(r["p99_us"]), f0(r["cpu_us_per_turn"]), f"{r['x_fastest_median']:.3f}",
                     f0(r["turns_per_s_at_50"]), f"{r['model_calls_per_turn']:g}", f2(r["cpu_share_min"])])
    t1 = {"title": f"peers: one triage→specialist→tool→answer turn, instant fake model (× = / {s['fastest_peer']})",
          "columns": ["framework", "version", "median µs/turn", "p99 µs", "CPU µs/turn", "× fastest peer",
                      "turns/s @50", "model calls/turn", "CPU share (min)"], "rows": rows}
    rows2 = []
    for key, v in s["inprocess"].items():
        mode, db = key.split("/")
        pl = v["plain"]
        sp = v.get("split") or {}
        by = v.get("router_bypassed") or {}
        rows2.append([("deskline" if mode == "model" else "deskline_default"), f"SQLite {db}", f0(pl["median_us"]),
                      f0(pl["p99_us"]), f0(pl["cpu_us_per_turn"]), f"{v['x_fastest_median']:.3f}",
                      f0(sp.get("inside_complete_us_per_turn")) if sp else "0 (no model)",
                      (f"{f0(sp['desk_own_us_per_turn'])} ({100 * sp['desk_own_share']:.0f}%)" if sp else "100%"),
                      f0(by.get("median_us")) if by else "-", f2(pl["cpu_share"])])
    t2 = {"title": "peers, in process: on-disk SQLite and the desk's own share (time outside ModelRouter.complete)",
          "columns": ["row", "event log", "median µs", "p99 µs", "CPU µs", "× fastest peer",
                      "µs in litellm (Router+fake)", "desk's own µs (share)", "median µs, Router bypassed",
                      "CPU share"], "rows": rows2}
    rows3 = []
    for key, v in s["inprocess"].items():
        b = v.get("breakdown")
        if not b:
            continue
        turn = b["turn_us"]
        cells = [f"{f0(b.get(k + '_us', 0))} ({100 * b.get(k + '_us', 0) / turn:.0f}%)"
                 for k in ("strategy", "triage", "operation", "writer", "store_append", "rest")]
        rows3.append([("deskline" if key.startswith("model") else "deskline_default"), key.split("/")[1],
                      f0(turn), *cells])
    t3 = {"title": "where a turn's time goes (mean µs per turn, the desk's own layer timings; triage and writer "
                   "include the model calls; rest = load + fold + bookkeeping)",
          "columns": ["row", "event log", "turn µs", "strategy", "triage", "operation", "writer",
                      "store appends", "rest"], "rows": rows3}
    return [t1, t2, t3]


def section_critical_path(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    r = run_worker("critical_path", {"turns": 3 if args.quick else 8})
    r["targets"] = [
        target("three-agent parallel turn: measured / (plan + slowest skill + write), worst turn", r["ratio_max"],
               "<=", TARGET_CRITICAL, "×", note=f"median {r['ratio_median']:.3f}; {len(r['turns'])} turns")]
    return r


def tables_critical_path(s: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for t in s["turns"]:
        sk = t["skills_ms"]
        rows.append([f"{sk['tech']:.0f}/{sk['billing']:.0f}/{sk['payment']:.0f}", f0(t["bound_ms"]),
                     f0(t["measured_ms"]), f"{t['ratio']:.3f}", f1(t["overhead_ms"]),
                     f"{t['plan_mode']}, {t['steps']} steps, {t['llm_calls']} calls",
                     f"{f0(t['loop_tools_ms'])} ({t['loop_tools_calls']} calls)",
                     f"{f0(t['loop_handoffs_ms'])} ({t['loop_handoffs_calls']} calls)"])
    return [{"title": f"critical path: simulated model (plan {PLAN_MS:.0f} ms, write {WRITE_MS:.0f} ms), skills "
                      f"{SKILL_MS[0]:.0f}-{SKILL_MS[1]:.0f} ms, parallel plan of 3 agents",
             "columns": ["skills ms (tech/billing/payment)", "plan+max skill+write ms", "desk ms", "ratio",
                         "overhead ms", "plan", "eval loop: skills as tools ms", "eval loop: triage hands off ms"],
             "rows": rows}]


def section_throughput(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    seconds = 3.0 if args.quick else 12.0
    out: dict[str, Any] = {"seconds_per_run": seconds}
    log(f"   SQLite file, 1 process, {seconds:.0f} s")
    ticks = cpu_ticks()
    out["sqlite_1proc"] = run_worker("tp_sqlite", {"db": f"sqlite:///{tmp}/tp.db", "seconds": seconds})
    busy, total = cpu_ticks()
    out["sqlite_1proc"]["machine_cpu_busy"] = round((busy - ticks[0]) / max(1, total - ticks[1]), 3)
    if not args.no_postgres:
        out["postgresql"] = {}
        for nproc in (1, 2, 4):
            log(f"   PostgreSQL, {nproc} process(es), {seconds:.0f} s")
            out["postgresql"][str(nproc)] = pg_processes(args.postgres, nproc, seconds)
    log("   latency against conversation length (SQLite file)")
    sizes = {"conversations": 5 if args.quick else 20, "turns": 20 if args.quick else 40}
    out["length"] = run_worker("length", {"db": f"sqlite:///{tmp}/len.db", **sizes})
    out["length"]["uncached"] = run_worker("length", {"db": f"sqlite:///{tmp}/len0.db", "state_cache": 0,
                                                      **sizes})["median_ms_at_turn"]
    n = 1000 if args.quick else 10000
    out["memory"] = {}
    for store in ("sqlite-file", "memory"):
        log(f"   memory per open conversation: {n} conversations x 2 turns, {store} store")
        out["memory"][store] = run_worker("memory", {"store": store, "n": n, "db": f"sqlite:///{tmp}/mem-{store}.db"})
    out["targets"] = [target("embedded default, 1 process, SQLite file: sustained turns/s",
                             out["sqlite_1proc"]["turns_per_s"], ">=", TARGET_SQLITE_TPS, "turns/s",
                             note=f"p50 {out['sqlite_1proc']['p50_ms']:.2f} ms, "
                                  f"p99 {out['sqlite_1proc']['p99_ms']:.2f} ms; "
                                  f"CPU share {out['sqlite_1proc']['cpu_share']:.2f}, "
                                  f"{out['sqlite_1proc']['turns_per_cpu_s']:.0f} turns per CPU-second")]
    return out


def pg_processes(base_url: str, nproc: int, seconds: float) -> dict[str, Any]:
    url, schema = pg_schema(base_url)
    procs: list[subprocess.Popen[str]] = []
    try:
        for k in range(nproc):  # one after another, so the schema and the demo data are set up once
            cmd = [sys.executable, str(HERE / "run.py"), "--worker", "tp_pg_proc", "--params",
                   json.dumps({"db": url, "seconds": seconds, "k": k})]
            pr = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, env=worker_env(), cwd=str(REPO))
            procs.append(pr)
            line = pr.stdout.readline()  # type: ignore[union-attr]
            while line and line.strip() != "READY":
                line = pr.stdout.readline()  # type: ignore[union-attr]
            if not line:
                raise RuntimeError(f"PostgreSQL worker {k} did not start: {pr.stderr.read()[-2000:]}")  # type: ignore[union-attr]
        ticks = cpu_ticks()
        for pr in procs:
            pr.stdin.write("GO\n")  # type: ignore[union-attr]
            pr.stdin.flush()  # type: ignore[union-attr]
        results = []
        for pr in procs:
            stdout, stderr = pr.communicate(timeout=seconds * 10 + 120)
            if pr.returncode != 0:
                raise RuntimeError(f"PostgreSQL worker failed: {stderr[-2000:]}")
            results.append(json.loads(stdout.strip().splitlines()[-1]))
        busy, total = cpu_ticks()
    finally:
        for pr in procs:
            if pr.poll() is None:
                pr.kill()
        drop_schema(base_url, schema)
    lat = [x for r in results for x in r["latencies_ms"]]
    turns = sum(r["turns"] for r in results)
    wall = max(r["seconds"] for r in results)
    return {"processes": nproc, "turns": turns, "turns_per_s": turns / wall, "p50_ms": statistics.median(lat),
            "p99_ms": pct(lat, 99), "per_process_turns_per_s": [round(r["turns_per_s"], 1) for r in results],
            "cpu_share_per_process": [round(r["cpu_share"], 2) for r in results],
            "machine_cpu_busy": round((busy - ticks[0]) / max(1, total - ticks[1]), 3)}


def tables_throughput(s: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    sq = s["sqlite_1proc"]
    rows.append(["SQLite file (WAL)", "1", f0(sq["turns_per_s"]), f0(sq.get("turns_per_cpu_s")), f2(sq["p50_ms"]),
                 f2(sq["p99_ms"]), f"{sq['turns']:,}", f2(sq["cpu_share"]),
                 f"{100 * sq['machine_cpu_busy']:.0f}%" if sq.get("machine_cpu_busy") is not None else "-"])
    for n, r in (s.get("postgresql") or {}).items():
        rows.append(["PostgreSQL, one schema", n, f0(r["turns_per_s"]), "-", f2(r["p50_ms"]), f2(r["p99_ms"]),
                     f"{r['turns']:,}", "/".join(f"{x:.2f}" for x in r["cpu_share_per_process"]),
                     f"{100 * r['machine_cpu_busy']:.0f}%"])
    t1 = {"title": f"throughput: embedded default (classifier + templates), sequential turns per process, "
                   f"{s['seconds_per_run']:.0f} s each",
          "columns": ["event log", "processes", "turns/s", "turns per CPU-second", "p50 ms", "p99 ms", "turns",
                      "CPU share/process", "machine CPU busy"], "rows": rows}
    rows2 = []
    for store, m in s["memory"].items():
        rows2.append([store, f"{m['conversations']:,}", f1(m["rss_kib_per_conversation"]),
                      f"{m['rss_before_mib']:.0f}→{m['rss_after_mib']:.0f}", f1(m["events_per_conversation"]),
                      f0(m["event_json_bytes_per_conversation"]),
                      f0(m.get("disk_growth_bytes_per_conversation"))])
    t2 = {"title": "memory per open conversation (2 turns each)",
          "columns": ["store", "conversations", "RSS KiB/conversation", "RSS MiB before→after", "events/conv.",
                      "event JSON bytes/conv.", "SQLite file bytes/conv."], "rows": rows2}
    ln = s.get("length")
    if not ln:
        return [t1, t2]
    marks = ln["median_ms_at_turn"]
    t3 = {"title": f"turn latency against the turn's position in its conversation (SQLite file, "
                   f"{ln['conversations']} conversations, billing/tech/payment messages)",
          "columns": ["turn #", *marks.keys()], "rows": [["median ms", *[f2(v) for v in marks.values()]]]}
    if ln.get("uncached"):
        t3["rows"].append(["median ms, no state cache", *[f2(ln["uncached"].get(k)) for k in marks]])
    return [t1, t3, t2]


def section_cold_start(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    exe = Path(sys.executable).parent / "deskline"
    if not exe.exists():
        raise RuntimeError(f"{exe} not found: install the project into this virtualenv")
    runs = 5 if args.quick else 10
    db = tmp / "cold" / "cold.db"
    db.parent.mkdir(exist_ok=True)
    env = worker_env(DESKLINE_DATABASE_URL=f"sqlite:///{db}")
    check = subprocess.run([str(exe), "ask", ASK_TEXT, "--json"], env=env, capture_output=True, text=True,
                           cwd=str(db.parent), timeout=120)
    answer = json.loads(check.stdout.strip().splitlines()[-1])
    out: dict[str, Any] = {"command": f"deskline ask {json.dumps(ASK_TEXT)} --json", "runs": runs,
                           "answer": {k: answer.get(k) for k in ("department", "mode", "reply", "llm_calls")}}
    hf = shutil.which("hyperfine")
    for label, fresh in (("fresh SQLite file", True), ("existing SQLite file", False)):
        if hf:
            js = tmp / f"hf-{fresh}.json"
            cmd = [hf, "--runs", str(runs), "--warmup", "1", "--export-json", str(js), "--style", "none"]
            if fresh:
                cmd += ["--prepare", f"rm -f {db} {db}-wal {db}-shm"]
            cmd.append(f"{exe} ask {json.dumps(ASK_TEXT)} --json")
            subprocess.run(cmd, env=env, cwd=str(db.parent), check=True, capture_output=True, timeout=600)
            times = json.loads(js.read_text())["results"][0]["times"]
            tool = "hyperfine"
        else:
            times = []
            for _ in range(runs + 1):
                if fresh:
                    for f in db.parent.glob("cold.db*"):
                        f.unlink()
                t0 = time.perf_counter()
                subprocess.run([str(exe), "ask", ASK_TEXT, "--json"], env=env, cwd=str(db.parent), check=True,
                               capture_output=True, timeout=120)
                times.append(time.perf_counter() - t0)
            times = times[1:]
            tool = "subprocess timing"
        out[label] = {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
                      "times_s": times, "tool": tool}
    py = subprocess.run(["hyperfine", "--runs", str(runs), "--warmup", "1", "--style", "none", "--export-json",
                         str(tmp / "py.json"), f"{sys.executable} -c pass"], capture_output=True,
                        timeout=300) if hf else None
    if py is not None and py.returncode == 0:
        out["python_bare_s"] = statistics.median(json.loads((tmp / "py.json").read_text())["results"][0]["times"])
    first = out["fresh SQLite file"]
    out["targets"] = [target("cold start: `deskline ask` on a fresh SQLite file, start to exit (median)",
                             first["median_s"], "<=", TARGET_COLD_S, "s", note=f"min {first['min_s']:.3f} s")]
    return out


def tables_cold_start(s: dict[str, Any]) -> list[dict[str, Any]]:
    labels = ("fresh SQLite file", "existing SQLite file")
    rows = [[label, f3(s[label]["median_s"]), f3(s[label]["min_s"]), f3(s[label]["max_s"]),
             str(len(s[label]["times_s"])), s[label]["tool"]] for label in labels]
    if "python_bare_s" in s:
        rows.append(["(bare `python -c pass`)", f3(s["python_bare_s"]), "", "", "", "hyperfine"])
    return [{"title": f"cold start: {s['command']}  →  {s['answer']['department']}, {s['answer']['mode']}",
             "columns": ["database", "median s", "min s", "max s", "runs", "tool"], "rows": rows}]


def section_observability(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mode in ("default", "model"):
        log(f"   {mode} path")
        out[mode] = run_worker("observability", {"mode": mode, "blocks": 4 if args.quick else 10,
                                                 "per_block": 100 if args.quick else 300, "warmup": 50})
    out["targets"] = []
    return out


def tables_observability(s: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for mode in ("default", "model"):
        for name, r in s[mode]["configs"].items():
            rows.append([("deskline_default" if mode == "default" else "deskline (model path)"), name,
                         f0(r["median_us"]), f0(r["p99_us"]), f"{r['overhead_us']:+,.0f} ({r['overhead_pct']:+.1f}%)",
                         f0(r["cpu_us_per_turn"]), f"{r['cpu_overhead_us']:+,.0f} ({r['cpu_overhead_pct']:+.1f}%)",
                         f"{r['spans_per_turn']:.1f}"])
    return [{"title": "observability: DeskMetrics observer and an OpenTelemetry SDK tracer (SimpleSpanProcessor, "
                      "in-memory exporter) on vs off, blocks interleaved, in-memory SQLite",
             "columns": ["row", "config", "median µs", "p99 µs", "Δ median", "CPU µs/turn", "Δ CPU", "spans/turn"],
             "rows": rows}]


def section_eventlog(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    targets = {"sqlite-memory": "sqlite://", "sqlite-file": "sqlite:///unused"}
    out: dict[str, Any] = {}
    schema = None
    if not args.no_postgres:
        url, schema = pg_schema(args.postgres)
        targets["postgresql"] = url
    params = {"conversations": 20 if args.quick else 50, "append_turns": 10 if args.quick else 20,
              "turns": 300 if args.quick else 1000, "tmp": str(tmp)}
    try:
        for name, url in targets.items():
            log(f"   {name}")
            out[name] = run_worker("eventlog", {**params, "name": name, "url": url})
    finally:
        if schema:
            drop_schema(args.postgres, schema)
    return {"results": out, "params": params, "targets": []}


def tables_eventlog(s: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for name, r in s["results"].items():
        a, t = r["append"], r["turns"]
        rows.append([name, f"{a['events_per_s']:,}", f"{a['appends_per_s']:,}", f"{t['turns_per_s']:,}",
                     f2(t["p50_ms"]), f2(t["p99_ms"]), f2(t.get("cpu_share"))])
    return [{"title": "event log (bench/eventlog.py): appends of 8 events, and whole turns (embedded default)",
             "columns": ["database", "events/s", "appends/s", "turns/s", "p50 ms", "p99 ms", "CPU share"],
             "rows": rows}]


SECTION_FUNCS = {"peers": (section_peers, tables_peers), "critical_path": (section_critical_path, tables_critical_path),
                 "throughput": (section_throughput, tables_throughput),
                 "cold_start": (section_cold_start, tables_cold_start),
                 "observability": (section_observability, tables_observability),
                 "eventlog": (section_eventlog, tables_eventlog)}


# ------------------------------------------------------------------------------------------- output

