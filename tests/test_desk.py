"""Whole turns through SupportDesk: strategy -> tactical -> operation -> writer -> event log."""

from __future__ import annotations

import asyncio

import pytest

from deskline.agents.builtin.desk import ROUTER

from deskline.agents.builtin.backend.memory import MemoryBackend
from deskline.agents.registry import Skill, SkillCall
from deskline.definition import Desk
from deskline.config import Settings
from deskline.errors import EmptyMessage, InvalidEncoding, MessageTooLong
from deskline.eventlog.events import CustomerMessaged, EscalationRequested
from deskline.eventlog.store import MemoryEventStore
from deskline.handoffs.payload import AgentResult
from deskline.hierarchy.desk import SupportDesk
from deskline.routing.classifier import load_classifier
from tests.fakes import BUILTIN, KeywordClassifier, NoParams, builtin_with


def make_desk(classifier: object | None = None, definition: Desk | None = None,
              settings: Settings | None = None) -> tuple[SupportDesk, MemoryEventStore, MemoryBackend]:
    store, backend = MemoryEventStore(), MemoryBackend()
    desk = SupportDesk(store=store, desk=definition or BUILTIN, records=backend,
                       classifier=classifier or load_classifier(ROUTER), settings=settings)
    return desk, store, backend


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def kinds(store: MemoryEventStore, cid: str) -> list[str]:
    return [r.event.type for r in store.load(cid)]


def test_a_turn_appends_an_event_at_each_layer() -> None:
    """One billing turn records message, strategy, plan, handoff, action, result and reply."""
    desk, store, _ = make_desk()
    r = run(desk.handle(None, "I was charged twice for invoice INV-1001"))
    assert (r.department, r.mode, r.escalated, r.llm_calls) == ("billing", "single", False, 0)
    assert "INV-1001" in (r.reply or "") and "$49.00" in (r.reply or "")
    assert kinds(store, r.conversation_id) == [
        "conversation_opened", "customer_messaged", "strategy_decided", "plan_made", "handoff_sent",
        "action_requested", "action_completed", "agent_completed", "reply_sent",
    ]
    assert r.events == 9


def test_resending_a_client_message_id_returns_the_first_reply() -> None:
    """The same client message id twice appends once and answers the same."""
    desk, store, _ = make_desk()
    first = run(desk.handle("c1", "is the service down?", client_message_id="m1"))
    again = run(desk.handle("c1", "is the service down?", client_message_id="m1"))
    assert again.reply == first.reply and again.duplicate and again.events == 0
    assert kinds(store, "c1").count("customer_messaged") == 1


@pytest.mark.parametrize(("text", "error"), [("  \n ", EmptyMessage), ("x" * 4001, MessageTooLong),
                                             (b"\xff\xfe", InvalidEncoding), ("bad \udcff", InvalidEncoding)])
def test_bad_input_raises_a_typed_error_and_appends_nothing(text: str | bytes, error: type[Exception]) -> None:
    """Empty, oversized and undecodable messages are refused before anything is written."""
    desk, store, _ = make_desk()
    with pytest.raises(error):
        run(desk.handle("c1", text))
    assert store.load("c1") == []


def test_slot_filling_over_two_turns_resumes_the_plan() -> None:
    """A missing invoice id becomes a question, and the answer resumes the same plan."""
    desk, store, _ = make_desk()
    first = run(desk.handle("c1", "I was charged twice on an invoice"))
    assert first.department == "billing" and "invoice number" in (first.reply or "")
    second = run(desk.handle("c1", "it's INV-1001"))
    assert second.stage == "resume" and second.department == "billing"
    assert "INV-1001" in (second.reply or "") and "$49.00" in (second.reply or "")


def test_refund_above_the_approval_limit_goes_to_a_person_with_the_action_attached() -> None:
    """The $750 duplicate refund stops at the gate: escalated, pending action in the queue payload."""
    desk, store, backend = make_desk()
    r = run(desk.handle("c1", "I was charged twice for invoice INV-1003"))
    assert r.escalated and r.department == "billing"
    assert "approval" in (r.reply or "")
    escalation = next(x.event for x in store.load("c1") if isinstance(x.event, EscalationRequested))
    assert escalation.pending_action is not None and escalation.pending_action["amount"] == "$750.00"
    assert all(c.status == "captured" for c in backend.charges("C-1001", "INV-1003"))


