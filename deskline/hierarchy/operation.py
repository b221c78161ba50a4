"""Operation layer: runs a validated plan with no model calls.

Each step becomes a ``Handoff`` (the case file plus the strategy's constraints and an
idempotency key derived from conversation, turn and step). Missing entities become questions,
not failed calls; independent steps run concurrently in a ``TaskGroup``; dependent steps get
their upstream results; transient failures are retried, and a step that still fails degrades to
an escalation instead of a crash. A plan that runs one of the desk's declared workflows goes
node by node (``deskline.hierarchy.workflows``); a plan that fails for good after actions undoes
them (``deskline.hierarchy.compensation``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from deskline.agents.registry import ActionPolicy, ApprovalRequired, Registry, Skill, SkillCall
from deskline.errors import PlanError, RecordChanged, SkillError
from deskline.eventlog.events import (
    ActionCompleted,
    ActionRequested,
    AgentCompleted,
    AgentFailed,
    Event,
    HandoffSent,
)
from deskline.handoffs.payload import CUSTOMER_ID, HANDOFF_VERSION, AgentResult, Case, Constraints, Handoff
from deskline.handoffs.plan import Plan, PlanStep
from deskline.agents.remote import RemoteSkill
from deskline.hierarchy.compensation import Rollback, Undo, already_done, run_undo, settle
from deskline.hierarchy.offloop import run_off_loop
from deskline.hierarchy.plan import order
from deskline.hierarchy.workflows import run_workflow
from deskline.observe.tracing import span


@dataclass(frozen=True, slots=True)
class StepRun:
    """A step that ran: the step, the handoff it got and its result."""

    step: PlanStep
    handoff: Handoff
    result: AgentResult


@dataclass(slots=True)
class Execution:
    """What a plan did: the results the reply speaks of, every event, every step that ran and,
    if its actions were undone, the rollback."""

    results: list[AgentResult] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    runs: list[StepRun] = field(default_factory=list)
    rollback: Rollback | None = None

    @property
    def needs_info(self) -> list[AgentResult]:
        return [r for r in self.results if r.status == "needs_info"]

    @property
    def escalations(self) -> list[AgentResult]:
        return [r for r in self.results if r.status in ("escalate", "failed", "pending_approval")]

    @property
    def escalation_reasons(self) -> tuple[str, ...]:
        """Why the turn goes to a person: each result's reason, then what was undone and what not."""
        reasons = [r.reason or r.status for r in self.escalations]
        if self.rollback is not None:
            reasons.append(self.rollback.summary)
        return tuple(dict.fromkeys(reasons))


def idempotency_key(conversation_id: str, turn: int, step_id: str) -> str:
    return f"{conversation_id}:{turn}:{step_id}"


