"""The specialist agents (tech, billing, payment), their skills and the registry to plan with.

``default_registry()`` is built once per process: skills are immutable, so every desk can share
it. Agents answer through skills only; their data comes from an injected ``Backend``.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache

from deskline.agents.builtin import billing, payment, tech
from deskline.agents.registry import (
    ApprovalRequired,
    Reference,
    Registry,
    Skill,
    SkillCall,
    SkillFn,
)
from deskline.handoffs import AgentName

DEFAULT_SKILLS: Mapping[AgentName, str] = {
    "tech": "tech.check_service_status",
    "billing": "billing.billing_summary",
    "payment": "payment.list_payments",
}
SKILLS: tuple[Skill, ...] = (*tech.SKILLS, *billing.SKILLS, *payment.SKILLS)


@cache
def default_registry() -> Registry:
    """Every skill of the three agents, with each agent's fallback skill."""
    return Registry(SKILLS, DEFAULT_SKILLS)


__all__ = [
    "DEFAULT_SKILLS",
    "SKILLS",
    "ApprovalRequired",
    "Reference",
    "Registry",
    "Skill",
    "SkillCall",
    "SkillFn",
    "default_registry",
]