def test_retried_turn_does_not_repeat_the_refund() -> None:
    """Deciding the same turn twice (a retry after a crash) refunds once and says the same."""
    desk, store, backend = make_desk()
    r = run(desk.handle("c1", "I was charged twice for invoice INV-1001"))
    from deskline.eventlog.projections import fold

    records = store.load("c1")
    state = fold("c1", [x for x in records if x.turn == 1 and x.event.type in ("conversation_opened", "customer_messaged")])
    again = run(desk.decide(state, state.turns[-1]))
    refunded = [c for c in backend.charges("C-1001", "INV-1001") if c.status == "refunded"]
    assert len(refunded) == 1
    assert again[-1].text == r.reply  # type: ignore[union-attr]


def test_person_request_escalates_and_the_bot_then_holds() -> None:
    """After an escalation a person owns the conversation and the bot stays silent."""
    desk, store, _ = make_desk()
    r = run(desk.handle("c1", "I want to talk to a real person"))
    assert (r.department, r.mode, r.escalated) == ("human", "escalate", True)
    held = run(desk.handle("c1", "hello? anyone?"))
    assert held.reply is None
    assert kinds(store, "c1")[-1] == "turn_held"


def test_three_failed_turns_hand_the_conversation_to_a_person() -> None:
    """Three clarifying questions in a row, and the fourth turn goes to a person."""
    desk, _, _ = make_desk(classifier=KeywordClassifier())
    modes = [run(desk.handle("c1", f"blorp {i}")).mode for i in range(4)]
    assert modes == ["clarify", "clarify", "clarify", "escalate"]


def test_parallel_and_sequential_plans_end_to_end() -> None:
    """Two problems run in parallel; a conditional request runs in order."""
    desk, store, _ = make_desk()
    both = run(desk.handle("p", "The app keeps crashing on login and also my transfer to my landlord hasn't arrived"))
    assert both.mode == "parallel"
    assert kinds(store, "p").count("handoff_sent") == 2
    cond = run(desk.handle("s", "if my payment PAY-3002 failed, send me invoice INV-1001"))
    assert cond.mode == "sequential"
    handoffs = [r.event for r in store.load("s") if r.event.type == "handoff_sent"]
    assert handoffs[1].handoff.upstream and handoffs[1].handoff.upstream[0].step_id == "s1"  # type: ignore[union-attr]


async def _invent(call: SkillCall) -> AgentResult:
    return call.result(invoice_id="INV-1001")


def test_a_reply_with_invented_facts_is_caught_and_escalated() -> None:
    """A template that states an amount no result holds fails grounding: fallback text, escalated."""
    liar = Skill(name="billing.liar", agent="billing", description="invents", params=NoParams, run=_invent,
                 intents=frozenset({"invoice_question"}), templates={"default": "Invoice {invoice_id} was refunded $999.00."})
    reg = BUILTIN.registry
    definition = builtin_with([*[s for s in reg.skills.values() if s.agent != "billing"], liar,
                               *[s for s in reg.skills.values()
                                 if s.agent == "billing" and s.name != reg.defaults["billing"]]],
                              billing="billing.liar")
    desk, store, _ = make_desk(classifier=KeywordClassifier(), definition=definition)
    r = run(desk.handle("c1", "about my invoice"))
    assert r.escalated and "$999.00" not in (r.reply or "")
    reply = store.load("c1")[-1].event
    assert reply.grounded is False  # type: ignore[union-attr]


def test_recover_finishes_an_accepted_message_exactly_once() -> None:
    """A message accepted before a crash is answered once by recover(), and not again."""
    desk, store, _ = make_desk()
    store.append("c1", 0, 1, [CustomerMessaged(text="is the service down?", client_message_id="m1")])
    done = run(desk.recover("c1"))
    assert done is not None and done.reply
    assert run(desk.recover("c1")) is None
    assert kinds(store, "c1").count("reply_sent") == 1


def test_concurrent_turns_on_one_conversation_never_double_reply() -> None:
    """Many turns at once on one conversation: consecutive seqs, one reply per message."""
    desk, store, _ = make_desk()

    async def burst() -> None:
        await asyncio.gather(*(desk.handle("c1", f"is the service down? #{i}", client_message_id=f"m{i}") for i in range(8)))

    run(burst())
    records = store.load("c1")
    assert [r.seq for r in records] == list(range(1, len(records) + 1))
    assert kinds(store, "c1").count("customer_messaged") == kinds(store, "c1").count("reply_sent") == 8


