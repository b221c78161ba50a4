"""Strategy layer: who owns the conversation, whether to escalate now, and this turn's limits.

Pure rules over the folded state and the new message; every decision carries its reasons so
the ``StrategyDecided`` event explains itself. What escalates at once is the desk's own policy
(``Desk.policies.escalations``: each rule with its reason, reply and priority).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

from deskline.config import Settings
from deskline.definition import Desk
from deskline.eventlog.events import Owner, StrategyAction
from deskline.eventlog.projections import ConversationState
from deskline.handoffs.payload import Constraints, Entities, format_money

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
    reply: str = ""  # what the customer reads when this strategy escalates
    rule: str = ""  # the desk's escalation rule that matched


def sentiment(text: str) -> float:
    """A coarse score in [-1, 0]: enough to notice a customer getting angry twice in a row."""
    hits = len(_NEGATIVE.findall(text))
    return -min(1.0, hits / 2) if hits else 0.0


def decide(state: ConversationState, text: str, entities: Entities, settings: Settings, desk: Desk) -> Strategy:
    """The strategy for this turn, from the conversation so far and the new message."""
    mood = sentiment(text)
    limit = settings.approval_limit if settings.approval_limit is not None else desk.policies.approval_limit
    constraints = Constraints(
        approval_limit=limit,
        max_llm_calls=settings.max_llm_calls,
        max_cost_usd=settings.max_cost_usd,
        allow_actions=not state.anonymous,  # nobody vouched for this customer: nothing changes
    )
    over_limit = [m for m in desk.extractor.amounts(entities) if m.amount > limit]
    notes = tuple(f"{m} is above the approval limit of {_limit(limit, m.currency)}" for m in over_limit)

    def verdict(action: StrategyAction, *reasons: str, owner: Owner = "bot", priority: int = 2,
                reply: str = "", rule: str = "") -> Strategy:
        return Strategy(owner, action, (*reasons, *notes), constraints, mood, priority,
                        reply or (desk.escalation_reply() if action == "escalate" else ""), rule)

    if state.owner == "human":
        who = state.claimed_by or "the queue"
        return verdict("hold", f"a person owns this conversation ({who})", owner="human")
    rule = desk.escalation(text)
    if rule is not None:
        return verdict("escalate", rule.reason, priority=rule.priority, reply=desk.escalation_reply(rule),
                       rule=rule.name)
    if state.failed_streak >= settings.failed_turns_before_human:
        return verdict("escalate", f"{state.failed_streak} failed bot turns in a row")
    if mood < 0 and state.negative_streak + 1 >= settings.negative_turns_before_human:
        return verdict("escalate", "the customer is upset again", priority=2)
    return verdict("answer", "the bot can answer")


def _limit(value: Decimal, currency: str) -> str:
    return format_money(value, currency)
