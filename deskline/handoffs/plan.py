"""The plan the triage makes: pure data, validated in ``deskline.hierarchy.plan``."""

from __future__ import annotations

from typing import Literal

from deskline.handoffs.payload import AgentName, AgentResult, Department, Frozen, Mode

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


class Condition(Frozen):
    """An edge of a workflow step: it holds when step ``step`` ran, its result's status is
    ``outcome`` and, if ``fact`` is given, that fact is one of ``equals`` (case-blind)."""

    step: str
    fact: str = ""
    equals: tuple[str, ...] = ()
    outcome: str = "ok"

    def holds(self, result: AgentResult | None) -> bool:
        if result is None or result.status != self.outcome:
            return False
        if not self.fact:
            return True
        value = result.facts.get(self.fact)
        return value is not None and value.lower() in {e.lower() for e in self.equals}

    def describe(self) -> str:
        head = self.step if self.outcome == "ok" else f"{self.step} {self.outcome}"
        if not self.fact:
            return head
        return f"{head} if {self.fact} = {'|'.join(self.equals)}"


class PlanStep(Frozen):
    step_id: str
    agent: AgentName
    skill: str
    depends_on: tuple[str, ...] = ()
    when: tuple[str, str] | None = None  # (fact, value) an upstream result must show
    clause: str = ""
    inputs: dict[str, str] = {}  # parameter -> "entity" or "step.fact" (a workflow node's inputs)
    conditions: tuple[Condition, ...] = ()  # a workflow node's edges: all must hold, else it is skipped


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
    workflow: str = ""  # the desk's declared workflow this plan runs (its steps are the nodes)
