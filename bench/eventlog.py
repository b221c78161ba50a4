"""Event-log throughput: appends (events/s) and whole turns (turns/s) on SQLite and PostgreSQL.

    python bench/eventlog.py [--json] [--turns 1000] [--postgres URL]

Prints a table (or one JSON object) with the machine's details. A benchmark, not a test: it
prints figures and asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pgschema import drop_schema, pg_schema  # bench/ helper, found beside this script
from sqlalchemy import text

from deskline.config import Settings
from deskline.eventlog.database import make_engine
from deskline.eventlog.events import CustomerMessaged, ReplySent, StrategyDecided
from deskline.eventlog.store import SqlEventStore
from deskline.runtime import open_desk

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
MESSAGES = [
    "I was charged twice for invoice INV-1001",
    "I forgot my password and can't log in",
    "my transfer to my landlord hasn't arrived",
    "is the service down?",
    "I want to talk to a real person",
    "what is my balance",
]


def bench_appends(url: str, conversations: int, turns: int, batch: int) -> dict[str, float]:
    """Append ``batch`` events a turn (a turn's worth), ``turns`` turns in each conversation."""
    store = SqlEventStore(make_engine(url))
    events = [CustomerMessaged(text="hello"), StrategyDecided(owner="bot", action="answer")]
    events += [StrategyDecided(owner="bot", action="answer")] * max(0, batch - 3)
    events.append(ReplySent(text="hi", department="other", mode="clarify"))
    events = events[:batch]
    started = time.perf_counter()
    n = 0
    for c in range(conversations):
        cid = f"b{c}"
        seq = 0
        for t in range(1, turns + 1):
            store.append(cid, seq, t, events)
            seq += len(events)
            n += len(events)
    wall = time.perf_counter() - started
    store.engine.dispose()
    return {"events": n, "seconds": round(wall, 3), "events_per_s": round(n / wall), "appends_per_s": round(n / batch / wall)}


def bench_turns(url: str, turns: int, conversations: int) -> dict[str, float]:
    desk = open_desk(Settings(database_url=url))
    latencies: list[float] = []

    async def run() -> None:
        for i in range(turns):
            cid = f"t{i % conversations}"
            t0 = time.perf_counter()
            await desk.handle(cid, MESSAGES[i % len(MESSAGES)])
            latencies.append((time.perf_counter() - t0) * 1000)

    started = time.perf_counter()
    asyncio.run(run())
    wall = time.perf_counter() - started
    s = sorted(latencies)
    return {"turns": turns, "seconds": round(wall, 3), "turns_per_s": round(turns / wall, 1),
            "p50_ms": round(statistics.median(s), 3), "p99_ms": round(s[int(len(s) * 0.99) - 1], 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--turns", type=int, default=1000)
    ap.add_argument("--postgres", default=os.environ.get("DESKLINE_TEST_POSTGRES_URL", DEFAULT_PG))
    ap.add_argument("--no-postgres", action="store_true")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp()
    targets = {"sqlite-memory": "sqlite://", "sqlite-file": f"sqlite:///{tmp}/bench.db"}
    schemas = []
    if not args.no_postgres:
        url, schema = pg_schema(args.postgres)
        targets["postgresql"] = url
        schemas.append(schema)
    results: dict[str, dict[str, object]] = {}
    try:
        for name, url in targets.items():
            if name == "sqlite-file":
                url = f"sqlite:///{tmp}/append.db"
            appends = bench_appends(url, conversations=50, turns=20, batch=8)
            turn_url = url if name != "sqlite-file" else f"sqlite:///{tmp}/turns.db"
            if name == "postgresql":
                with make_engine(url).begin() as conn:
                    conn.execute(text("DELETE FROM events; DELETE FROM open_turns"))
            results[name] = {"append": appends, "turns": bench_turns(turn_url, args.turns, 100)}
    finally:
        for schema in schemas:
            drop_schema(args.postgres, schema)
    report = {
        "machine": {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count()},
        "results": results,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{'database':<14} {'events/s':>10} {'appends/s':>10} {'turns/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for name, r in results.items():
        a, t = r["append"], r["turns"]
        print(f"{name:<14} {a['events_per_s']:>10} {a['appends_per_s']:>10} {t['turns_per_s']:>9} "  # type: ignore[index]
              f"{t['p50_ms']:>8} {t['p99_ms']:>8}")  # type: ignore[index]


if __name__ == "__main__":
    main()