@dataclass(slots=True)
class Operator:
    registry: Registry
    backend: Any  # the desk's system of record, handed to every skill as ``call.records``
    timeout_s: float = 10.0
    retries: int = 2
    entities: frozenset[str] = frozenset()  # the desk's entity names: parameters filled from the case
    policies: Mapping[str, ActionPolicy] = field(default_factory=dict)  # skill name -> its action policy
    off_loop: bool = False  # the system of record blocks: local skills run on worker threads

    async def execute(self, plan: Plan, case: Case, constraints: Constraints) -> Execution:
        if plan.workflow:
            run = await run_workflow(self, plan, case, constraints)
        else:
            run = Execution()
            done: dict[str, AgentResult] = {}
            for wave in order(plan.steps):
                await self.run_wave(wave, case, constraints, done, run)
        await settle(self, run, constraints)
        return run

    async def run_wave(self, wave: list[PlanStep], case: Case, constraints: Constraints,
                       done: dict[str, AgentResult], run: Execution) -> list[AgentResult]:
        """Steps that may run together: each handed off, run (concurrently if several), recorded."""
        handoffs = [self._handoff(step, case, constraints, done) for step in wave]
        for h in handoffs:
            run.events.append(HandoffSent.of(h))
        if len(wave) == 1:
            outcomes = [await self._step(wave[0], handoffs[0], done)]
        else:
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(self._step(s, h, done)) for s, h in zip(wave, handoffs, strict=True)]
            outcomes = [t.result() for t in tasks]
        for step, handoff, (result, events) in zip(wave, handoffs, outcomes, strict=True):
            done[result.step_id] = result
            run.results.append(result)
            run.runs.append(StepRun(step, handoff, result))
            run.events.extend(events)
        return [result for result, _ in outcomes]

    async def undo(self, undo: Undo, cause: str) -> list[Event]:
        """Run one compensation (once per its key) and return its events; replay answers from the log."""
        return await run_undo(self, undo, cause)

    async def undone_before(self, undo: Undo) -> bool:
        """Whether this compensation already ran (an earlier attempt of the same turn began it)."""
        return await already_done(self, undo)

    async def run_step(self, step: PlanStep, handoff: Handoff) -> tuple[AgentResult, list[Event]]:
        """One step on its own (a person approved it): its result and its events."""
        return await self._step(step, handoff, {})

    def _handoff(self, step: PlanStep, case: Case, constraints: Constraints,
                 done: dict[str, AgentResult]) -> Handoff:
        return Handoff(
            step_id=step.step_id,
            agent=step.agent,
            skill=step.skill,
            case=case,
            constraints=constraints,
            idempotency_key=idempotency_key(case.conversation_id, case.turn, step.step_id),
            upstream=tuple(done[d] for d in step.depends_on if d in done),
        )

    async def _step(self, step: PlanStep, handoff: Handoff,
                    done: dict[str, AgentResult]) -> tuple[AgentResult, list[Event]]:
        skill = self.registry[step.skill]
        if handoff.version != HANDOFF_VERSION or handoff.agent != skill.agent or handoff.skill != skill.name:
            # The receiving end checks the contract too: a handoff built for another agent or
            # another payload version never reaches a skill.
            raise PlanError(f"handoff {handoff.step_id} (v{handoff.version}, {handoff.agent}) does not fit {skill.name}")
        skipped = self._unmet(step, handoff, done)
        if skipped is not None:
            return skipped, [AgentCompleted(result=skipped)]
        refused = self._unverified(skill, handoff)
        if refused is not None:
            return refused, [AgentCompleted(result=refused)]
        params, missing = self._params(skill, handoff, step.inputs)
        if missing:
            result = AgentResult(step_id=step.step_id, agent=step.agent, skill=step.skill,
                                 status="needs_info", missing=missing, reason="missing " + ", ".join(missing))
            return result, [AgentCompleted(result=result)]
        assert params is not None
        with span("deskline.handoff", **{"deskline.step": step.step_id, "deskline.agent": step.agent,
                                         "deskline.skill": step.skill, "deskline.handoff.version": handoff.version}):
            return await self._run_skill(skill, step, handoff, params)

    async def _run_skill(self, skill: Skill, step: PlanStep, handoff: Handoff,
                         params: BaseModel) -> tuple[AgentResult, list[Event]]:
        call = SkillCall(handoff=handoff, params=params, records=self.backend, policy=self.policies.get(skill.name))
        started = time.perf_counter()
        error = ""
        reread = False
        for attempt in range(1, self.retries + 2):
            call.deadline = time.time() + self.timeout_s  # a remote agent stops at the same moment
            try:
                with span("deskline.skill", **{"deskline.skill": skill.name, "deskline.attempt": attempt}) as sp:
                    async with asyncio.timeout(self.timeout_s):  # no extra task, unlike wait_for
                        if self.off_loop and not isinstance(skill.run, RemoteSkill):
                            result = await run_off_loop(skill.run, call)
                        else:
                            result = await skill.run(call)
                    sp.set_attribute("deskline.status", result.status)
            except ApprovalRequired as gate:
                result = AgentResult(
                    step_id=step.step_id, agent=step.agent, skill=step.skill, status="pending_approval",
                    reason=gate.reason, template="pending_approval",
                    facts={"action": gate.action, "amount": str(gate.amount) if gate.amount else "",
                           "idempotency_key": handoff.idempotency_key},
                )
                return result, [AgentCompleted(result=result, latency_ms=_ms(started))]
            except RecordChanged as exc:
                if not reread:  # read the record again and answer from what it is now
                    reread = True
                    continue
                error = str(exc) or type(exc).__name__
                failed = AgentResult(step_id=step.step_id, agent=step.agent, skill=step.skill,
                                     status="failed", reason=error)
                return failed, [AgentFailed(step_id=step.step_id, agent=step.agent, skill=step.skill,
                                            error=error, attempts=attempt), AgentCompleted(result=failed)]
            except (SkillError, TimeoutError) as exc:
                error = str(exc) or type(exc).__name__
                transient = isinstance(exc, TimeoutError) or getattr(exc, "transient", False)
                if transient and attempt <= self.retries:
                    continue
                failed = AgentResult(step_id=step.step_id, agent=step.agent, skill=step.skill,
                                     status="failed", reason=error)
                return failed, [AgentFailed(step_id=step.step_id, agent=step.agent, skill=step.skill,
                                            error=error, attempts=attempt), AgentCompleted(result=failed)]
            events: list[Event] = []
            if result.action_key is not None:
                events.append(ActionRequested(step_id=step.step_id, action=step.skill,
                                              idempotency_key=result.action_key))
                events.append(ActionCompleted(step_id=step.step_id, action=step.skill,
                                              idempotency_key=result.action_key, facts=result.facts))
            events.append(AgentCompleted(result=result, latency_ms=_ms(started)))
            return result, events
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _unverified(skill: Skill, handoff: Handoff) -> AgentResult | None:
        """A result asking the customer to sign in (again) when the skill may not run for them."""
        case = handoff.case
        if case.anonymous and not skill.public:
            template, reason = "sign_in", "the customer is not signed in"
        elif (skill.verification_s is not None and not case.anonymous
              and (case.verified_age_s is None or case.verified_age_s > skill.verification_s)):
            template, reason = "verify_again", f"{skill.name} needs a verification in the last {skill.verification_s:.0f} s"
        else:
            return None
        return AgentResult(step_id=handoff.step_id, agent=handoff.agent, skill=handoff.skill, status="unverified",
                           template=template, reason=reason)

    @staticmethod
    def _unmet(step: PlanStep, handoff: Handoff, done: dict[str, AgentResult]) -> AgentResult | None:
        """A skipped result when the step's condition on its upstream results does not hold."""
        if step.when is None:
            return None
        fact, expected = step.when
        upstream = [done[d] for d in step.depends_on if d in done]
        actual = next((r.facts[fact] for r in upstream if fact in r.facts), None)
        if actual is not None and actual.lower() == expected:
            return None
        facts = {"condition": f"{fact} {expected}", "expected": expected, "actual": actual or "unknown"}
        facts.update({k: v for r in upstream for k, v in r.facts.items() if k.endswith("_id")})
        return AgentResult(step_id=step.step_id, agent=step.agent, skill=step.skill, status="ok",
                           template="skipped", facts=facts, reason=f"{fact} is {actual}, not {expected}")

    def _params(self, skill: Skill, handoff: Handoff,
                inputs: Mapping[str, str] | None = None) -> tuple[BaseModel | None, tuple[str, ...]]:
        """The skill's typed parameters from the case's entities and upstream facts; ``inputs``
        (a workflow node's) maps a parameter to an entity (``"order_id"``) or an upstream step's
        fact (``"check.order_id"``)."""
        values: dict[str, object] = {}
        entities = handoff.case.entities
        for name in skill.params.model_fields:
            source = (inputs or {}).get(name)
            if source is not None:
                value = _input(source, handoff)
                if value is not None:
                    values[name] = value
                continue
            if name == CUSTOMER_ID:
                values[name] = handoff.case.customer_id
                continue
            value = entities.first(name) if name in self.entities else None
            if value is None:
                value = next((r.facts[name] for r in handoff.upstream if name in r.facts), None)
            if value is not None:
                values[name] = value
        missing = tuple(r for r in skill.requires if r not in values)
        if missing:
            return None, missing
        try:
            return skill.params.model_validate(values), ()
        except ValidationError as exc:
            bad = tuple(dict.fromkeys(str(e["loc"][0]) for e in exc.errors() if e["loc"]))
            return None, bad or tuple(skill.requires)


def _input(source: str, handoff: Handoff) -> str | None:
    """The value a workflow input names: ``"step.fact"`` from that upstream result, else the entity."""
    if "." in source:
        step_id, fact = source.split(".", 1)
        return next((r.facts.get(fact) for r in handoff.upstream if r.step_id == step_id), None)
    if source == CUSTOMER_ID:
        return handoff.case.customer_id
    return handoff.case.entities.first(source)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
