"""Pure folds over events: a conversation's state, and views built from it.

``fold(records)`` has no I/O and no clock; the same events always give the same state, which is
what makes replay and recovery possible.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from deskline.eventlog.events import (
    ActionCompleted,
    ActionDecided,
    AgentCompleted,
    CompensationCompleted,
    ConversationOpened,
    CustomerMessaged,
    CustomerVerified,
    EscalationClaimed,
    EscalationReleased,
    EscalationRequested,
    HumanReplied,
    ModelCalled,
    PlanMade,
    Recorded,
    ReplySent,
    StrategyDecided,
    TurnHeld,
)
from deskline.handoffs.payload import Department, Entities, HistoryItem, Mode, Offer, Topic
from deskline.handoffs.plan import Plan

HISTORY_WINDOW = 10
FAILED_OUTCOMES = ("unclear", "failed")


@dataclass(frozen=True, slots=True)
class TurnView:
    turn: int
    message_seq: int
    text: str
    client_message_id: str | None
    department: Department | None = None
    mode: Mode | None = None
    reply: str | None = None
    escalated: bool = False
    complete: bool = False
    llm_calls: int = 0
    cost_usd: Decimal = Decimal(0)
    latency_ms: float = 0.0
    intent: str = ""
    confidence: float = 0.0
    stage: str = ""
    first_seq: int = 0
    last_seq: int = 0
    accepted_at: float = 0.0  # when the message was stored (epoch seconds)
    language: str | None = None  # the language the turn is answered in (None: events before languages)
    detected: str | None = None  # the message's own language (None: too short to tell)


@dataclass(frozen=True, slots=True)
class PendingPlan:
    """A plan stopped for a missing entity; the customer's next answer resumes it."""

    plan: Plan
    entities: Entities
    missing: tuple[str, ...]
    turn: int


@dataclass(frozen=True, slots=True)
class ConversationState:
    conversation_id: str
    customer_id: str = ""
    anonymous: bool = False
    verified_at: float | None = None
    verified_by: str = ""
    last_seq: int = 0
    owner: str = "bot"
    claimed_by: str | None = None
    escalated: bool = False
    turns: tuple[TurnView, ...] = ()
    history: tuple[HistoryItem, ...] = ()
    failed_streak: int = 0
    negative_streak: int = 0
    pending: PendingPlan | None = None
    actions_taken: tuple[str, ...] = ()
    entities: Entities = Entities()
    pending_action: dict[str, str] | None = None
    spent_usd: Decimal = Decimal(0)
    topic: Topic | None = None
    offer: Offer | None = None

    @property
    def turn_count(self) -> int:
        return len(self.turns)

    @property
    def language(self) -> str | None:
        """The conversation's language: its latest message's (sticky: a message too short to
        tell keeps the one before)."""
        return next((t.language for t in reversed(self.turns) if t.language), None)

    def turn_for_message(self, client_message_id: str) -> TurnView | None:
        return next((t for t in self.turns if t.client_message_id == client_message_id), None)

    def open_turn(self) -> TurnView | None:
        """The accepted message that has no ending yet (a crash or a racing writer left it)."""
        last = self.turns[-1] if self.turns else None
        return last if last is not None and not last.complete else None


class _Builder:
    """Mutable scratch space for one fold; the frozen state is built once at the end."""

    __slots__ = ("actions", "anonymous", "claimed_by", "customer_id", "done", "entities", "escalated", "failed_streak",
                 "history", "last_seq", "missing", "negative_streak", "owner", "pending", "pending_action", "plan",
                 "spent_usd", "topic", "turns", "offer", "verified_at", "verified_by")

    def __init__(self) -> None:
        self.turns: list[dict[str, Any]] = []  # the last turn, still changing
        self.done: list[TurnView] = []  # every turn before it, frozen (a fold may be kept for long)
        self.history: list[HistoryItem] = []
        self.actions: list[str] = []
        self.plan: PlanMade | None = None
        self.missing: list[str] = []
        self.customer_id = ""
        self.anonymous = False
        self.verified_at: float | None = None
        self.verified_by = ""
        self.topic: Topic | None = None
        self.offer: Offer | None = None
        self.last_seq = 0
        self.owner = "bot"
        self.claimed_by: str | None = None
        self.escalated = False
        self.failed_streak = 0
        self.negative_streak = 0
        self.pending: PendingPlan | None = None
        self.entities = Entities()
        self.pending_action: dict[str, str] | None = None
        self.spent_usd = Decimal(0)


