"""The decision path of a turn, from the event log, for a person to read.

``deskline explain CONVERSATION_ID [--turn N]`` prints, per turn: the message, the strategy's
decision and reasons, every routing stage's verdict, confidence and reason (with the
alternatives it weighed), the plan, each handoff with its case entities, the agents' results,
every model call with its deployment, fallbacks, cost and latency, a declared workflow's run node
by node (ran, skipped and why), the compensations of a failed plan (undone, failed, kept), the
grounding check and the reply. It is a pure function of the events, so it explains yesterday's turn exactly as it ran.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from deskline.eventlog.events import (
    TURN_ENDS,
    ActionCompleted,
    AgentCompleted,
    AgentFailed,
    CompensationCompleted,
    CompensationFailed,
    CompensationRequested,
    CompensationSkipped,
    CustomerMessaged,
    EscalationRequested,
    HandoffSent,
    ModelCalled,
    PlanMade,
    Recorded,
    ReplySent,
    StrategyDecided,
    TurnHeld,
    WorkflowFinished,
)


@dataclass
class TurnExplanation:
    turn: int
    message: str = ""
    strategy: dict[str, Any] = field(default_factory=dict)
    stages: list[dict[str, Any]] = field(default_factory=list)
    plans: list[dict[str, Any]] = field(default_factory=list)
    handoffs: list[dict[str, Any]] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)
    model_calls: list[dict[str, Any]] = field(default_factory=list)
    workflows: list[dict[str, Any]] = field(default_factory=list)
    compensations: list[dict[str, Any]] = field(default_factory=list)
    escalation: dict[str, Any] | None = None
    reply: dict[str, Any] | None = None
    seqs: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def explain(records: Sequence[Recorded], turn: int | None = None) -> list[TurnExplanation]:
    """One explanation per turn (or just ``turn``), in order."""
    out: dict[int, TurnExplanation] = {}
    current: TurnExplanation | None = None
    for r in records:
        e = r.event
        if isinstance(e, CustomerMessaged):
            current = out.setdefault(r.turn, TurnExplanation(turn=r.turn, message=e.text))
        if current is None or (turn is not None and current.turn != turn):
            continue
        current.seqs.append(r.seq)
        if isinstance(e, StrategyDecided):
            current.strategy = {"owner": e.owner, "action": e.action, "reasons": list(e.reasons),
                                "sentiment": e.sentiment,
                                "approval_limit": str(e.constraints.approval_limit),
                                "max_llm_calls": e.constraints.max_llm_calls}
        elif isinstance(e, PlanMade):
            p = e.plan
            current.stages.extend({"stage": v.stage, "verdict": v.department, "intent": v.intent,
                                   "confidence": round(v.confidence, 4), "accepted": v.accepted,
                                   "reason": v.reason,
                                   "rejected_alternatives": [f"{d} {c:.2f}" for d, c in v.alternatives[1:]]}
                                  for v in p.verdicts)
            current.plans.append({"mode": p.mode, "department": p.department, "intent": p.intent,
                                  "stage": p.stage, "confidence": round(p.confidence, 4), "reason": p.reason,
                                  "workflow": p.workflow,
                                  "steps": [{"step": s.step_id, "skill": s.skill, "depends_on": list(s.depends_on),
                                             "when": list(s.when) if s.when else None,
                                             "conditions": [c.describe() for c in s.conditions],
                                             "inputs": dict(s.inputs)} for s in p.steps],
                                  "entities": e.entities.model_dump(mode="json", exclude_defaults=True)})
        elif isinstance(e, HandoffSent):
            h = e.handoff
            current.handoffs.append({"step": h.step_id, "agent": h.agent, "skill": h.skill, "version": h.version,
                                     "idempotency_key": h.idempotency_key,
                                     "entities": h.case.entities.model_dump(mode="json", exclude_defaults=True),
                                     "upstream": [u.step_id for u in h.upstream]})
        elif isinstance(e, AgentCompleted):
            res = e.result
            current.results.append({"step": res.step_id, "skill": res.skill, "status": res.status,
                                    "facts": res.facts, "missing": list(res.missing), "reason": res.reason,
                                    "latency_ms": e.latency_ms})
        elif isinstance(e, AgentFailed):
            current.results.append({"step": e.step_id, "skill": e.skill, "status": "failed", "error": e.error,
                                    "attempts": e.attempts})
        elif isinstance(e, ActionCompleted):
            current.actions.append({"step": e.step_id, "action": e.action, "key": e.idempotency_key})
        elif isinstance(e, WorkflowFinished):
            current.workflows.append({"workflow": e.workflow, "outcome": e.outcome,
                                      "nodes": [n.model_dump() for n in e.nodes]})
        elif isinstance(e, CompensationRequested):
            current.compensations.append({"step": e.step_id, "action": e.action, "compensation": e.compensation,
                                          "key": e.idempotency_key, "of_key": e.of_key, "status": "requested",
                                          "reason": e.reason})
        elif isinstance(e, CompensationCompleted | CompensationFailed):
            entry = next((c for c in reversed(current.compensations) if c.get("key") == e.idempotency_key), None)
            if entry is not None and isinstance(e, CompensationCompleted):
                entry.update(status="undone", facts=e.facts)
            elif entry is not None and isinstance(e, CompensationFailed):
                entry.update(status="FAILED", error=e.error, attempts=e.attempts)
        elif isinstance(e, CompensationSkipped):
            current.compensations.append({"step": e.step_id, "action": e.action, "of_key": e.of_key,
                                          "status": "kept", "reason": e.reason})
        elif isinstance(e, ModelCalled):
            current.model_calls.append({"role": e.role, "group": e.model_group, "deployment": e.deployment,
                                        "ok": e.ok, "error": e.error, "fallbacks": list(e.fallbacks),
                                        "tokens": [e.input_tokens, e.output_tokens],
                                        "cost_usd": float(e.cost_usd), "latency_ms": e.latency_ms})
        elif isinstance(e, EscalationRequested):
            current.escalation = {"reason": e.reason, "priority": e.priority, "summary": e.summary,
                                  "pending_action": e.pending_action}
        elif isinstance(e, ReplySent):
            current.reply = {"text": e.text, "department": e.department, "mode": e.mode, "outcome": e.outcome,
                             "grounded": e.grounded, "escalated": e.escalated, "llm_calls": e.llm_calls,
                             "latency_ms": e.latency_ms}
        elif isinstance(e, TurnHeld):
            current.reply = {"text": None, "held": e.reason}
        if e.type in TURN_ENDS:
            current = None
    return [out[k] for k in sorted(out) if turn is None or k == turn]


def render(explanations: Sequence[TurnExplanation]) -> list[str]:
    """Plain lines for a terminal."""
    lines: list[str] = []
    for t in explanations:
        lines.append(f"turn {t.turn} (events {t.seqs[0]}-{t.seqs[-1]}): {t.message!r}")
        s = t.strategy
        if s:
            lines.append(f"  strategy: {s['owner']} -> {s['action']} ({'; '.join(s['reasons'])}); "
                         f"budget {s['max_llm_calls']} model calls, approval limit ${s['approval_limit']}")
        for v in t.stages:
            mark = "ACCEPTED" if v["accepted"] else "passed on"
            alts = f"; rejected {', '.join(v['rejected_alternatives'])}" if v["rejected_alternatives"] else ""
            lines.append(f"  {v['stage']:<10} {v['verdict'] or '-':<8} {v['intent'] or '':<32} "
                         f"{v['confidence']:.2f} {mark}: {v['reason']}{alts}")
        for p in t.plans:
            steps = ", ".join(f"{x['step']}={x['skill']}" + (f" after {'+'.join(x['depends_on'])}" if x["depends_on"] else "")
                              + (f" if {x['when'][0]}={x['when'][1]}" if x["when"] else "") for x in p["steps"])
            kind = f"workflow {p['workflow']} ({p['mode']})" if p.get("workflow") else p["mode"]
            lines.append(f"  plan: {kind} -> {p['department']} [{steps or 'no steps'}] ({p['reason']})")
        for h in t.handoffs:
            lines.append(f"  handoff {h['step']} -> {h['agent']}.{h['skill'].split('.')[-1]} v{h['version']} "
                         f"key {h['idempotency_key']} entities {h['entities'] or '{}'}")
        for r in t.results:
            lines.append(f"  result {r['step']} {r['skill']}: {r['status']} {r.get('facts') or r.get('error', '')}")
        lines.extend(_workflow_lines(t))
        for c in t.compensations:
            if c["status"] == "kept":
                lines.append(f"  not undone {c['step']} {c['action']} (key {c['of_key']}): {c['reason']}")
                continue
            outcome = c.get("facts") or c.get("error", "") or ""
            lines.append(f"  undo {c['step']} {c['action']} by {c['compensation']} key {c['key']}: "
                         f"{c['status']} {outcome}".rstrip())
        for m in t.model_calls:
            ok = "ok" if m["ok"] else f"FAILED ({m['error']})"
            via = f" after {', '.join(m['fallbacks'])}" if m["fallbacks"] else ""
            lines.append(f"  model {m['role']}: {m['deployment']} [{m['group']}]{via} {ok}; tokens "
                         f"{m['tokens'][0]}+{m['tokens'][1]}, ${Decimal(str(m['cost_usd'])):.6f}, {m['latency_ms']:.1f} ms")
        if t.escalation:
            lines.append(f"  escalated (priority {t.escalation['priority']}): {t.escalation['reason']}")
        if t.reply:
            if t.reply.get("text") is None:
                lines.append(f"  no bot reply: {t.reply.get('held')}")
            else:
                grounded = "grounded" if t.reply["grounded"] else "NOT grounded"
                lines.append(f"  reply ({t.reply['outcome']}, {grounded}, {t.reply['llm_calls']} model calls, "
                             f"{t.reply['latency_ms']:.1f} ms): {t.reply['text']}")
        lines.append("")
    return lines


def _workflow_lines(t: TurnExplanation) -> list[str]:
    """A workflow's run node by node: what each waited on, how it ended, what it found."""
    lines: list[str] = []
    steps = {x["step"]: x for p in t.plans for x in p["steps"]}
    facts = {r["step"]: r.get("facts") or r.get("error", "") for r in t.results}
    for w in t.workflows:
        lines.append(f"  workflow {w['workflow']}: {w['outcome']}")
        for n in w["nodes"]:
            step = steps.get(n["node"], {})
            conditions = step.get("conditions") or []
            plain = [d for d in step.get("depends_on") or [] if not any(c.split(" ")[0] == d for c in conditions)]
            waits = ", ".join([*plain, *conditions])
            after = f" after {waits}" if waits else ""
            said = f": {n['reason']}" if n["outcome"] in ("skipped", "not_run") else f" {facts.get(n['node']) or ''}"
            lines.append(f"    node {n['node']} {n['skill']}{after} -> {n['outcome']}{said}".rstrip())
    return lines
