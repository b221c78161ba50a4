"""Human-side commands: claim, reply, hand back, approve; each one an event."""

from __future__ import annotations

import asyncio

import pytest

from deskline.hierarchy.humans import AlreadyClaimed, HumanConsole, NoPendingAction, NotClaimed, NotEscalated
from deskline.runtime import memory_desk


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_claim_reply_release_then_the_bot_answers_again() -> None:
    """A person claims, replies and hands back; the bot answers the next message."""
    desk = memory_desk()
    console = HumanConsole(desk)
    run(desk.handle("c1", "I want to talk to a real person"))
    console.claim("c1", "dana")
    console.reply("c1", "dana", "Hi, Dana here. How can I help?")
    assert run(desk.handle("c1", "my invoice INV-1001 looks wrong")).reply is None  # a person owns it
    console.release("c1", "dana", note="resolved")
    after = run(desk.handle("c1", "is the service down?"))
    assert after.reply and after.department == "tech"
    kinds = [r.event.type for r in desk.store.load("c1")]
    assert {"escalation_claimed", "human_replied", "escalation_released"} <= set(kinds)


def test_two_agents_cannot_claim_the_same_conversation() -> None:
    """The second claim is refused with who owns it; nobody can act on an unclaimed case."""
    desk = memory_desk()
    console = HumanConsole(desk)
    run(desk.handle("c1", "I want to talk to a real person"))
    console.claim("c1", "dana")
    with pytest.raises(AlreadyClaimed) as err:
        console.claim("c1", "lee")
    assert err.value.fields["claimed_by"] == "dana"
    with pytest.raises(NotClaimed):
        console.reply("c1", "lee", "hi")
    run(desk.handle("c2", "is the service down?"))
    with pytest.raises(NotEscalated):
        console.claim("c2", "dana")


def test_approving_the_gated_refund_runs_it_once() -> None:
    """The $750 refund waits for a person; approval runs it once, under the turn's original key."""
    desk = memory_desk()
    console = HumanConsole(desk)
    r = run(desk.handle("c1", "I was charged twice for invoice INV-1003"))
    assert r.escalated
    console.claim("c1", "dana")
    run(console.decide_action("c1", "dana", approve=True))
    backend = desk.operator.backend
    assert [c.status for c in backend.charges("C-1001", "INV-1003")].count("refunded") == 1
    with pytest.raises(NoPendingAction):
        run(console.decide_action("c1", "dana", approve=True))
    replies = [r.event for r in desk.store.load("c1") if r.event.type == "human_replied"]
    assert "$750.00" in replies[-1].text  # type: ignore[union-attr]


def test_rejecting_the_action_changes_nothing() -> None:
    """A rejected action is recorded and the money stays where it was."""
    desk = memory_desk()
    console = HumanConsole(desk)
    run(desk.handle("c1", "I was charged twice for invoice INV-1003"))
    console.claim("c1", "dana")
    run(console.decide_action("c1", "dana", approve=False))
    assert all(c.status == "captured" for c in desk.operator.backend.charges("C-1001", "INV-1003"))
