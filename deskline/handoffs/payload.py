"""The typed contracts that travel between the layers of a turn.

Pure data: frozen pydantic models and ``Literal`` value sets. This module is the bottom of the
import graph; it imports nothing else from deskline.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Department = Literal["tech", "billing", "payment", "human", "other"]
AgentName = Literal["tech", "billing", "payment"]
Mode = Literal["single", "parallel", "sequential", "clarify", "escalate"]
ResultStatus = Literal["ok", "needs_info", "escalate", "failed", "pending_approval"]
EntityName = Literal[
    "invoice_id", "payment_id", "charge_id", "amount", "email", "card_last4", "customer_id"
]

DEPARTMENTS: tuple[Department, ...] = ("tech", "billing", "payment", "human", "other")
AGENTS: tuple[AgentName, ...] = ("tech", "billing", "payment")
HANDOFF_VERSION: Literal[1] = 1


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Money(Frozen):
    amount: Decimal
    currency: str = "USD"

    def __str__(self) -> str:
        return format_money(self.amount, self.currency)


_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£"}


def format_money(amount: Decimal, currency: str) -> str:
    """The one way an amount is shown to a customer, so the grounding check can find it."""
    symbol = _SYMBOLS.get(currency)
    text = f"{amount:,.2f}"
    return f"{symbol}{text}" if symbol else f"{text} {currency}"


class Entities(Frozen):
    """What the customer's words name, extracted before any agent runs."""

    invoice_ids: tuple[str, ...] = ()
    payment_ids: tuple[str, ...] = ()
    charge_ids: tuple[str, ...] = ()
    amounts: tuple[Money, ...] = ()
    emails: tuple[str, ...] = ()
    card_last4: tuple[str, ...] = ()

    def has(self, name: EntityName) -> bool:
        return bool(self.first(name))

    def first(self, name: EntityName) -> str | None:
        values: tuple[object, ...] = {
            "invoice_id": self.invoice_ids,
            "payment_id": self.payment_ids,
            "charge_id": self.charge_ids,
            "amount": self.amounts,
            "email": self.emails,
            "card_last4": self.card_last4,
            "customer_id": (),
        }[name]
        return str(values[0]) if values else None

    def merged(self, newer: Entities) -> Entities:
        """Entities of an earlier turn topped up by a newer one (newer first, no repeats)."""
        if newer.is_empty():
            return self
        if self.is_empty():
            return newer

        def join(a: tuple[object, ...], b: tuple[object, ...]) -> tuple[object, ...]:
            return tuple(dict.fromkeys((*b, *a)))

        return Entities.model_validate({field: join(getattr(self, field), getattr(newer, field)) for field in _FIELDS})

    def is_empty(self) -> bool:
        return not any(map(self.__dict__.__getitem__, _FIELDS))


_FIELDS = tuple(Entities.model_fields)


class Constraints(Frozen):
    """What the strategy allows this turn; every handoff carries it."""

    approval_limit: Decimal = Decimal("500")
    max_llm_calls: int = 2
    max_cost_usd: Decimal = Decimal("0.05")
    allow_actions: bool = True


class HistoryItem(Frozen):
    role: Literal["customer", "bot", "human"]
    text: str


class Case(Frozen):
    """The case file an agent receives: structured facts, not a transcript."""

    conversation_id: str
    turn: int
    customer_id: str
    intent: str
    department: Department
    entities: Entities = Entities()
    actions_taken: tuple[str, ...] = ()
    open_questions: tuple[str, ...] = ()
    history: tuple[HistoryItem, ...] = Field(default=(), max_length=10)


class AgentResult(Frozen):
    """What a skill hands back; the writer may only say what is in ``facts``."""

    step_id: str
    agent: AgentName
    skill: str
    status: ResultStatus
    template: str = "default"
    facts: dict[str, str] = {}
    missing: tuple[EntityName, ...] = ()
    reason: str = ""
    action_key: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class Handoff(Frozen):
    """One step of a plan handed to an agent: versioned and validated at both ends."""

    version: Literal[1] = HANDOFF_VERSION
    kind: Literal["handoff"] = "handoff"
    step_id: str
    agent: AgentName
    skill: str
    case: Case
    constraints: Constraints
    idempotency_key: str
    upstream: tuple[AgentResult, ...] = ()
