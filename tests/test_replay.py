"""Replay, retention and the incrementally maintained human queue."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from deskline.config import Settings
from deskline.eventlog.queue import HumanQueue
from deskline.eventlog.retention import compact
from deskline.hierarchy.replay import replay
from deskline.runtime import memory_desk, open_desk

SCRIPT = [
    "I was charged twice for invoice INV-1001",
    "I was charged twice on my last invoice",
    "INV-1003",
    "The app keeps crashing on login and also my transfer to my landlord hasn't arrived",
    "blorp zzz",
    "I want to talk to a real person",
    "hello?",
]


def converse(desk, cid: str) -> None:  # type: ignore[no-untyped-def]
    async def go() -> None:
        for text in SCRIPT:
            await desk.handle(cid, text)

    asyncio.run(go())


def test_replay_of_an_unchanged_desk_matches_the_log() -> None:
    """Every turn decided again from the log equals what was logged, refunds and escalations included."""
    desk = memory_desk()
    converse(desk, "c1")
    turns = asyncio.run(replay(desk, "c1"))
    assert len(turns) == len(SCRIPT)
    assert [t.differences for t in turns] == [()] * len(SCRIPT)
    assert turns[0].department == "billing" and turns[3].mode == "parallel"


def test_replay_with_a_changed_configuration_lists_changed_turns() -> None:
    """A stricter abstention threshold changes the less confident routes, and only those."""
    desk = memory_desk()
    converse(desk, "c1")
    logged = desk.store.load("c1")
    strict = memory_desk(Settings(abstain_threshold=0.95))
    turns = asyncio.run(replay(strict, "c1", logged))
    changed = {t.turn for t in turns if not t.same}
    from deskline.eventlog.projections import fold

    confident = {t.turn for t in fold("c1", logged).turns if t.stage == "classifier" and t.confidence >= 0.95}
    assert changed and not (changed & confident)
    assert 6 not in changed  # the request for a person is a rule, not a route


def test_replay_command_prints_turns_with_sequence_numbers(tmp_path: Path) -> None:
    """`deskline replay ID --json` reports each turn's department, mode, reply and event seqs."""
    url = f"sqlite:///{tmp_path}/d.db"
    desk = open_desk(Settings(database_url=url))
    converse(desk, "c1")
    done = subprocess.run([sys.executable, "-m", "deskline.cli", "replay", "c1", "--json"],
                          env={**__import__("os").environ, "DESKLINE_DATABASE_URL": url},
                          capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    out = json.loads(done.stdout)
    assert out["changed"] == []
    first = out["turns"][0]
    assert first["department"] == "billing" and first["seqs"][0] == 3 and "INV-1001" in first["reply"]
    missing = subprocess.run([sys.executable, "-m", "deskline.cli", "replay", "nope"],
                             env={**__import__("os").environ, "DESKLINE_DATABASE_URL": url},
                             capture_output=True, timeout=60)
    assert missing.returncode == 1 and b"no conversation" in missing.stderr


def test_compaction_archives_closed_conversations_and_keeps_replay_of_the_rest(tmp_path: Path) -> None:
    """Closed, idle conversations are archived and removed; others still replay unchanged."""
    desk = memory_desk()
    asyncio.run(desk.handle("old", "is the service down?"))
    asyncio.run(desk.handle("human", "I want to talk to a real person"))
    converse(desk, "kept")
    done = compact(desk.store, older_than_s=0, archive_dir=tmp_path, now=__import__("time").time() + 1)
    assert "old" in done.conversations and "human" not in done.conversations  # a person owns "human"
    assert desk.store.load("old") == []
    lines = __import__("gzip").open(done.archive, "rt").read().splitlines()
    assert any(json.loads(x)["conversation_id"] == "old" for x in lines)
    assert all(t.same for t in asyncio.run(replay(desk, "human")))


def test_human_queue_is_folded_incrementally() -> None:
    """The queue reads only new events, orders fraud first, and drops released conversations."""
    desk = memory_desk()
    queue = HumanQueue()
    asyncio.run(desk.handle("a", "I want to talk to a real person"))
    asyncio.run(desk.handle("b", "my card was stolen"))
    first = queue.refresh(desk.store)
    assert [q.conversation_id for q in queue.entries()] == ["b", "a"]
    assert queue.refresh(desk.store) == 0  # nothing new: nothing read
    asyncio.run(desk.handle("c", "is the service down?"))
    assert 0 < queue.refresh(desk.store) < first + 10
    assert len(queue) == 2
    assert queue.entries()[0].breaching(now=queue.entries()[0].requested_at + 301, sla_s=300)