def fold(conversation_id: str, records: Iterable[Recorded]) -> ConversationState:
    """The conversation as its events tell it."""
    b = _Builder()
    for r in records:
        _apply(b, r)
    return _state(conversation_id, b)


class Folding:
    """A fold that can be continued: ``extend`` with the conversation's next events, ``state``
    at any point. ``Folding().extend(records).state(cid) == fold(cid, records)``."""

    __slots__ = ("_b",)

    def __init__(self) -> None:
        self._b = _Builder()

    @property
    def last_seq(self) -> int:
        return self._b.last_seq

    def extend(self, records: Iterable[Recorded]) -> Folding:
        b = self._b
        for r in records:
            if r.seq != b.last_seq + 1:
                raise ValueError(f"event {r.seq} does not follow {b.last_seq}")
            _apply(b, r)
        del b.history[:-HISTORY_WINDOW]  # all a state keeps; the rest would only grow
        return self

    def state(self, conversation_id: str) -> ConversationState:
        return _state(conversation_id, self._b)


def _state(conversation_id: str, b: _Builder) -> ConversationState:
    return ConversationState(
        conversation_id=conversation_id, customer_id=b.customer_id, anonymous=b.anonymous,
        verified_at=b.verified_at, verified_by=b.verified_by, last_seq=b.last_seq, owner=b.owner,
        claimed_by=b.claimed_by, escalated=b.escalated, turns=(*b.done, *(TurnView(**t) for t in b.turns)),
        history=tuple(b.history[-HISTORY_WINDOW:]), failed_streak=b.failed_streak,
        negative_streak=b.negative_streak, pending=b.pending, actions_taken=tuple(b.actions),
        entities=b.entities, pending_action=b.pending_action, spent_usd=b.spent_usd, topic=b.topic, offer=b.offer,
    )


def history_at(records: Iterable[Recorded], seqs: Iterable[int]) -> tuple[HistoryItem, ...]:
    """The history window a handoff referred to (``HandoffSent.history_seqs``), read back from
    the log: events refer to earlier messages instead of copying them."""
    wanted = set(seqs)
    items = []
    for r in records:
        if r.seq not in wanted:
            continue
        e = r.event
        if isinstance(e, CustomerMessaged):
            items.append(HistoryItem(role="customer", text=e.text, seq=r.seq))
        elif isinstance(e, HumanReplied):
            items.append(HistoryItem(role="human", text=e.text, seq=r.seq))
        elif isinstance(e, ReplySent):
            items.append(HistoryItem(role="bot", text=e.text, seq=r.seq))
    return tuple(items)


def advance(turn: TurnView, records: Iterable[Recorded]) -> TurnView:
    """``turn`` with its later events applied: what ``fold`` would say of it, without refolding
    the whole conversation (the desk reads its answer back this way after every append)."""
    view = {name: getattr(turn, name) for name in TurnView.__slots__}
    for r in records:
        if r.turn == turn.turn:
            view["last_seq"] = r.seq
            _apply_turn(view, r.event)
    return TurnView(**view)


