"""Turns/s and turn latency with many conversations at once, on PostgreSQL (and SQLite).

    python bench/pg_throughput.py [--procs 1 2 4] [--concurrency 50] [--seconds 10] [--postgres URL]
                                  [--sqlite] [--json]

Each process opens the desk (``open_desk``: the real store, the built-in desk, no model) on one
fresh PostgreSQL schema and runs ``--concurrency`` conversations at once on its event loop (each
one turn after another, three turns per conversation, then a new one), for ``--seconds`` after a
warm-up; all processes start together. Reported: turns/s summed over processes, and p50/p99 of
the turn latency over all turns. ``SupportDesk.handle`` calls the store synchronously, so each
process's database round trips run one at a time on its loop: this is the figure the issue's
"store off the event loop" item wants doubled. A benchmark: it prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DESKLINE_LOG_LEVEL", "WARNING")

MESSAGES = ["I was charged twice for invoice INV-1001", "I forgot my password and can't log in",
            "my transfer to my landlord hasn't arrived", "is the service down?",
            "I want to talk to a real person", "what is my balance"]
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[max(0, min(len(s) - 1, int(-(-len(s) * p // 100)) - 1))]


async def _run(desk: Any, prefix: str, seconds: float, concurrency: int, per_conv: int = 3) -> dict[str, Any]:
    lat: list[float] = []
    errors = 0
    end = time.perf_counter() + seconds

    async def conversation(k: int) -> None:
        nonlocal errors
        n = 0
        while time.perf_counter() < end:
            cid = f"{prefix}-{k}-{n // per_conv}"
            t0 = time.perf_counter()
            try:
                await desk.handle(cid, MESSAGES[(k + n) % len(MESSAGES)])
                lat.append((time.perf_counter() - t0) * 1000)
            except Exception:  # a conflict or a store error: counted, not timed
                errors += 1
            n += 1

    started = time.perf_counter()
    await asyncio.gather(*(conversation(k) for k in range(concurrency)))
    wall = time.perf_counter() - started
    return {"turns": len(lat), "seconds": wall, "errors": errors, "latencies_ms": lat}


def worker(params: dict[str, Any]) -> None:
    """One process: set up, print READY, wait for GO on stdin, run, print the result as JSON."""
    from deskline.config import Settings
    from deskline.runtime import open_desk

    threads = params.get("threads", 1)
    if threads <= 1:
        desk = open_desk(Settings(database_url=params["db"]))
        asyncio.run(_run(desk, f"warm{params['k']}", params["warmup_s"], params["concurrency"]))
        print("READY", flush=True)
        sys.stdin.readline()
        result = asyncio.run(_run(desk, f"w{params['k']}-{uuid.uuid4().hex[:6]}", params["seconds"],
                                  params["concurrency"]))
        print(json.dumps(result), flush=True)
        return
    # The experiment for "a store that never blocks the loop": T desks in T threads of one
    # process, each with its own loop and concurrency/T conversations. Database waits then
    # overlap (psycopg releases the GIL while it waits), which is the most a bounded executor
    # for the store could give one process; the desk's own Python still shares one GIL.
    from concurrent.futures import ThreadPoolExecutor

    desks = [open_desk(Settings(database_url=params["db"])) for _ in range(threads)]
    share = max(1, params["concurrency"] // threads)

    def run_all(prefix: str, seconds: float) -> list[dict[str, Any]]:
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(lambda i: asyncio.run(_run(desks[i], f"{prefix}t{i}", seconds, share)),
                                 range(threads)))

    run_all(f"warm{params['k']}", params["warmup_s"])
    print("READY", flush=True)
    sys.stdin.readline()
    parts = run_all(f"w{params['k']}-{uuid.uuid4().hex[:6]}", params["seconds"])
    print(json.dumps({"turns": sum(p["turns"] for p in parts), "seconds": max(p["seconds"] for p in parts),
                      "errors": sum(p["errors"] for p in parts),
                      "latencies_ms": [x for p in parts for x in p["latencies_ms"]]}), flush=True)


def _fresh_schema(base: str) -> tuple[str, str]:
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}", schema


def _drop_schema(base: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(base.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def measure(db: str, procs: int, concurrency: int, seconds: float, warmup_s: float, threads: int = 1
            ) -> dict[str, Any]:
    from deskline.config import Settings
    from deskline.runtime import open_desk

    open_desk(Settings(database_url=db))  # create and seed once, before the processes race to
    children = []
    for k in range(procs):
        params = {"db": db, "k": k, "concurrency": concurrency, "seconds": seconds, "warmup_s": warmup_s,
                  "threads": threads}
        children.append(subprocess.Popen([sys.executable, __file__, "--worker", json.dumps(params)],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
    for child in children:
        assert child.stdout is not None and child.stdout.readline().strip() == "READY"
    for child in children:
        assert child.stdin is not None
        child.stdin.write("GO\n")
        child.stdin.flush()
    results = []
    for child in children:
        out, _ = child.communicate(timeout=seconds * 4 + 60)
        results.append(json.loads(out.strip().splitlines()[-1]))
    lat = [x for r in results for x in r["latencies_ms"]]
    wall = max(r["seconds"] for r in results)
    return {"procs": procs, "threads": threads, "concurrency": concurrency, "turns": len(lat),
            "turns_per_s": round(sum(r["turns"] / r["seconds"] for r in results), 1),
            "p50_ms": round(statistics.median(lat), 2), "p99_ms": round(pct(lat, 99), 2),
            "errors": sum(r["errors"] for r in results), "seconds": round(wall, 2)}


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        worker(json.loads(sys.argv[2]))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--postgres", default=os.environ.get("DESKLINE_BENCH_POSTGRES_URL", DEFAULT_PG))
    ap.add_argument("--threads", type=int, default=1,
                    help="desks per process, one loop each (the executor experiment; 1: today's single loop)")
    ap.add_argument("--sqlite", action="store_true", help="also one process on a SQLite file")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = []
    for n in args.procs:
        url, schema = _fresh_schema(args.postgres)
        try:
            row = measure(url, n, args.concurrency, args.seconds, args.warmup, args.threads)
            rows.append({"db": "postgresql", **row})
        finally:
            _drop_schema(args.postgres, schema)
    if args.sqlite:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            db = f"sqlite:///{Path(tmp) / 'bench.db'}"
            rows.append({"db": "sqlite", **measure(db, 1, args.concurrency, args.seconds, args.warmup, args.threads)})
    report = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "platform": platform.platform()}, "rows": rows}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{'db':<11}{'procs':>6}{'thr':>4}{'conc':>6}{'turns/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for r in rows:
        print(f"{r['db']:<11}{r['procs']:>6}{r['threads']:>4}{r['concurrency']:>6}{r['turns_per_s']:>10}{r['p50_ms']:>9}"
              f"{r['p99_ms']:>9}{r['errors']:>8}")
    print(f"({report['machine']['cpus']} CPUs, Python {report['machine']['python']})")


if __name__ == "__main__":
    main()
