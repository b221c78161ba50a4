"""Plan validation and ordering: pure checks of a plan against the skill registry.

A plan from any stage (classifier, cache, a model) passes through ``validate`` before the
operation layer sees it; a model's plan that fails is rejected and the cascade moves on.
"""

from __future__ import annotations

from graphlib import CycleError, TopologicalSorter

from deskline.agents.registry import Registry
from deskline.errors import PlanError
from deskline.handoffs.plan import Plan, PlanStep


def validate(plan: Plan, registry: Registry) -> Plan:
    """``plan`` if it can run as it says, else ``PlanError`` naming what is wrong."""
    ids = [s.step_id for s in plan.steps]
    if len(set(ids)) != len(ids):
        raise PlanError("a plan repeats a step id", steps=ids)
    for step in plan.steps:
        if step.skill not in registry:
            raise PlanError(f"unknown skill {step.skill!r}", skill=step.skill)
        if registry[step.skill].agent != step.agent:
            raise PlanError(f"skill {step.skill} does not belong to agent {step.agent}", skill=step.skill)
        missing = [d for d in step.depends_on if d not in ids]
        if missing:
            raise PlanError(f"step {step.step_id} depends on unknown steps {missing}", step=step.step_id)
        unread = [s for s in step.inputs.values() if "." in s and s.split(".", 1)[0] not in step.depends_on]
        unread += [c.step for c in step.conditions if c.step not in step.depends_on]
        if unread:
            raise PlanError(f"step {step.step_id} reads {unread} from steps it does not depend on", step=step.step_id)
    if plan.mode in ("single", "parallel", "sequential") and not plan.steps:
        raise PlanError(f"a {plan.mode} plan needs at least one step")
    if plan.mode == "single" and len(plan.steps) != 1:
        raise PlanError("a single plan has exactly one step", steps=ids)
    if plan.mode == "parallel" and any(s.depends_on for s in plan.steps):
        raise PlanError("a parallel plan's steps cannot depend on each other")
    if plan.mode in ("clarify", "escalate") and plan.steps:
        raise PlanError(f"a {plan.mode} plan runs no steps")
    order(plan.steps)
    return plan


def order(steps: tuple[PlanStep, ...]) -> list[list[PlanStep]]:
    """Steps in waves: every step after all it depends on; steps of one wave may run together."""
    if not any(s.depends_on for s in steps):  # single and parallel plans: one wave, nothing to sort
        return [sorted(steps, key=lambda s: s.step_id)] if steps else []
    by_id = {s.step_id: s for s in steps}
    sorter: TopologicalSorter[str] = TopologicalSorter({s.step_id: s.depends_on for s in steps})
    try:
        sorter.prepare()
    except CycleError as exc:
        raise PlanError(f"the plan has a cycle: {exc.args[1]}") from exc
    waves: list[list[PlanStep]] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready())
        waves.append([by_id[i] for i in ready])
        sorter.done(*ready)
    return waves
