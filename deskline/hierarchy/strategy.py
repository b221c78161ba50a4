"""Strategy layer: who owns the conversation, whether to escalate now, and this turn's limits.

Pure rules over the folded state and the new message; every decision carries its reasons so
the ``StrategyDecided`` event explains itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

from deskline.config import Settings
from deskline.eventlog.events import Owner, StrategyAction
from deskline.eventlog.projections import ConversationState
from deskline.handoffs.payload import Constraints, Entities

ASKS_FOR_PERSON = re.compile(
    r"\b(?:speak|talk|chat)\s+(?:to|with)\s+(?:a\s+|an\s+|your\s+|the\s+)?"
    r"(?:real\s+|actual\s+|live\s+)?(?:person|human|agent|representative|rep|operator|manager|supervisor"
    r"|someone|somebody|staff)\b"
    r"|\b(?:want|need|get|give|connect|transfer|put)\s+(?:me\s+)?(?:through\s+)?(?:to\s+|with\s+)?"
    r"(?:a\s+|an\s+)?(?:real|actual|live|human)\s+(?:person|agent|human|being|representative|operator)\b"
    r"|\b(?:connect|transfer|put)\s+me\s+(?:through\s+)?(?:to|with)\s+(?:a\s+|an\s+)?"
    r"(?:person|human|agent|representative|operator|manager|supervisor)\b"
    r"|\b(?:human|agent|operator|representative)\s+please\b|\bget\s+me\s+a\s+(?:human|person|manager)\b",
    re.IGNORECASE,
)
FRAUD = re.compile(
    r"\bfraud\w*|\bscam(?:s|med|mer|mers)?\b|\bstolen\b|\bstole\b|\bhacked\b|\bunauthori[sz]ed\b|identity\s+theft"
    r"|(?:lost|stolen)\s+(?:my\s+)?card|card\s+(?:was|has\s+been|got)\s+(?:lost|stolen)"
    r"|(?:didn'?t|did\s+not|never)\s+(?:make|authori[sz]e|approve)\s+(?:this|that|these|the)"
    r"|(?:don'?t|do\s+not)\s+recogni[sz]e\s+(?:this|that|these|the|a)",
    re.IGNORECASE,
)
_NEGATIVE = re.compile(
    r"\b(?:angry|furious|terrible|awful|horrible|ridiculous|useless|worst|unacceptable|disgusting"
    r"|hate|annoyed|frustrated|fed\s+up|pathetic|incompetent|rubbish|garbage|joke)\b|!!+",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Strategy:
    owner: Owner
    action: StrategyAction
    reasons: tuple[str, ...]
    constraints: Constraints
    sentiment: float
    priority: int = 2


def sentiment(text: str) -> float:
    """A coarse score in [-1, 0]: enough to notice a customer getting angry twice in a row."""
    hits = len(_NEGATIVE.findall(text))
    return -min(1.0, hits / 2) if hits else 0.0


def decide(state: ConversationState, text: str, entities: Entities, settings: Settings) -> Strategy:
    """The strategy for this turn, from the conversation so far and the new message."""
    mood = sentiment(text)
    constraints = Constraints(
        approval_limit=settings.approval_limit,
        max_llm_calls=settings.max_llm_calls,
        max_cost_usd=settings.max_cost_usd,
    )
    over_limit = [m for m in entities.amounts if m.amount > settings.approval_limit]
    notes = tuple(f"{m} is above the approval limit of {_limit(settings.approval_limit)}" for m in over_limit)

    def verdict(action: StrategyAction, *reasons: str, owner: Owner = "bot", priority: int = 2) -> Strategy:
        return Strategy(owner, action, (*reasons, *notes), constraints, mood, priority)

    if state.owner == "human":
        who = state.claimed_by or "the queue"
        return verdict("hold", f"a person owns this conversation ({who})", owner="human")
    if FRAUD.search(text):  # before the request for a person: fraud keeps its priority
        return verdict("escalate", "possible fraud or a lost or stolen card", priority=1)
    if ASKS_FOR_PERSON.search(text):
        return verdict("escalate", "the customer asked for a person", priority=2)
    if state.failed_streak >= settings.failed_turns_before_human:
        return verdict("escalate", f"{state.failed_streak} failed bot turns in a row")
    if mood < 0 and state.negative_streak + 1 >= settings.negative_turns_before_human:
        return verdict("escalate", "the customer is upset again", priority=2)
    return verdict("answer", "the bot can answer")


def _limit(value: Decimal) -> str:
    return f"${value:,.2f}"
