"""Turns/s and turn latency with many conversations at once, on PostgreSQL (and SQLite).

    python bench/pg_throughput.py [--procs 1 2 4] [--concurrency 50] [--seconds 10] [--postgres URL]
                                  [--sqlite] [--no-postgres] [--store default async executor blocking]
                                  [--rate R ...] [--json]

Each process opens the desk (``open_desk``: the real store, the built-in desk, no model) on one
fresh PostgreSQL schema and runs ``--concurrency`` conversations at once on its event loop (each
one turn after another, three turns per conversation, then a new one), for ``--seconds`` after a
warm-up on the same loop; all processes start together. Reported: turns/s summed over processes,
and p50/p99 of the turn latency over all turns. ``--store`` picks how the turns reach the store
(``open_bench_desk``): ``default`` what the desk picks (issue 18: PostgreSQL through the asyncio
store, SQLite through the bounded executor), ``async``, ``executor``, or ``blocking`` (the
synchronous store called on the loop, as before). ``--rate R`` offers about R turns/s per process
(random pauses between a conversation's turns) and counts latency from when each message was due,
so loop stalls caused by blocking calls show in p99. Without ``--rate`` latency is closed-loop:
with a blocking store a turn never yields, so its own latency looks short while the others wait
unmeasured; compare turns/s there. Run the "before" rows on the code before issue 18 by putting
its checkout first on PYTHONPATH (``open_bench_desk`` leaves a desk without ``aio`` as it is).
A benchmark: it prints figures, asserts nothing.

Figures (2026-12-01, 2 CPUs, Python 3.11, PostgreSQL on loopback, the machine otherwise idle but
slower than on 2026-11-21: the peers' fastest row took 8.4-8.7 ms a turn where it took 2.9 ms):

    before = 2811085 (sync store and skills on the loop), after = this code, 8 s per row:
    db          store     procs  conc  turns/s  p50 ms  p99 ms
    postgresql  before      1     50     87.2    10.99   27.05   (closed loop: see above)
    postgresql  before      1     50     83.3    11.70   26.63   (again, after the "after" rows)
    postgresql  before      2     50    191.1     9.99   22.14
    postgresql  before      4     50    149.3    24.18   68.62
    sqlite      before      1     50    269.2     3.41   15.97
    postgresql  after       1     50     84.9   565.1  1009.42
    postgresql  after       2     50    125.7   705.38  1782.41
    postgresql  after       4     50    154.2  1034.98  3300.68
    sqlite      after       1     50    289.0     3.30   19.00

    one process, interleaved rounds (the other core busy with a llama.cpp server), turns/s:
    asyncio drivers 73.9 / 65.7 / 79.9 / 87.1, bounded executor 93.0 / 87.1 / 90.5 / 89.9,
    blocking on the loop 63.3 / 65.9 / 56.9 / 63.7  ->  the executor is the default.

    later, after the classifier stopped scoring a follow-up's text twice (8 s per row, back to back):
    after 70.7 / 109.2 turns/s (1 / 2 processes), before 82.8 / 154.7; at --rate 40, one process:
    after p50 24.2 ms p99 694 ms, before p50 17.9 ms p99 386 ms.

A PostgreSQL turn costs ~10 ms of CPU here (``time.process_time`` over a run: 80 turns/s at 0.80
of a core), four times the in-memory embedded turn: psycopg's Python, the built-in system of
record's SQLModel sessions, and the thread hops that keep them off the loop. One process is
CPU-bound, so overlapping its database waits cannot double its turns/s: the issue's goal (2x one
process, p99 < 50 ms at that load) is NOT met. On loopback a round trip takes ~0.1 ms, so the
blocking code lost little by waiting and the thread hops that replace the waits cost more than
they save: the non-blocking code is 15-30 % below it in turns/s and its p99 at a set load is
higher. Against a database a network away (~1 ms a round trip) the balance should turn; not
measured here.
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
