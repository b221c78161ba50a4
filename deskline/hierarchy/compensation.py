"""Compensation: a plan that fails for good after taking actions undoes them before a person
takes over.

The three levels of failure handling are retry (the operation layer retries transient errors),
roll back (this module) and a person (the turn escalates with the decision path). When a step
of a plan fails for good, every action the plan took is looked at in reverse order:

* an action skill with a compensation (``Skill(compensate=...)``) is undone once: the
  compensation runs under the key ``<original key>:undo``, so a turn decided again (retried,
  or recovered after a crash) repeats none of it; its events are ``CompensationRequested``
  then ``CompensationCompleted`` or ``CompensationFailed``;
* an action without one (``Skill(irreversible="...")``, or nothing declared) stays done and is
  recorded as ``CompensationSkipped`` with the reason.

The escalation's reason lists what was undone, what could not be and why. A turn decided again
whose earlier attempt already began undoing (it crashed mid-way) finishes undoing even if its
failed step now succeeds: once a compensation ran, the plan's actions are never reported done.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import TYPE_CHECKING

import structlog

from deskline.agents.registry import ActionLedger, Skill
from deskline.errors import DesklineError
from deskline.eventlog.events import (
    AgentFailed,
    CompensationCompleted,
    CompensationFailed,
    CompensationRequested,
    CompensationSkipped,
    Event,
)
from deskline.handoffs.payload import AgentResult, Constraints, Handoff
from deskline.handoffs.plan import PlanStep

if TYPE_CHECKING:
    from deskline.hierarchy.operation import Execution, Operator, StepRun

log = structlog.get_logger("deskline.compensation")
UNDO = ":undo"
COMPENSATOR = "deskline:compensation"  # who allowed a compensation's action: the plan's failure


def undo_key(key: str) -> str:
    """The idempotency key of the compensation of the action done under ``key``."""
    return key + UNDO


@dataclass(frozen=True, slots=True)
class Undo:
    """One compensation to run: the step it undoes, the skill that undoes it and its handoff."""

    run: StepRun
    skill: Skill
    handoff: Handoff
    name: str  # the compensating skill, or "<skill>:compensate" for a function of its own

    @property
    def key(self) -> str:
        return self.handoff.idempotency_key

    @property
    def of_key(self) -> str:
        return self.run.result.action_key or self.run.handoff.idempotency_key


@dataclass(slots=True)
class Rollback:
    """What undoing a failed plan did, for the person it goes to."""

    cause: str
    undone: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)

    @property
    def summary(self) -> str:
        parts = [f"rolled back after {self.cause}"]
        if self.undone:
            parts.append("undone: " + ", ".join(self.undone))
        if self.failed:
            parts.append("undo FAILED: " + ", ".join(self.failed))
        if self.kept:
            parts.append("could not be undone: " + ", ".join(self.kept))
        return "; ".join(parts)


def plan_undo(operator: Operator, run: StepRun, constraints: Constraints) -> Undo | None:
    """The compensation of ``run``'s action, or None when its skill has none."""
    skill = operator.registry.skills.get(run.step.skill)
    if skill is None or skill.compensate is None:
        return None
    if isinstance(skill.compensate, str):
        undoer, name = operator.registry[skill.compensate], skill.compensate
    else:
        undoer, name = replace(skill, run=skill.compensate, compensate=None), f"{skill.name}:compensate"
    allowed = constraints.model_copy(update={"allow_actions": True, "approval_limit": Decimal("Infinity"),
                                             "approved_by": COMPENSATOR})
    key = run.result.action_key or run.handoff.idempotency_key
    handoff = Handoff(step_id=run.step.step_id + UNDO, agent=undoer.agent, skill=undoer.name, case=run.handoff.case,
                      constraints=allowed, idempotency_key=undo_key(key), upstream=(run.result,))
    return Undo(run=run, skill=undoer, handoff=handoff, name=name)