async def _broken(call: SkillCall) -> AgentResult:
    return call.result(invoice_id="INV-1001")  # its template also wants {status}: a bug


def test_a_turn_that_raises_ends_with_a_person_and_the_conversation_goes_on() -> None:
    """A skill or template bug escalates that turn with the holding reply; later messages are still taken."""
    broken = Skill(name="billing.broken", agent="billing", description="buggy", params=NoParams, run=_broken,
                   intents=frozenset({"invoice_question"}), templates={"default": "Invoice {invoice_id} is {status}."})
    definition = builtin_with([broken, *BUILTIN.skills])
    desk, store, _ = make_desk(classifier=KeywordClassifier(), definition=definition)
    first = run(desk.handle("c1", "about my invoice"))
    assert first.reply == BUILTIN.texts.holding and first.escalated
    assert store.unfinished() == []
    assert run(desk.handle("c1", "hello?")).reply is None  # a person owns it now; the message was taken
    assert kinds(store, "c1").count("customer_messaged") == 2


def test_a_resend_waiting_on_another_desk_gets_its_own_turns_reply() -> None:
    """A resent message whose turn another desk is deciding returns that turn's reply, not a later one."""
    from deskline.eventlog.events import ReplySent

    desk, store, _ = make_desk()
    store.append("c1", 0, 1, [CustomerMessaged(text="first", client_message_id="K1")])
    assert store.lease("c1", 1, "other-desk", 30)

    async def other_desk_answers_then_a_second_message() -> None:
        await asyncio.sleep(0.05)
        store.append("c1", 1, 1, [ReplySent(text="REPLY TO K1", department="other", mode="clarify")])
        store.append("c1", 2, 2, [CustomerMessaged(text="second", client_message_id="K2"),
                                  ReplySent(text="REPLY TO K2", department="other", mode="clarify")])

    async def both():  # type: ignore[no-untyped-def]
        return (await asyncio.gather(desk.handle("c1", "first", client_message_id="K1"),
                                     other_desk_answers_then_a_second_message()))[0]

    resent = run(both())
    assert (resent.turn, resent.reply, resent.duplicate) == (1, "REPLY TO K1", True)


def test_a_desk_that_stalls_past_its_lease_drops_its_decision() -> None:
    """A desk blocked past its turn lease finds another desk answered meanwhile: that answer
    stands, its own decision is not appended, and it returns the answer that stands."""
    import time

    from deskline.eventlog.events import ReplySent

    desk, store, _ = make_desk(settings=Settings(turn_lease_s=0.05))
    decide = desk.decide_or_fail

    async def stall_then_lose(state, turn, **options):  # type: ignore[no-untyped-def]
        events = await decide(state, turn, **options)
        time.sleep(0.1)  # blocks the loop: no renewal fires, the lease runs out
        assert store.lease("c1", turn.turn, "desk-b", 30)
        store.append("c1", state.last_seq, turn.turn,
                     [ReplySent(text="answered by desk-b", department="other", mode="clarify")],
                     holder="desk-b", ttl_s=30)
        return events

    desk.decide_or_fail = stall_then_lose  # type: ignore[method-assign]
    result = run(desk.handle("c1", "I was charged twice for invoice INV-1001"))
    assert result.reply == "answered by desk-b"
    assert kinds(store, "c1") == ["conversation_opened", "customer_messaged", "reply_sent"]
    assert store.unfinished() == []


def test_advancing_a_turn_agrees_with_refolding_the_conversation() -> None:
    """The desk reads each answer back with ``advance`` (the turn plus its new events) instead of
    refolding the conversation; on every turn of a varied conversation the two agree."""
    from deskline.eventlog.projections import advance, fold

    desk, store, _ = make_desk()
    messages = ["I was charged twice for invoice INV-1001", "thanks!", "my transfer PAY-3001 to my landlord",
                "I forgot my password", "let me talk to a real person", "hello?"]
    for text in messages:
        run(desk.handle("c1", text))
        records = store.load("c1")
        answered = fold("c1", records).turns[-1]
        accepted = fold("c1", records[: answered.message_seq]).turns[-1]  # seqs run 1, 2, ...
        assert not accepted.complete
        assert advance(accepted, records[answered.message_seq :]) == answered, text
