"""The plan the triage makes: pure data, validated in ``deskline.hierarchy.plan``."""

from __future__ import annotations

from typing import Literal

from deskline.handoffs.payload import AgentName, Department, Frozen, Mode

Stage = Literal["cache", "classifier", "llm", "resume", "rules", "fallback", "dialogue"]


class StageVerdict(Frozen):
    """What one stage of the routing cascade concluded, and why the turn moved on (if it did)."""

    stage: Stage
    department: Department | None = None
    intent: str = ""
    confidence: float = 0.0
    accepted: bool = False
    reason: str = ""
    alternatives: tuple[tuple[Department, float], ...] = ()


class PlanStep(Frozen):
    step_id: str
    agent: AgentName
    skill: str
    depends_on: tuple[str, ...] = ()
    when: tuple[str, str] | None = None  # (fact, value) an upstream result must show
    clause: str = ""


class Plan(Frozen):
    mode: Mode
    department: Department
    intent: str
    confidence: float
    stage: Stage
    steps: tuple[PlanStep, ...] = ()
    verdicts: tuple[StageVerdict, ...] = ()
    reason: str = ""
    question: str = ""  # a clarify plan's own question (the model planner's ``ask_customer``)
