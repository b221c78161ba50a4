"""Compensation: a plan that fails for good after actions undoes them, in reverse order, once.

The desk is the built-in one with ``unlock_and_sync`` (tests/desks/rollback.py): unlock the
account and send a reset link, then a sync step that always fails. The unlock is undone (the
account is locked again under the key ``<key>:undo``); the reset link cannot be, and the
escalation says so. A retried turn, and a turn recovered after its process was killed in the
middle of undoing, undo nothing twice.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from deskline import SkillCall, SkillError, memory_desk
from deskline.agents.builtin.backend.sql import SqlBackend
from deskline.agents.builtin.backend.tables import LedgerRow
from deskline.config import Settings
from deskline.definition import DeskDefinitionError, validate
from deskline.eventlog.database import make_engine
from deskline.eventlog.events import (
    CompensationCompleted,
    CompensationFailed,
    CompensationRequested,
    CompensationSkipped,
    ConversationOpened,
    CustomerMessaged,
    EscalationRequested,
    Event,
)
from deskline.eventlog.projections import fold
from deskline.handoffs import AgentResult
from deskline.hierarchy.explain import explain, render
from deskline.hierarchy.replay import replay
from deskline.runtime import open_desk
from tests.desks import rollback

ASK = "please unlock my account and sync my devices"


def events(desk: Any, cid: str) -> list[Event]:
    return [r.event for r in desk.store.load(cid)]


def undo_keys(backend: Any) -> list[str]:
    return [k for k in backend._ledger if k.endswith(":undo")]


def test_a_failed_plan_undoes_its_actions_in_reverse_and_escalates_with_the_path() -> None:
    """The unlock is undone once (locked again), the reset link is kept and said so, a person gets the path."""
    desk = memory_desk(desk=rollback.desk)
    r = asyncio.run(desk.handle("c1", ASK))
    assert r.escalated and r.mode == "sequential"
    assert "unlocked" not in (r.reply or "")  # the reply claims nothing that was undone
    assert desk.records.customer("C-1001").status == "locked"
    assert undo_keys(desk.records) == ["c1:1:unlock:undo"]
    kinds = [e.type for e in events(desk, "c1")]
    assert kinds[kinds.index("workflow_finished") + 1:] == [
        "compensation_skipped", "compensation_requested", "compensation_completed",  # reverse order: reset, unlock
        "escalation_requested", "reply_sent"]
    skipped = next(e for e in events(desk, "c1") if isinstance(e, CompensationSkipped))
    assert (skipped.action, skipped.reason) == ("tech.reset_password", "a reset link that was sent cannot be unsent")
    requested = next(e for e in events(desk, "c1") if isinstance(e, CompensationRequested))
    assert (requested.of_key, requested.idempotency_key) == ("c1:1:unlock", "c1:1:unlock:undo")
    done = next(e for e in events(desk, "c1") if isinstance(e, CompensationCompleted))
    assert done.facts["account_status"] == "locked"
    escalation = next(e for e in events(desk, "c1") if isinstance(e, EscalationRequested))
    assert rollback.SYNC_ERROR in escalation.reason
    assert "undone: tech.unlock_account" in escalation.reason
    assert "could not be undone: tech.reset_password (a reset link that was sent cannot be unsent)" in escalation.reason
    assert "undone tech.unlock_account (c1:1:unlock:undo)" in fold("c1", desk.store.load("c1")).actions_taken


def test_explain_and_replay_show_the_compensation() -> None:
    """`deskline explain` lists what was undone and what was kept; replay reproduces it from the log."""
    desk = memory_desk(desk=rollback.desk)
    asyncio.run(desk.handle("c1", ASK))
    text = "\n".join(render(explain(desk.store.load("c1"))))
    assert "undo unlock tech.unlock_account by tech.unlock_account:compensate key c1:1:unlock:undo: undone" in text
    assert "not undone reset tech.reset_password" in text
    assert "node sync tech.sync_devices after unlock, reset -> failed" in text
    assert [t.same for t in asyncio.run(replay(desk, "c1"))] == [True]
    assert undo_keys(desk.records) == ["c1:1:unlock:undo"]  # replay ran nothing again


def test_a_retried_turn_undoes_nothing_twice() -> None:
    """Deciding the same turn again (a retry after a crash) replays the unlock and its undo from the ledger."""
    desk = memory_desk(desk=rollback.desk)
    first = asyncio.run(desk.handle("c1", ASK))
    records = desk.store.load("c1")
    state = fold("c1", [x for x in records if x.event.type in ("conversation_opened", "customer_messaged")])
    again = asyncio.run(desk.decide(state, state.turns[-1]))
    assert undo_keys(desk.records) == ["c1:1:unlock:undo"]
    completed = [e for e in again if isinstance(e, CompensationCompleted)]
    assert len(completed) == 1 and completed[0].facts == next(
        e for e in events(desk, "c1") if isinstance(e, CompensationCompleted)).facts
    assert again[-1].text == first.reply  # type: ignore[union-attr]
    assert desk.records.customer("C-1001").status == "locked"


def test_an_undo_begun_by_an_earlier_attempt_is_finished_even_if_the_failure_is_gone() -> None:
    """A turn decided again whose first attempt began undoing ends undone and with a person, never half done."""
    calls = {"n": 0}

    async def flaky(call: SkillCall) -> AgentResult:
        calls["n"] += 1
        if calls["n"] == 1:
            raise SkillError("the registry is down for good", transient=False)
        return call.result()

    sync = dataclasses.replace(rollback.SYNC, run=flaky)
    desk = memory_desk(desk=rollback.with_sync(sync))
    desk.store.append("c1", 0, 1, [ConversationOpened(customer_id="C-1001", verified_at=time.time(),
                                                      verified_by="operator"), CustomerMessaged(text=ASK)])
    state = fold("c1", desk.store.load("c1"))
    first = asyncio.run(desk.decide(state, state.turns[-1]))  # dies before appending, say
    assert any(isinstance(e, CompensationCompleted) for e in first)
    second = asyncio.run(desk.decide(state, state.turns[-1]))  # the sync now works...
    assert calls["n"] == 2
    reasons = " ".join(e.reason for e in second if isinstance(e, EscalationRequested))
    assert "an earlier attempt of this turn began undoing its actions" in reasons  # ... but the undo stands
    assert [e.type for e in second].count("compensation_completed") == 1
    assert undo_keys(desk.records) == ["c1:1:unlock:undo"]
    assert desk.records.customer("C-1001").status == "locked"


def test_a_compensation_that_fails_is_reported_as_not_undone() -> None:
    """An undo that fails for good leaves the action done, and the escalation says the undo failed."""

    async def cannot(call: SkillCall) -> AgentResult:
        raise SkillError("the lock service is gone", transient=False)

    unlock = dataclasses.replace(rollback.builtin.registry["tech.unlock_account"], compensate=cannot)
    base = rollback.with_sync()
    desk = memory_desk(desk=dataclasses.replace(
        base, skills=tuple(unlock if s.name == unlock.name else s for s in base.skills)))
    r = asyncio.run(desk.handle("c1", ASK))
    assert r.escalated and desk.records.customer("C-1001").status == "active"
    failed = next(e for e in events(desk, "c1") if isinstance(e, CompensationFailed))
    assert failed.error == "the lock service is gone"
    escalation = next(e for e in events(desk, "c1") if isinstance(e, EscalationRequested))
    assert "undo FAILED: tech.unlock_account (the lock service is gone)" in escalation.reason


def test_compensations_are_validated_with_the_desk() -> None:
    """An undo naming an unknown skill, one that takes no action, or on a skill that acts not, is refused."""
    read = rollback.builtin.registry["tech.check_account"]
    unlock = rollback.builtin.registry["tech.unlock_account"]
    broken = (dataclasses.replace(unlock, compensate="tech.no_such_skill"),
              dataclasses.replace(read, compensate="tech.unlock_account"),
              dataclasses.replace(rollback.builtin.registry["payment.retry_payment"], compensate="tech.check_account"))
    names = {s.name for s in broken}
    desk = dataclasses.replace(rollback.builtin, skills=(*[s for s in rollback.builtin.skills if s.name not in names],
                                                         *broken))
    with pytest.raises(DeskDefinitionError) as caught:
        validate(desk)
    problems = "\n".join(caught.value.problems)
    assert "'tech.unlock_account' is compensated by unknown skill 'tech.no_such_skill'" in problems
    assert "'tech.check_account' declares how to undo its action, but takes no action" in problems
    assert "'payment.retry_payment' is compensated by 'tech.check_account', which takes no action" in problems


# -- kill -9 in the middle of undoing ------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import asyncio, sys, time
    from dataclasses import replace
    from tests.desks import rollback
    from deskline.config import Settings
    from deskline.runtime import open_desk

    url, signal_file = sys.argv[1], sys.argv[2]
    unlock = rollback.builtin.registry["tech.unlock_account"]
    relock = unlock.compensate

    async def relock_then_hang(call):
        result = await relock(call)              # the account is locked again, in the ledger as <key>:undo
        open(signal_file, "w").write("relocked")
        time.sleep(600)                          # ... and the process dies here, nothing appended
        return result

    hanging = replace(unlock, compensate=relock_then_hang)
    base = rollback.desk
    definition = replace(base, skills=tuple(hanging if s.name == unlock.name else s for s in base.skills))
    desk = open_desk(Settings(database_url=url, turn_lease_s=1.0), desk=definition)
    asyncio.run(desk.handle("undo-1", sys.argv[3], client_message_id="m-1"))
    """
)


