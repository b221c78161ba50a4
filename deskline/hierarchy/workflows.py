"""Declared workflows at work: chosen by the triage as one plan, run by the operation layer node
by node.

The model (``Workflow``, ``Node``, ``Edge``) and its validation live with the desk definition
(``deskline.definition.workflow``). Here:

* ``claim_plan``: the local cascade's choice. A workflow claims a message whose router intent is
  one of its ``intents``, or that contains one of its ``keywords`` (not a bare question, when
  the workflow acts); no model call.
* ``plan_for``: a workflow as a ``Plan`` whose steps are its nodes (their inputs and edge
  conditions included, so the plan recorded in ``PlanMade`` says everything that will run).
* ``run_workflow``: the nodes in waves. A node runs when every node it waits on ended ``ok``
  and its edges' conditions hold; otherwise it is skipped, and so is what waits on it. After a
  node fails for good only nodes with an edge on a failure still run. The reply speaks of the
  last word on each path: a result is left out when a node that waits on it ran ``ok``.
  ``WorkflowFinished`` records every node's outcome.
* ``tool_name`` / ``tool_parameters``: the workflow as one more tool of the model planner.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from deskline.definition import Desk
from deskline.definition.workflow import Workflow
from deskline.errors import PlanError
from deskline.eventlog.events import NodeOutcome, WorkflowFinished
from deskline.handoffs.payload import CUSTOMER_ID, HUMAN, AgentResult, Case, Constraints
from deskline.handoffs.plan import Condition, Plan, PlanStep, Stage, StageVerdict
from deskline.hierarchy.plan import order, validate

if TYPE_CHECKING:
    from deskline.hierarchy.operation import Execution, Operator
    from deskline.routing.classifier import Prediction

TOOL_PREFIX = "run_workflow__"
WAITING = ("needs_info", "pending_approval", "unverified")


def tool_name(workflow: Workflow) -> str:
    return TOOL_PREFIX + workflow.name


def entity_inputs(desk: Desk, workflow: Workflow) -> tuple[str, ...]:
    """The case entities the workflow's nodes read: mapped ones, and parameters named like one."""
    known = set(desk.extractor.by_name)
    names: list[str] = []
    for node in workflow.nodes:
        names.extend(s for s in node.inputs.values() if "." not in s and s in known)
        if node.skill in desk.registry:
            fields = desk.registry[node.skill].params.model_fields
            names.extend(f for f in fields if f in known and f not in node.inputs)
    return tuple(dict.fromkeys(names))


def tool_parameters(desk: Desk, workflow: Workflow) -> dict[str, Any]:
    """The JSON schema of the workflow's tool: the entities it reads from the case, all optional."""
    props = {name: {"type": "string", "description": desk.extractor.by_name[name].description or name}
             for name in entity_inputs(desk, workflow)}
    return {"type": "object", "properties": props, "additionalProperties": False}


def acts(desk: Desk, workflow: Workflow) -> bool:
    return any(n.skill in desk.registry and desk.registry[n.skill].action for n in workflow.nodes)


def plan_for(desk: Desk, workflow: Workflow, *, intent: str, confidence: float, stage: Stage,
             verdicts: tuple[StageVerdict, ...] = (), reason: str = "") -> Plan:
    """``workflow`` as a validated plan: one step per node, in the order declared."""
    registry = desk.registry
    steps = tuple(
        PlanStep(step_id=n.id, agent=registry[n.skill].agent, skill=n.skill, depends_on=n.sources(),
                 inputs=dict(n.inputs), conditions=tuple(e.condition() for e in n.edges if _conditional(e.condition())))
        for n in workflow.nodes)
    mode = "sequential" if any(s.depends_on for s in steps) else ("single" if len(steps) == 1 else "parallel")
    plan = Plan(mode=mode, department=desk.workflow_department(workflow), intent=intent, confidence=confidence,
                stage=stage, steps=steps, verdicts=verdicts, reason=reason or f"workflow {workflow.name}",
                workflow=workflow.name)
    return validate(plan, registry)


def _conditional(condition: Condition) -> bool:
    """Whether an edge says more than "after this node ended ok" (which every dependency means)."""
    return bool(condition.fact) or condition.outcome != "ok"


def claim(desk: Desk, text: str, prediction: Prediction) -> tuple[Workflow, str, Stage] | None:
    """The workflow that claims this message, why, and the stage that decided, if one does."""
    from deskline.hierarchy.dialogue import asks_only

    if not prediction.abstain and prediction.department == HUMAN:
        return None
    low = text.lower()
    question = asks_only(text)
    for workflow in desk.workflow_map.values():
        if question and acts(desk, workflow):
            continue  # a question gets an answer, not a procedure that acts
        if not prediction.abstain and prediction.intent in workflow.intents:
            return workflow, f"intent {prediction.intent} -> workflow {workflow.name}", "classifier"
        said = next((k for k in workflow.keywords if k.lower() in low), None)
        if said is not None:
            return workflow, f"the message says {said!r} -> workflow {workflow.name}", "rules"
    return None


