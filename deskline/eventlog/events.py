"""Every fact the desk records: a discriminated union of frozen, versioned pydantic models.

Events are past-tense facts about one conversation. They carry no sequence number: the store
assigns ``seq`` when it appends them, and ``Recorded`` pairs the two on the way out.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter

from deskline.handoffs.payload import (
    AgentName,
    AgentResult,
    Constraints,
    Department,
    Entities,
    Frozen,
    Handoff,
    Mode,
    Money,
    Offer,
    Topic,
)
from deskline.handoffs.plan import Plan

Owner = Literal["bot", "human"]
Outcome = Literal["answered", "needs_info", "unclear", "failed", "escalated"]
StrategyAction = Literal["answer", "escalate", "hold"]


class _Event(Frozen):
    v: int = 1


class ConversationOpened(_Event):
    """Whose conversation this is. ``verified_at`` (epoch seconds) is when the host site (a signed
    token) or a trusted operator (the CLI) vouched for ``customer_id``; ``anonymous`` conversations
    belong to nobody: they take no action and show no account data."""

    type: Literal["conversation_opened"] = "conversation_opened"
    customer_id: str
    channel: str = "cli"
    anonymous: bool = False
    verified_at: float | None = None
    verified_by: str = ""  # "operator", or the token's issuer


class CustomerVerified(_Event):
    """The host site vouched for the customer again (a fresh token): sensitive actions that need a
    recent verification may run. Names the same customer the conversation was opened for, or
    turns an anonymous conversation into theirs."""

    type: Literal["customer_verified"] = "customer_verified"
    customer_id: str
    verified_at: float
    verified_by: str = ""


class CustomerMessaged(_Event):
    type: Literal["customer_messaged"] = "customer_messaged"
    text: str
    client_message_id: str | None = None
    language: str | None = None  # the language the desk answers this message in (sticky)
    detected: str | None = None  # the message's own language, None when too short to tell


class StrategyDecided(_Event):
    type: Literal["strategy_decided"] = "strategy_decided"
    owner: Owner
    action: StrategyAction
    reasons: tuple[str, ...] = ()
    constraints: Constraints = Constraints()
    sentiment: float = 0.0


class PlanMade(_Event):
    """v2: ``entities`` is a mapping by the desk's entity names (v1 events are read as that)."""

    v: int = 2
    type: Literal["plan_made"] = "plan_made"
    plan: Plan
    entities: Entities = Entities()


class HandoffSent(_Event):
    """v3: the handoff's case carries v2 entities (see ``PlanMade``), and its history window is
    referred to by the messages' seqs (``history_seqs``) instead of copied into every handoff;
    ``deskline.eventlog.projections.history_at`` reads it back. v1 and v2 events carry it copied."""

    v: int = 3
    type: Literal["handoff_sent"] = "handoff_sent"
    handoff: Handoff
    history_seqs: tuple[int, ...] = ()

    @classmethod
    def of(cls, handoff: Handoff) -> HandoffSent:
        """The event for ``handoff``, its history kept as references."""
        case = handoff.case
        if not case.history:
            return cls(handoff=handoff)
        slim = handoff.model_copy(update={"case": case.model_copy(update={"history": ()})})
        return cls(handoff=slim, history_seqs=tuple(item.seq for item in case.history))


class ModelCalled(_Event):
    type: Literal["model_called"] = "model_called"
    role: Literal["planner", "writer", "specialist", "verifier"]
    deployment: str
    model_group: str = ""
    fallbacks: tuple[str, ...] = ()
    request_summary: str = ""
    output: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Decimal = Decimal("0")
    latency_ms: float = 0.0
    ok: bool = True
    error: str = ""


class ActionRequested(_Event):
    type: Literal["action_requested"] = "action_requested"
    step_id: str
    action: str
    idempotency_key: str
    amount: Money | None = None


class ActionCompleted(_Event):
    type: Literal["action_completed"] = "action_completed"
    step_id: str
    action: str
    idempotency_key: str
    facts: dict[str, str] = {}


class CompensationRequested(_Event):
    """A later step of the plan failed for good: step ``step_id``'s action (``action``, done under
    ``of_key``) is undone by ``compensation`` under its own key, ``<of_key>:undo``."""

    type: Literal["compensation_requested"] = "compensation_requested"
    step_id: str
    action: str
    compensation: str
    of_key: str
    idempotency_key: str
    reason: str = ""


class CompensationCompleted(_Event):
    type: Literal["compensation_completed"] = "compensation_completed"
    step_id: str
    action: str
    compensation: str
    idempotency_key: str
    facts: dict[str, str] = {}


