"""Turns/s and turn latency with many conversations at once, on PostgreSQL (and SQLite).

    python bench/pg_throughput.py [--procs 1 2 4] [--concurrency 50] [--seconds 10] [--postgres URL]
                                  [--sqlite] [--no-postgres] [--store default psycopg async executor blocking]
                                  [--rate R ...] [--json]

Each process opens the desk (``open_desk``: the real store, the built-in desk, no model) on one
fresh PostgreSQL schema and runs ``--concurrency`` conversations at once on its event loop (each
one turn after another, three turns per conversation, then a new one), for ``--seconds`` after a
warm-up on the same loop; all processes start together. Reported: turns/s summed over processes,
and p50/p99 of the turn latency over all turns. ``--store`` picks how the turns reach the store
(``open_bench_desk``): ``default`` what the desk picks (PostgreSQL: psycopg's asyncio connections,
``PgEventStore``; SQLite: the synchronous store in place), ``psycopg``, ``async`` (SQLAlchemy's
asyncio engine), ``executor`` (the synchronous store on worker threads), or ``blocking`` (the
synchronous store called on the loop, as before issue 18). ``--rate R`` offers about R turns/s per
process (random pauses between a conversation's turns, the first arrivals spread too) and counts
latency from when each message was due, so loop stalls caused by blocking calls show in p99.
Without ``--rate`` latency is closed-loop: with a blocking store a turn never yields, so its own
latency looks short while the others wait unmeasured; compare turns/s there. Run the "before" rows
on the code before issue 18 by putting its checkout first on PYTHONPATH (``open_bench_desk`` leaves
a desk without ``aio`` as it is).
A benchmark: it prints figures, asserts nothing.

Figures (2026-12-01, second session: 2 CPUs, Python 3.11, PostgreSQL 15 on loopback, the
machine otherwise idle; before = 2811085 on PYTHONPATH, after = this code; 8 s a row, run back to
back; the machine ran the same code ~2.7x faster than in the first session, whose rows are not comparable):

    db          store   procs  conc  offered  turns/s  p50 ms   p99 ms
    postgresql  before    1     50     max     232.0    4.55     8.27   (closed loop: see above)
    postgresql  before    2     50     max     492.5    3.89    10.41
    postgresql  before    4     50     max     487.3    7.66    19.94
    sqlite      before    1     50     max     909.4    1.12     4.74
    postgresql  after     1     50     max     572.5   86.85   122.82   (2.47x one process)
    postgresql  after     2     50     max     716.5  128.97   400.62
    postgresql  after     4     50     max     437.2  310.39  2330.62   (4 processes on 2 CPUs)
    sqlite      after     1     50     max    1132.8    0.76     4.90

    at a set load, one process, 10 s a row (``--rate``; turns/s is what was served):
    before  offered 150: 128.8 turns/s, p50 8.25 ms, p99 27.57 ms
    before  offered 250: 197.3 turns/s, p50 26.33 ms, p99 83.46 ms
    after   offered 300: 281.7 turns/s, p50 4.41 ms, p99 22.41 ms
    after   offered 400: 364.6 turns/s, p50 5.54 ms, p99 45.39 ms
    after   offered 500: 432.1 turns/s, p50 7.67 ms, p99 43.32 ms
    after   offered 560-600, seven runs: 483.6 / 444.7 / 495.2 / 485.6 / 514.9 / 508.0 / 468.8
            turns/s, p99 47.41 / 72.98 / 51.13 / 47.01 / 42.83 / 44.45 / 58.58 ms (median 47.41)
    after   offered 700: 536.0 turns/s, p50 15.68 ms, p99 53.22 ms

    one process, ``--store`` side by side at offered 300: psycopg's asyncio connections (the
    default) p50 4.3-5.4 ms, p99 26-54 ms; the bounded executor p50 6.5-16 ms, p99 64-127 ms.
    Two processes at the most they serve: psycopg 646-670 turns/s, executor 541-545. Four (twice
    the CPUs): the executor 568-599, psycopg 404-454 with 38 % of the CPU in the kernel (each
    round trip registers and unregisters its socket with the loop's selector).

What the PostgreSQL turn cost, and what took it down (CPU of the process per turn, ~2.2 ms
before, ~1.6 ms after; the whole machine's ~3.2 ms before, ~2.3-2.6 ms after): the hot path in
autocommit (a load and an append without COMMIT or ROLLBACK round trips); the append's rows as one
JSON text (psycopg dumped each list parameter in Python, escaping every quote by regex); the
turns' store on psycopg's asyncio connections (no thread hop per call, no SQLAlchemy asyncio
bridge); the built-in system of record's reads on the driver and its actions through Core (an
ORM read cost 280 us of CPU, a driver read 63 us); the server's start-up heap frozen out of full
garbage collections (30-75 ms stalls of every turn); the grounding checks' patterns looking
ahead for their first character.
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


async def _run(desk: Any, prefix: str, seconds: float, concurrency: int, per_conv: int = 3,
               rate: float = 0.0) -> dict[str, Any]:
    """``concurrency`` conversations, each one turn after another; with ``rate`` (turns/s for the
    process) each waits a random pause (exponential, mean ``concurrency / rate``) between turns,
    so the offered load is about ``rate`` and latency is measured below saturation."""
    import random

    lat: list[float] = []
    errors = 0
    end = time.perf_counter() + seconds

    async def conversation(k: int) -> None:
        nonlocal errors
        n = 0
        due = time.perf_counter()
        if rate > 0:  # arrivals spread from the start, not a burst of ``concurrency`` messages at once
            due += random.expovariate(rate / concurrency)
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
        while time.perf_counter() < end:
            cid = f"{prefix}-{k}-{n // per_conv}"
            # With a set rate, latency counts from when the message was due, so time spent waiting
            # for a loop that another turn's blocking call holds is counted too.
            t0 = due if rate > 0 else time.perf_counter()
            try:
                await desk.handle(cid, MESSAGES[(k + n) % len(MESSAGES)])
                lat.append((time.perf_counter() - t0) * 1000)
            except Exception:  # a conflict or a store error: counted, not timed
                errors += 1
            n += 1
            if rate > 0:
                due = time.perf_counter() + random.expovariate(rate / concurrency)
                await asyncio.sleep(max(0.0, due - time.perf_counter()))

    started = time.perf_counter()
    await asyncio.gather(*(conversation(k) for k in range(concurrency)))
    wall = time.perf_counter() - started
    return {"turns": len(lat), "seconds": wall, "errors": errors, "latencies_ms": lat}


class _Face:
    """The desk's store, with the bench's choice of how the turns reach it (``--store``)."""

    def __init__(self, store: Any, face: Any) -> None:
        self.inner, self.face = store, face

    def nonblocking(self) -> Any:
        return self.face

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def open_bench_desk(db: str, store: str) -> Any:
    """The desk on ``db`` with its turns reaching the store as ``store`` says: ``default`` (what
    the desk picks), ``psycopg`` (psycopg's asyncio connections, ``PgEventStore``), ``async``
    (SQLAlchemy's asyncio engine, ``AsyncSqlEventStore``), ``executor`` (the synchronous store on
    worker threads), ``blocking`` (the synchronous store called on the loop, as before issue 18)."""
    from deskline.config import Settings
    from deskline.runtime import open_desk

    desk = open_desk(Settings(database_url=db))
    if store == "default" or not hasattr(desk, "aio"):
        return desk
    from deskline.eventlog.async_sql import AsyncSqlEventStore
    from deskline.eventlog.nonblocking import ExecutorEventStore, InlineEventStore
    from deskline.eventlog.pg_async import PgEventStore

    faces = {"async": lambda s: AsyncSqlEventStore(db), "blocking": InlineEventStore,
             "psycopg": lambda s: PgEventStore(db),
             "executor": lambda s: ExecutorEventStore(s, workers=1 if db.startswith("sqlite") else 8)}
    desk.store = _Face(desk.store, faces[store](desk.store))
    return desk


def worker(params: dict[str, Any]) -> None:
    """One process: set up, print READY, wait for GO on stdin, run, print the result as JSON."""
    from deskline.config import Settings
    from deskline.runtime import open_desk

    threads = params.get("threads", 1)
    if threads <= 1:
        desk = open_bench_desk(params["db"], params.get("store", "default"))
        try:  # as ``deskline serve`` does once its app is up
            from deskline.runtime import freeze_startup_heap
        except ImportError:  # the code before issue 18
            pass
        else:
            freeze_startup_heap()

        async def session() -> dict[str, Any]:  # one loop: the asyncio pool warmed up is the one measured
            await _run(desk, f"warm{params['k']}", params["warmup_s"], params["concurrency"])
            print("READY", flush=True)
            await asyncio.to_thread(sys.stdin.readline)
            return await _run(desk, f"w{params['k']}-{uuid.uuid4().hex[:6]}", params["seconds"],
                              params["concurrency"], rate=params.get("rate", 0.0))

        print(json.dumps(asyncio.run(session())), flush=True)
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


def measure(db: str, procs: int, concurrency: int, seconds: float, warmup_s: float, threads: int = 1,
            store: str = "default", rate: float = 0.0) -> dict[str, Any]:
    from deskline.config import Settings
    from deskline.runtime import open_desk

    open_desk(Settings(database_url=db))  # create and seed once, before the processes race to
    children = []
    for k in range(procs):
        params = {"db": db, "k": k, "concurrency": concurrency, "seconds": seconds, "warmup_s": warmup_s,
                  "threads": threads, "store": store, "rate": rate}
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
    return {"procs": procs, "threads": threads, "store": store, "rate": rate, "concurrency": concurrency,
            "turns": len(lat),
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
    ap.add_argument("--store", nargs="+", default=["default"],
                    choices=["default", "psycopg", "async", "executor", "blocking"],
                    help="how turns reach the store (see open_bench_desk); one row set per choice")
    ap.add_argument("--rate", type=float, nargs="+", default=[0.0],
                    help="offered turns/s per process (0: as fast as it goes); latency rows at a set load")
    ap.add_argument("--no-postgres", action="store_true", help="SQLite rows only")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = []
    for store in args.store:
        for rate in args.rate:
            for n in [] if args.no_postgres else args.procs:
                url, schema = _fresh_schema(args.postgres)
                try:
                    row = measure(url, n, args.concurrency, args.seconds, args.warmup, args.threads, store, rate)
                    rows.append({"db": "postgresql", **row})
                finally:
                    _drop_schema(args.postgres, schema)
            if args.sqlite:
                import tempfile

                with tempfile.TemporaryDirectory() as tmp:
                    db = f"sqlite:///{Path(tmp) / 'bench.db'}"
                    rows.append({"db": "sqlite", **measure(db, 1, args.concurrency, args.seconds, args.warmup,
                                                           args.threads, store, rate)})
    report = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "platform": platform.platform()}, "rows": rows}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{'db':<11}{'store':>9}{'procs':>6}{'thr':>4}{'conc':>6}{'offered':>8}{'turns/s':>10}{'p50 ms':>9}"
          f"{'p99 ms':>9}{'errors':>8}")
    for r in rows:
        offered = f"{r['rate']:.0f}" if r["rate"] else "max"
        print(f"{r['db']:<11}{r['store']:>9}{r['procs']:>6}{r['threads']:>4}{r['concurrency']:>6}{offered:>8}"
              f"{r['turns_per_s']:>10}{r['p50_ms']:>9}{r['p99_ms']:>9}{r['errors']:>8}")
    print(f"({report['machine']['cpus']} CPUs, Python {report['machine']['python']})")


if __name__ == "__main__":
    main()
