"""Pure folds over events: a conversation's state, and views built from it.

``fold(records)`` has no I/O and no clock; the same events always give the same state, which is
what makes replay and recovery possible.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from decimal import Decimal

from deskline.eventlog.events import (
    ActionCompleted,
    ActionDecided,
    AgentCompleted,
    AgentFailed,
    ConversationOpened,
    CustomerMessaged,
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
from deskline.handoffs.payload import Department, Entities, HistoryItem, Mode
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
    customer_id: str = "C-1001"
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

    @property
    def turn_count(self) -> int:
        return len(self.turns)

    def turn_for_message(self, client_message_id: str) -> TurnView | None:
        return next((t for t in self.turns if t.client_message_id == client_message_id), None)

    def open_turn(self) -> TurnView | None:
        """The accepted message that has no ending yet (a crash or a racing writer left it)."""
        last = self.turns[-1] if self.turns else None
        return last if last is not None and not last.complete else None


@dataclass(slots=True)
class _Builder:
    state: ConversationState
    turns: list[TurnView] = field(default_factory=list)
    history: list[HistoryItem] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    plan: PlanMade | None = None
    missing: list[str] = field(default_factory=list)


def fold(conversation_id: str, records: Iterable[Recorded]) -> ConversationState:
    """The conversation as its events tell it."""
    b = _Builder(ConversationState(conversation_id=conversation_id))
    for r in records:
        _apply(b, r)
    return replace(
        b.state,
        turns=tuple(b.turns),
        history=tuple(b.history[-HISTORY_WINDOW:]),
        actions_taken=tuple(b.actions),
    )


def _update_turn(b: _Builder, r: Recorded, **changes: object) -> None:
    if b.turns and b.turns[-1].turn == r.turn:
        b.turns[-1] = replace(b.turns[-1], last_seq=r.seq, **changes)  # type: ignore[arg-type]


def _apply(b: _Builder, r: Recorded) -> None:  # noqa: C901 - one branch per event type
    e = r.event
    s = b.state
    s = replace(s, last_seq=r.seq)
    if isinstance(e, ConversationOpened):
        s = replace(s, customer_id=e.customer_id)
    elif isinstance(e, CustomerMessaged):
        b.turns.append(
            TurnView(turn=r.turn, message_seq=r.seq, text=e.text, client_message_id=e.client_message_id,
                     first_seq=r.seq, last_seq=r.seq)
        )
        b.history.append(HistoryItem(role="customer", text=e.text))
    elif isinstance(e, StrategyDecided):
        negative = s.negative_streak + 1 if e.sentiment < 0 else 0
        s = replace(s, negative_streak=negative)
    elif isinstance(e, PlanMade):
        b.plan, b.missing = e, []
        s = replace(s, entities=s.entities.merged(e.entities))
        _update_turn(b, r, department=e.plan.department, mode=e.plan.mode, intent=e.plan.intent,
                     confidence=e.plan.confidence, stage=e.plan.stage)
    elif isinstance(e, AgentCompleted):
        if e.result.status == "needs_info":
            b.missing.extend(m for m in e.result.missing if m not in b.missing)
    elif isinstance(e, ModelCalled):
        s = replace(s, spent_usd=s.spent_usd + e.cost_usd)
        if b.turns and b.turns[-1].turn == r.turn:
            _update_turn(b, r, llm_calls=b.turns[-1].llm_calls + 1, cost_usd=b.turns[-1].cost_usd + e.cost_usd)
    elif isinstance(e, ActionCompleted):
        b.actions.append(f"{e.action} ({e.idempotency_key})")
    elif isinstance(e, EscalationRequested):
        s = replace(s, escalated=True, owner="human", pending=None, pending_action=e.pending_action)
    elif isinstance(e, ActionDecided):
        s = replace(s, pending_action=None)
    elif isinstance(e, EscalationClaimed):
        s = replace(s, claimed_by=e.agent_name, owner="human")
    elif isinstance(e, EscalationReleased):
        s = replace(s, claimed_by=None, owner="bot", escalated=False, failed_streak=0, negative_streak=0)
    elif isinstance(e, HumanReplied):
        b.history.append(HistoryItem(role="human", text=e.text))
    elif isinstance(e, ReplySent):
        streak = s.failed_streak + 1 if e.outcome in FAILED_OUTCOMES else 0
        pending = None
        if e.outcome == "needs_info" and b.plan is not None and b.missing:
            pending = PendingPlan(b.plan.plan, b.plan.entities, tuple(b.missing), r.turn)
        s = replace(s, failed_streak=streak, pending=pending)
        _update_turn(b, r, reply=e.text, department=e.department, mode=e.mode,
                     escalated=e.escalated, complete=True, latency_ms=e.latency_ms)
        b.history.append(HistoryItem(role="bot", text=e.text))
    elif isinstance(e, TurnHeld):
        _update_turn(b, r, complete=True)
    else:  # events that do not change the conversation view
        pass
    if not isinstance(e, CustomerMessaged):
        _update_turn(b, r)
    b.state = s