def test_kill_9_mid_compensation_then_recovery_finishes_it_once(database_url: str, tmp_path: Path) -> None:
    """SIGKILL after the undo, before the turn's events: recovery finishes the turn, undoing nothing twice."""
    flag = tmp_path / "relocked"
    child = subprocess.Popen([sys.executable, "-c", CHILD, database_url, str(flag), ASK],
                             cwd=Path(__file__).resolve().parents[1])
    try:
        deadline = time.monotonic() + 60
        while not flag.exists():
            assert child.poll() is None, "the child died before undoing"
            assert time.monotonic() < deadline, "the child never undid the unlock"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
    desk = open_desk(Settings(database_url=database_url), desk=rollback.desk)
    assert [r.event.type for r in desk.store.load("undo-1")][-1] == "customer_messaged"  # accepted, unanswered
    backend = SqlBackend(make_engine(database_url))
    assert backend.recorded("undo-1:1:unlock:undo") is not None  # the undo happened before the kill

    done = asyncio.run(desk.recover_all())
    assert [d.conversation_id for d in done] == ["undo-1"] and done[0].escalated
    kinds = [r.event.type for r in desk.store.load("undo-1")]
    assert kinds.count("reply_sent") == 1 and kinds.count("compensation_completed") == 1
    assert backend.customer("C-1001").status == "locked"  # type: ignore[union-attr]
    ledger = backend.recorded("undo-1:1:unlock:undo")
    assert ledger is not None and ledger.action == "relock_account"
    with Session(backend.engine) as s:
        actions = sorted(s.exec(select(LedgerRow.action)).all())
    assert actions == ["relock_account", "send_password_reset", "unlock_account"]  # each once
    escalation = next(r.event for r in desk.store.load("undo-1") if isinstance(r.event, EscalationRequested))
    assert "undone: tech.unlock_account" in escalation.reason
    assert desk.store.unfinished() == []
