"""Small fakes shared by the unit tests: a registry of trivial skills and a fixed classifier."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

import dataclasses
from collections.abc import Iterable

from deskline.agents.builtin import desk as BUILTIN
from deskline.agents.registry import Registry, Skill, SkillCall
from deskline.definition import Agent, Desk
from deskline.handoffs.payload import AgentResult, Department


class NoParams(BaseModel):
    pass


class InvoiceParams(BaseModel):
    invoice_id: str


async def _echo(call: SkillCall) -> AgentResult:
    return call.result(echo=call.handoff.skill, **call.params.model_dump())


def skill(name: str, agent: str, requires: tuple[str, ...] = (), params: type[BaseModel] = NoParams,
          intents: tuple[str, ...] = ()) -> Skill:
    return Skill(name=name, agent=agent, description=name, params=params, run=_echo,  # type: ignore[arg-type]
                 requires=requires, intents=frozenset(intents),  # type: ignore[arg-type]
                 templates={"default": "done {echo}"})


FAKE_SKILLS = (
    skill("tech.status", "tech", intents=("service_outage",)),
    skill("billing.summary", "billing"),
    skill("billing.invoice", "billing", ("invoice_id",), InvoiceParams, ("invoice_question",)),
    skill("payment.list", "payment", intents=("transfer_status",)),
)


def fake_desk() -> Desk:
    """The built-in desk's agents, entities and texts with four trivial skills."""
    return builtin_with(FAKE_SKILLS, tech="tech.status", billing="billing.summary", payment="payment.list")


def fake_registry() -> Registry:
    return fake_desk().registry


def builtin_with(skills: Iterable[Skill], **defaults: str) -> Desk:
    """The built-in desk with other skills (and agents' default skills), as a test needs it."""
    agents = tuple(dataclasses.replace(a, default_skill=defaults.get(a.name, a.default_skill)) for a in BUILTIN.agents)
    return dataclasses.replace(BUILTIN, skills=tuple(skills), agents=agents)


__all__ = ["BUILTIN", "Agent", "FixedPrediction", "KeywordClassifier", "builtin_with", "fake_desk", "skill"]


@dataclass(frozen=True)
class FixedPrediction:
    department: Department
    intent: str
    confidence: float
    abstain: bool = False
    intent_confidence: float = 1.0
    alternatives: tuple[tuple[Department, float], ...] = ()


class KeywordClassifier:
    """Routes by keyword: deterministic and enough to test the cascade's plumbing."""

    threshold = 0.5

    def __init__(self) -> None:
        self.calls = 0

    def predict(self, text: str) -> FixedPrediction:
        self.calls += 1
        low = text.lower()
        for word, dept, intent in (("invoice", "billing", "invoice_question"), ("down", "tech", "service_outage"),
                                   ("transfer", "payment", "transfer_status"), ("person", "human", "talk_to_human")):
            if word in low:
                return FixedPrediction(dept, intent, 0.9)  # type: ignore[arg-type]
        return FixedPrediction("other", "unknown", 0.2, abstain=True)
