"""The typed contracts that travel between the layers of a turn.

Pure data: frozen pydantic models. This module is the bottom of the import graph; it imports
nothing else from deskline. Departments, agents and entities are named by the loaded desk
definition (``deskline.Desk``), so here they are validated strings, not fixed value sets; two
departments belong to the framework itself: ``human`` (a person takes the conversation) and
``other`` (outside what the desk handles).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

NAME_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
"""A department, agent or entity name: a lowercase identifier (``orders``, ``order_id``)."""
Department = Name
AgentName = Name
EntityName = Name
Mode = Literal["single", "parallel", "sequential", "clarify", "escalate"]
ResultStatus = Literal["ok", "needs_info", "escalate", "failed", "pending_approval", "unverified"]

HUMAN: Literal["human"] = "human"  # the department of "a person takes this"
OTHER: Literal["other"] = "other"  # the department of "outside what the desk handles"
RESERVED_DEPARTMENTS: tuple[str, ...] = (HUMAN, OTHER)
CUSTOMER_ID = "customer_id"  # the parameter a skill gets from the case, never from the text
HANDOFF_VERSION: Literal[2] = 2  # 2: entities are a mapping by the desk's entity names


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


_MONEY_VALUE = re.compile(r"^(-?\d+(?:\.\d+)?) ([A-Z]{3})$")


def money_value(money: Money) -> str:
    """How an amount is kept among the entities: ``"49.00 USD"`` (``parse_money`` reads it)."""
    return f"{money.amount:.2f} {money.currency}"


def parse_money(value: str) -> Money | None:
    """The ``Money`` an entity value holds, if it holds one (``"49.00 USD"``)."""
    m = _MONEY_VALUE.match(value)
    if m is None:
        return None
    try:
        return Money(amount=Decimal(m.group(1)), currency=m.group(2))
    except InvalidOperation:
        return None


class Entities(Frozen):
    """What the customer's words name, by the desk's entity names, extracted before any agent
    runs: ``{"order_id": ("ORD-1001",), "amount": ("49.00 USD",)}``; values normalised, in the
    order the customer named them, without repeats."""

    values: dict[str, tuple[str, ...]] = {}

    @model_validator(mode="before")
    @classmethod
    def _upgrade(cls, data: Any) -> Any:
        """Version 1 of the log kept one plural field per entity (``amounts`` as objects): read
        it as the mapping, so old logs still load."""
        if not isinstance(data, dict) or "values" in data:
            return data
        values: dict[str, tuple[str, ...]] = {}
        for key, items in data.items():
            name = key[:-1] if key.endswith("s") else key
            kept = tuple(money_value(Money.model_validate(i)) if isinstance(i, dict | Money) else str(i)
                         for i in items or ())
            if kept:
                values[name] = kept
        return {"values": values}

    @classmethod
    def of(cls, **values: tuple[str, ...] | list[str] | str) -> Entities:
        """``Entities.of(order_id="ORD-1", amount=("49.00 USD",))``: a convenience for code and tests."""
        return cls(values={k: (v,) if isinstance(v, str) else tuple(v) for k, v in values.items() if v})

    def get(self, name: str) -> tuple[str, ...]:
        return self.values.get(name, ())

    def has(self, name: str) -> bool:
        return bool(self.values.get(name))

    def first(self, name: str) -> str | None:
        found = self.values.get(name)
        return found[0] if found else None

    def money(self, name: str) -> tuple[Money, ...]:
        """The amounts among ``name``'s values."""
        return tuple(m for m in map(parse_money, self.get(name)) if m is not None)

    def merged(self, newer: Entities) -> Entities:
        """Entities of an earlier turn topped up by a newer one (newer first, no repeats)."""
        if newer.is_empty():
            return self
        if self.is_empty():
            return newer
        names = dict.fromkeys((*newer.values, *self.values))
        return Entities(values={n: tuple(dict.fromkeys((*newer.get(n), *self.get(n)))) for n in names})

    def is_empty(self) -> bool:
        return not self.values


class Constraints(Frozen):
    """What the strategy allows this turn; every handoff carries it."""

    approval_limit: Annotated[Decimal, Field(allow_inf_nan=True)] = Decimal("500")  # Infinity: approved
    max_llm_calls: int = 2
    max_cost_usd: Decimal = Decimal("0.05")
    allow_actions: bool = True
    approved_by: str = ""  # a person approved this step's action: no limit or policy stops it again


class HistoryItem(Frozen):
    role: Literal["customer", "bot", "human"]
    text: str
    seq: int = 0  # where the message is in the conversation's log (events refer to it, never copy it)


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
    anonymous: bool = False  # nobody vouched for the customer: only public skills run
    verified_age_s: float | None = None  # seconds since the customer was last vouched for (0: an operator)


OFFER_TURNS = 2  # an offer can be accepted in the next this-many turns


class Offer(Frozen):
    """An action the desk proposed in its reply ("I can refund the duplicate if you'd like"): the
    skill to run and the entities to run it with. The customer accepts it ("yes please") or
    declines it within ``OFFER_TURNS`` turns; accepting runs it behind the same gates as ever."""

    skill: str
    entities: Entities = Entities()
    turn: int = 0  # the turn that made the offer

    def open_at(self, turn: int) -> bool:
        return self.turn < turn <= self.turn + OFFER_TURNS


class Topic(Frozen):
    """What the conversation is about now: the department, agent and skill of the last turn that
    ran a plan, and the entities in play (named by the customer or found by the skills)."""

    department: Department
    agent: AgentName
    skill: str
    entities: Entities = Entities()
    turn: int = 0


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
    offer: Offer | None = None  # the action this result's reply proposes

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class Handoff(Frozen):
    """One step of a plan handed to an agent: versioned and validated at both ends."""

    version: Literal[1, 2] = HANDOFF_VERSION
    kind: Literal["handoff"] = "handoff"
    step_id: str
    agent: AgentName
    skill: str
    case: Case
    constraints: Constraints
    idempotency_key: str
    upstream: tuple[AgentResult, ...] = ()
