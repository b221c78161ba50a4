"""Crash recovery and concurrent writers, with real processes on real databases.

A child process runs a real desk whose refund skill signals once the refund is done and then
hangs; the test kills it with SIGKILL mid-turn, and a fresh desk finishes the turn: the accepted
message is answered exactly once and the refund is not taken again.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

from deskline.agents.builtin.backend.sql import SqlBackend
from deskline.config import Settings
from deskline.eventlog.database import make_engine
from deskline.runtime import open_desk

CHILD = textwrap.dedent(
    """
    import asyncio, os, sys, time
    from dataclasses import replace
    from deskline.agents.builtin import desk as builtin
    from deskline.config import Settings
    from deskline.runtime import open_desk

    url, signal_file = sys.argv[1], sys.argv[2]
    skill = builtin.registry["billing.review_duplicate_charge"]

    async def refund_then_hang(call):
        result = await skill.run(call)          # the refund is done and in the backend's ledger
        open(signal_file, "w").write("refunded")
        time.sleep(600)                          # ... and the process dies here
        return result

    hanging = replace(skill, run=refund_then_hang)
    definition = replace(builtin, skills=tuple(hanging if s.name == skill.name else s for s in builtin.skills))
    desk = open_desk(Settings(database_url=url, turn_lease_s=1.0), desk=definition)
    asyncio.run(desk.handle("crash-1", "I was charged twice for invoice INV-1001", client_message_id="m-1"))
    """
)


def test_kill_9_mid_turn_then_recover_exactly_once(database_url: str, tmp_path: Path) -> None:
    """SIGKILL after the refund, before the reply: recovery answers once and refunds once."""
    flag = tmp_path / "refunded"
    child = subprocess.Popen([sys.executable, "-c", CHILD, database_url, str(flag)])
    try:
        deadline = time.monotonic() + 60
        while not flag.exists():
            assert child.poll() is None, "the child died before refunding"
            assert time.monotonic() < deadline, "the child never refunded"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
    desk = open_desk(Settings(database_url=database_url))
    before = [r.event.type for r in desk.store.load("crash-1")]
    assert before[-1] == "customer_messaged"  # accepted, never answered
    assert desk.store.unfinished() == [("crash-1", 1)]

    result = asyncio.run(desk.handle("crash-1", "I was charged twice for invoice INV-1001", client_message_id="m-1"))
    assert result.reply and "CH-2002" in result.reply
    kinds = [r.event.type for r in desk.store.load("crash-1")]
    assert kinds.count("reply_sent") == 1 and kinds.count("customer_messaged") == 1
    charges = SqlBackend(make_engine(database_url)).charges("C-1001", "INV-1001")
    assert [c.status for c in charges].count("refunded") == 1
    assert desk.store.unfinished() == []


WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from deskline.config import Settings
    from deskline.runtime import open_desk
    url, name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    desk = open_desk(Settings(database_url=url))
    async def main():
        for i in range(n):
            await desk.handle("shared", f"is the service down? {name}-{i}", client_message_id=f"{name}-{i}")
    asyncio.run(main())
    """
)


def test_concurrent_processes_never_gap_or_duplicate(database_url: str) -> None:
    """Three processes writing one conversation: consecutive seqs, one reply per message."""
    open_desk(Settings(database_url=database_url))  # create the schema before the race
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, database_url, f"w{i}", "8"]) for i in range(3)]
    assert [p.wait(120) for p in procs] == [0, 0, 0]
    desk = open_desk(Settings(database_url=database_url))
    records = desk.store.load("shared")
    assert [r.seq for r in records] == list(range(1, len(records) + 1))
    messages = Counter(r.event.client_message_id for r in records if r.event.type == "customer_messaged")  # type: ignore[union-attr]
    assert len(messages) == 24 and set(messages.values()) == {1}
    replies = [r for r in records if r.event.type == "reply_sent"]
    assert len(replies) == 24
    assert sorted(r.turn for r in replies) == list(range(1, 25))


def test_a_serving_app_sweeps_up_a_turn_whose_process_died(tmp_path: Path) -> None:
    """A turn accepted by a process that then died, in a conversation nobody touches again, is
    answered by the recovery sweep of a serving app, once; a turn a live desk holds is left to it."""
    from fastapi.testclient import TestClient

    from deskline.api import WebSettings, create_app
    from deskline.eventlog.events import ConversationOpened, CustomerMessaged

    settings = Settings(database_url=f"sqlite:///{tmp_path}/sweep.db", turn_lease_s=0.2)
    desk = open_desk(settings)
    opened = ConversationOpened(customer_id="C-1001")
    desk.store.append("dead", 0, 1, [opened, CustomerMessaged(text="I forgot my password")],
                      holder="a-desk-that-died", ttl_s=0.2)
    desk.store.append("alive", 0, 1, [opened, CustomerMessaged(text="I forgot my password")],
                      holder="a-desk-still-deciding", ttl_s=60)
    app = create_app(settings, desk, web=WebSettings(sweep_interval_s=0.1, event_channel="none"))
    with TestClient(app):
        deadline = time.monotonic() + 10
        while ("dead", 1) in desk.store.unfinished() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # a few more sweeps
    kinds = [r.event.type for r in desk.store.load("dead")]
    assert kinds.count("reply_sent") == 1, kinds
    assert desk.store.unfinished() == [("alive", 1)]