def claim_plan(desk: Desk, text: str, prediction: Prediction, verdicts: list[StageVerdict],
               threshold: float) -> Plan | None:
    """The local cascade's workflow plan for this message, its verdicts recorded, if one claims it."""
    if not desk.workflow_map:
        return None
    found = claim(desk, text, prediction)
    if found is None:
        return None
    workflow, why, stage = found
    p = prediction
    if stage == "classifier":
        verdicts.append(StageVerdict(stage="classifier", department=p.department, intent=p.intent,
                                     confidence=p.confidence, accepted=True, alternatives=p.alternatives,
                                     reason=f"confidence {p.confidence:.2f} >= {threshold:.2f}; {why}"))
    else:
        verdicts.append(StageVerdict(stage="classifier", department=p.department, intent=p.intent,
                                     confidence=p.confidence, alternatives=p.alternatives,
                                     reason=f"{p.department} at {p.confidence:.2f}: a declared workflow claims it"))
        verdicts.append(StageVerdict(stage="rules", department=desk.workflow_department(workflow), intent=p.intent,
                                     confidence=1.0, accepted=True, reason=why))
    confidence = p.confidence if stage == "classifier" else 1.0
    return plan_for(desk, workflow, intent=p.intent, confidence=confidence, stage=stage,
                    verdicts=tuple(verdicts), reason=why)


# -- running ------------------------------------------------------------------------------------


def _blocked(step: PlanStep, done: dict[str, AgentResult], failed: bool) -> str | None:
    """Why ``step`` does not run, or None when it does."""
    explicit = {c.step for c in step.conditions}
    if failed and not any(c.outcome != "ok" for c in step.conditions):
        return "the workflow stopped after a failure"
    for source in step.depends_on:
        result = done.get(source)
        if result is None:
            return f"{source} did not run"
        if source not in explicit and not result.ok:
            return f"{source} ended {result.status}"
    for c in step.conditions:
        result = done[c.step]
        if not c.holds(result):
            if result.status != c.outcome:
                return f"{c.step} ended {result.status}, not {c.outcome}"
            return f"{c.step}: {c.fact} is {result.facts.get(c.fact, 'unknown')}, not {'|'.join(c.equals)}"
    return None


async def run_workflow(operator: Operator, plan: Plan, case: Case, constraints: Constraints) -> Execution:
    """Run ``plan``'s nodes (see the module docstring); the operator undoes actions afterwards."""
    from deskline.hierarchy.operation import Execution  # the operator's own module imports this one

    if any(c.step not in s.depends_on for s in plan.steps for c in s.conditions):
        raise PlanError(f"workflow {plan.workflow}: a condition names a step it does not wait on")
    run = Execution()
    done: dict[str, AgentResult] = {}
    outcomes: dict[str, NodeOutcome] = {}
    failed = False
    declared = [s.step_id for s in plan.steps]
    for wave in order(plan.steps):
        ready: list[PlanStep] = []
        for step in sorted(wave, key=lambda s: declared.index(s.step_id)):
            why = _blocked(step, done, failed)
            if why is None:
                ready.append(step)
            else:
                outcome = "not_run" if why.startswith("the workflow stopped") else "skipped"
                outcomes[step.step_id] = NodeOutcome(node=step.step_id, skill=step.skill, outcome=outcome, reason=why)
        if not ready:
            continue
        for result in await operator.run_wave(ready, case, constraints, done, run):
            outcomes[result.step_id] = NodeOutcome(node=result.step_id, skill=result.skill, outcome=result.status,
                                                   reason=result.reason)
            failed = failed or result.status == "failed"
    statuses = {o.outcome for o in outcomes.values()}
    overall = ("failed" if statuses & {"failed", "escalate"} else "waiting" if statuses & set(WAITING)
               else "completed")
    run.events.append(WorkflowFinished(workflow=plan.workflow, outcome=overall,
                                       nodes=tuple(outcomes[s.step_id] for s in plan.steps)))
    superseded = {d for r in run.runs if r.result.ok for d in r.step.depends_on}
    run.results = [r for r in run.results if not (r.ok and r.step_id in superseded)]
    return run


def entity_arguments(desk: Desk, workflow: Workflow, args: dict[str, Any]) -> dict[str, str]:
    """The planner's arguments for the workflow's tool, checked: only the entities it reads."""
    allowed = set(entity_inputs(desk, workflow)) | {CUSTOMER_ID}
    unknown = sorted(set(args) - allowed)
    if unknown:
        raise PlanError(f"{tool_name(workflow)} has no parameters {unknown}")
    return {k: str(v) for k, v in args.items() if v not in (None, "") and k != CUSTOMER_ID}