async def settle(operator: Operator, run: Execution, constraints: Constraints) -> None:
    """Undo the plan's actions if it failed for good (or an earlier attempt began undoing them)."""
    acted = [r for r in run.runs if r.result.action_key and r.result.ok]
    if not acted:
        return
    undos = [(r, plan_undo(operator, r, constraints)) for r in acted]
    failures = [r for r in run.runs if r.result.status == "failed"]
    if failures:
        cause = ", ".join(f"step {r.step.step_id} ({r.step.skill}) failed" for r in failures)
    else:
        begun = [u for _, u in undos if u is not None and await operator.undone_before(u)]
        if not begun:
            return
        cause = "an earlier attempt of this turn began undoing its actions"
    rollback = Rollback(cause)
    undone: set[str] = set()
    for step_run, undo in reversed(undos):
        label = step_run.step.skill
        if undo is None:
            skill = operator.registry.skills.get(label)
            reason = (skill.irreversible if skill is not None and skill.irreversible
                      else "it declares no compensation")
            run.events.append(CompensationSkipped(step_id=step_run.step.step_id, action=label,
                                                  of_key=step_run.result.action_key or "", reason=reason))
            rollback.kept.append(f"{label} ({reason})")
            continue
        events = await operator.undo(undo, cause)
        run.events.extend(events)
        last = events[-1] if events else None
        if isinstance(last, CompensationCompleted):
            rollback.undone.append(f"{label} (by {undo.name})")
            undone.add(step_run.step.step_id)
        else:
            error = last.error if isinstance(last, CompensationFailed) else "no outcome"
            rollback.failed.append(f"{label} ({error})")
    run.rollback = rollback
    log.warning("plan.rolled_back", cause=cause, undone=rollback.undone, failed=rollback.failed, kept=rollback.kept)
    # The reply must not claim what was undone; a plan whose failure was in an earlier attempt
    # still ends with a person.
    run.results = [r for r in run.results if r.step_id not in undone]
    if not failures:
        first = acted[0].result
        run.results.append(AgentResult(step_id="rollback", agent=first.agent, skill=first.skill, status="escalate",
                                       reason=rollback.summary))


async def run_undo(operator: Operator, undo: Undo, cause: str) -> list[Event]:
    """The compensation's events: requested, then completed or failed."""
    step_id, action = undo.run.step.step_id, undo.run.step.skill
    events: list[Event] = [CompensationRequested(step_id=step_id, action=action, compensation=undo.name,
                                                 of_key=undo.of_key, idempotency_key=undo.key, reason=cause)]
    # The compensation reads the original result's facts first (what the action acted on).
    fields = undo.skill.params.model_fields
    inputs = {name: f"{step_id}.{name}" for name in fields if name in undo.run.result.facts}
    params, missing = operator._params(undo.skill, undo.handoff, inputs)
    if missing or params is None:
        events.append(CompensationFailed(step_id=step_id, action=action, compensation=undo.name,
                                         idempotency_key=undo.key, error="missing " + ", ".join(missing)))
        return events
    step = PlanStep(step_id=undo.handoff.step_id, agent=undo.skill.agent, skill=undo.skill.name)
    result, ran = await operator._run_skill(undo.skill, step, undo.handoff, params)
    if result.ok:
        events.append(CompensationCompleted(step_id=step_id, action=action, compensation=undo.name,
                                            idempotency_key=undo.key, facts=result.facts))
    else:
        attempts = next((e.attempts for e in ran if isinstance(e, AgentFailed)), 1)
        events.append(CompensationFailed(step_id=step_id, action=action, compensation=undo.name,
                                         idempotency_key=undo.key, error=result.reason or result.status,
                                         attempts=attempts))
    return events


async def already_done(operator: Operator, undo: Undo) -> bool:
    """Whether the compensation's key is already recorded: by the remote agent that runs it, or
    by the desk's system of record when it keeps an action ledger."""
    status = getattr(undo.skill.run, "status", None)
    if status is not None:
        try:
            return bool((await status(undo.key)).state == "done")
        except DesklineError as exc:  # cannot tell: the plan's own outcome decides
            log.warning("compensation.status_unknown", key=undo.key, error=exc.message)
            return False
    records = operator.backend
    return isinstance(records, ActionLedger) and records.recorded(undo.key) is not None