class CompensationFailed(_Event):
    """The compensation did not go through: the action stays done, and the person is told."""

    type: Literal["compensation_failed"] = "compensation_failed"
    step_id: str
    action: str
    compensation: str
    idempotency_key: str
    error: str
    attempts: int = 1


class CompensationSkipped(_Event):
    """An action the failed plan took that has no compensation (or is irreversible): it stays done."""

    type: Literal["compensation_skipped"] = "compensation_skipped"
    step_id: str
    action: str
    of_key: str
    reason: str


class NodeOutcome(Frozen):
    """How one node of a workflow ended: a result status, ``skipped`` (an edge did not hold) or
    ``not_run`` (the workflow stopped before it)."""

    node: str
    skill: str
    outcome: str
    reason: str = ""


class WorkflowFinished(_Event):
    """The desk's declared workflow ``workflow`` ran: every node's outcome, in the order it ran."""

    type: Literal["workflow_finished"] = "workflow_finished"
    workflow: str
    outcome: Literal["completed", "waiting", "failed"]
    nodes: tuple[NodeOutcome, ...] = ()


class AgentCompleted(_Event):
    type: Literal["agent_completed"] = "agent_completed"
    result: AgentResult
    latency_ms: float = 0.0


class AgentFailed(_Event):
    type: Literal["agent_failed"] = "agent_failed"
    step_id: str
    agent: AgentName
    skill: str
    error: str
    attempts: int = 1


class EscalationRequested(_Event):
    type: Literal["escalation_requested"] = "escalation_requested"
    reason: str
    priority: int = 2
    summary: str = ""
    department: Department = "human"
    actions_taken: tuple[str, ...] = ()
    pending_action: dict[str, str] | None = None
    rule: str = ""  # the desk's escalation rule that matched, if one did
    language: str | None = None  # the conversation's language, for the person who takes it


class EscalationClaimed(_Event):
    type: Literal["escalation_claimed"] = "escalation_claimed"
    agent_name: str


class EscalationReleased(_Event):
    type: Literal["escalation_released"] = "escalation_released"
    agent_name: str
    note: str = ""


class HumanReplied(_Event):
    type: Literal["human_replied"] = "human_replied"
    agent_name: str
    text: str


class ActionDecided(_Event):
    type: Literal["action_decided"] = "action_decided"
    agent_name: str
    approved: bool
    idempotency_key: str
    facts: dict[str, str] = {}


class ReplySent(_Event):
    type: Literal["reply_sent"] = "reply_sent"
    text: str
    department: Department
    mode: Mode
    escalated: bool = False
    outcome: Outcome = "answered"
    grounded: bool = True
    llm_calls: int = 0
    latency_ms: float = 0.0
    topic: Topic | None = None  # what the conversation is about after this turn (None: unchanged)
    offer: Offer | None = None  # the action this reply proposes, open for the next turns
    offer_closed: bool = False  # this turn accepted or declined the open offer
    refused: str = ""  # why the model's own text (the planner's question) was not sent: the desk's was


class TurnHeld(_Event):
    """The turn ends without a bot reply: a person owns the conversation."""

    type: Literal["turn_held"] = "turn_held"
    reason: str


Event = Annotated[
    ConversationOpened
    | CustomerVerified
    | CustomerMessaged
    | StrategyDecided
    | PlanMade
    | HandoffSent
    | ModelCalled
    | ActionRequested
    | ActionCompleted
    | CompensationRequested
    | CompensationCompleted
    | CompensationFailed
    | CompensationSkipped
    | WorkflowFinished
    | AgentCompleted
    | AgentFailed
    | EscalationRequested
    | EscalationClaimed
    | EscalationReleased
    | HumanReplied
    | ActionDecided
    | ReplySent
    | TurnHeld,
    Field(discriminator="type"),
]

EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)
TURN_ENDS = ("reply_sent", "turn_held")


@dataclass(frozen=True, slots=True)
class Recorded:
    """An event as stored: its place in the conversation and the turn it belongs to.

    A plain frozen dataclass, not a model: it is built for every event appended or read, from an
    event that is already validated, and validating the wrapper again bought nothing.
    """

    conversation_id: str
    seq: int
    turn: int
    event: Event
    at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """As JSON-ready data (export, archives)."""
        return {"conversation_id": self.conversation_id, "seq": self.seq, "turn": self.turn,
                "event": self.event.model_dump(mode="json"), "at": self.at}