def _apply(b: _Builder, r: Recorded) -> None:
    e = r.event
    b.last_seq = r.seq
    turn = b.turns[-1] if b.turns and b.turns[-1]["turn"] == r.turn else None
    if turn is not None:
        turn["last_seq"] = r.seq
        _apply_turn(turn, e)
    if isinstance(e, ConversationOpened):
        b.customer_id, b.anonymous, b.verified_at, b.verified_by = (e.customer_id, e.anonymous, e.verified_at,
                                                                     e.verified_by)
    elif isinstance(e, CustomerVerified):
        b.customer_id, b.anonymous, b.verified_at, b.verified_by = e.customer_id, False, e.verified_at, e.verified_by
    elif isinstance(e, CustomerMessaged):
        if b.turns:  # turns complete in order: nothing changes a turn once the next one opens
            b.done.append(TurnView(**b.turns.pop()))
        b.turns.append({"turn": r.turn, "message_seq": r.seq, "text": e.text,
                        "client_message_id": e.client_message_id, "first_seq": r.seq, "last_seq": r.seq,
                        "accepted_at": r.at, "language": e.language, "detected": e.detected})
        b.history.append(HistoryItem(role="customer", text=e.text, seq=r.seq))
    elif isinstance(e, StrategyDecided):
        b.negative_streak = b.negative_streak + 1 if e.sentiment < 0 else 0
    elif isinstance(e, PlanMade):
        b.plan, b.missing = e, []
        if not e.entities.is_empty():
            b.entities = b.entities.merged(e.entities)
    elif isinstance(e, AgentCompleted):
        if e.result.status == "needs_info":
            b.missing.extend(m for m in e.result.missing if m not in b.missing)
    elif isinstance(e, ModelCalled):
        b.spent_usd += e.cost_usd
    elif isinstance(e, ActionCompleted):
        b.actions.append(f"{e.action} ({e.idempotency_key})")
    elif isinstance(e, CompensationCompleted):  # the case file says the action was undone
        b.actions.append(f"undone {e.action} ({e.idempotency_key})")
    elif isinstance(e, EscalationRequested):
        b.escalated, b.owner, b.pending, b.pending_action = True, "human", None, e.pending_action
    elif isinstance(e, ActionDecided):
        b.pending_action = None
    elif isinstance(e, EscalationClaimed):
        b.claimed_by, b.owner = e.agent_name, "human"
    elif isinstance(e, EscalationReleased):
        b.claimed_by, b.owner, b.escalated = None, "bot", False
        b.failed_streak = b.negative_streak = 0
    elif isinstance(e, HumanReplied):
        b.history.append(HistoryItem(role="human", text=e.text, seq=r.seq))
    elif isinstance(e, ReplySent):
        b.failed_streak = b.failed_streak + 1 if e.outcome in FAILED_OUTCOMES else 0
        b.pending = None
        if e.outcome == "needs_info" and b.plan is not None and b.missing:
            b.pending = PendingPlan(b.plan.plan, b.plan.entities, tuple(b.missing), r.turn)
        b.plan = None  # the turn's plan is done with (a long-lived fold need not keep it)
        if e.topic is not None:
            b.topic = e.topic
        if e.offer is not None:
            b.offer = e.offer
        elif e.offer_closed:
            b.offer = None
        b.history.append(HistoryItem(role="bot", text=e.text, seq=r.seq))


def _apply_turn(turn: dict[str, Any], e: object) -> None:
    """What an event of a turn says about that turn."""
    if isinstance(e, PlanMade):
        turn.update(department=e.plan.department, mode=e.plan.mode, intent=e.plan.intent,
                    confidence=e.plan.confidence, stage=e.plan.stage)
    elif isinstance(e, ModelCalled):
        turn["llm_calls"] = turn.get("llm_calls", 0) + 1
        turn["cost_usd"] = turn.get("cost_usd", Decimal(0)) + e.cost_usd
    elif isinstance(e, ReplySent):
        turn.update(reply=e.text, department=e.department, mode=e.mode, escalated=e.escalated,
                    complete=True, latency_ms=e.latency_ms)
    elif isinstance(e, TurnHeld):
        # A person owns the conversation: the turn is theirs, not an unanswered clarification.
        turn.update(complete=True, department="human", mode="escalate", escalated=True)
