"""Replay: rebuild a conversation from its log and decide every turn again, calling no model.

Each turn is decided from the state folded up to its message, with the agents' recorded results
standing in for the system of record (and recorded model outputs for the model), so an unchanged
desk reproduces the log exactly. A changed desk (new thresholds, skills, templates) shows which
turns would now be decided differently: that is how a configuration change is evaluated on
yesterday's traffic.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from deskline.eventlog.events import (
    TURN_ENDS,
    ActionCompleted,
    ActionRequested,
    AgentCompleted,
    AgentFailed,
    CompensationCompleted,
    CompensationFailed,
    CompensationRequested,
    Event,
    HandoffSent,
    ModelCalled,
    PlanMade,
    Recorded,
)
from deskline.eventlog.projections import fold
from deskline.handoffs.payload import AgentResult, Handoff
from deskline.handoffs.plan import Plan, PlanStep
from deskline.hierarchy.compensation import Undo
from deskline.hierarchy.desk import SupportDesk
from deskline.hierarchy.operation import Operator
from deskline.routing.cache import RouteCache
from deskline.routing.llm_config import Role
from deskline.routing.models import Attempt, ModelGateway, Outcome, TurnBudget

T = TypeVar("T")

# Timings vary run to run; constraints are the configuration a turn ran under, not a decision.
_VOLATILE = frozenset({"latency_ms", "at", "constraints"})


@dataclass(frozen=True, slots=True)
class TurnReplay:
    turn: int
    department: str | None
    mode: str | None
    reply: str | None
    seqs: tuple[int, ...]
    differences: tuple[str, ...] = field(default=())

    @property
    def same(self) -> bool:
        return not self.differences

    def to_dict(self) -> dict[str, object]:
        return {"turn": self.turn, "department": self.department, "mode": self.mode, "reply": self.reply,
                "seqs": list(self.seqs), "same": self.same, "differences": list(self.differences)}


class RecordedOperator(Operator):
    """An operator whose steps (and compensations) return what the log says they returned."""

    def __init__(self, base: Operator, recorded: list[Event]) -> None:
        super().__init__(base.registry, base.backend, base.timeout_s, base.retries, base.entities, base.policies)
        # One bucket per time the step was handed off: a re-executed plan runs each step again.
        self._by_step: dict[str, list[list[Event]]] = {}
        for e in recorded:
            if isinstance(e, HandoffSent):
                self._by_step.setdefault(e.handoff.step_id, []).append([])
                continue
            step_id = e.result.step_id if isinstance(e, AgentCompleted) else getattr(e, "step_id", None)
            if isinstance(e, AgentCompleted | ActionRequested | ActionCompleted | AgentFailed) and step_id:
                buckets = self._by_step.setdefault(step_id, [[]])
                buckets[-1].append(e)
        self._undone: dict[str, list[Event]] = {}
        for e in recorded:
            if isinstance(e, CompensationRequested | CompensationCompleted | CompensationFailed):
                self._undone.setdefault(e.idempotency_key, []).append(e)

    async def undo(self, undo: Undo, cause: str) -> list[Event]:
        found = self._undone.pop(undo.key, None)
        if found is not None:
            return found
        return [CompensationRequested(step_id=undo.run.step.step_id, action=undo.run.step.skill,
                                      compensation=undo.name, of_key=undo.of_key, idempotency_key=undo.key,
                                      reason=cause),
                CompensationFailed(step_id=undo.run.step.step_id, action=undo.run.step.skill, compensation=undo.name,
                                   idempotency_key=undo.key, error="no recorded compensation")]

    async def undone_before(self, undo: Undo) -> bool:
        return undo.key in self._undone

    async def _step(self, step: PlanStep, handoff: Handoff,
                    done: dict[str, AgentResult]) -> tuple[AgentResult, list[Event]]:
        buckets = self._by_step.get(step.step_id)
        events = buckets.pop(0) if buckets else None
        result = next((e.result for e in events or () if isinstance(e, AgentCompleted)), None)
        if events is None or result is None:
            return await self._missing(step)
        return result, list(events)

    async def _missing(self, step: PlanStep) -> tuple[AgentResult, list[Event]]:
        result = AgentResult(step_id=step.step_id, agent=step.agent, skill=step.skill, status="failed",
                             reason="no recorded result for this step")
        return result, [AgentCompleted(result=result)]


class RecordedModels:
    """Model calls answered from the log: each recorded attempt, in order, per role.

    A recorded failure fails again; a recorded answer is handed back through a pydantic-ai
    ``FunctionModel``, so the planner and writer parse it exactly as they did live.
    """

    def __init__(self, recorded: list[Event], live: ModelGateway | None) -> None:
        self._queue: dict[str, list[ModelCalled]] = {}
        for e in recorded:
            if isinstance(e, ModelCalled):
                self._queue.setdefault(e.role, []).append(e)
        self._live = live

    def has(self, role: Role) -> bool:
        return bool(self._queue.get(role)) or (self._live is not None and self._live.has(role))

    async def call(self, role: Role, run: Callable[[Any], Awaitable[T]], budget: TurnBudget,
                   reserve: int = 0, size_hint: Sequence[dict[str, Any]] = ()) -> Outcome[T]:
        from pydantic_ai.models.function import FunctionModel

        from deskline.routing.adapter import call_errors, from_output

        attempts: list[Attempt] = []
        queue = self._queue.get(role, [])
        while queue and budget.remaining > reserve:
            e = queue.pop(0)
            attempt = Attempt(role=role, group=e.model_group, deployment=e.deployment, ok=e.ok, error=e.error,
                              latency_ms=e.latency_ms, input_tokens=e.input_tokens, output_tokens=e.output_tokens,
                              cost_usd=e.cost_usd, output=e.output, request_summary=e.request_summary,
                              fallbacks=e.fallbacks)
            budget.charge(attempt)
            attempts.append(attempt)
            if not e.ok and not e.output:
                continue
            recorded = from_output(e.output, e.deployment, e.input_tokens, e.output_tokens)

            def answer(_messages: Any, _info: Any, r: Any = recorded) -> Any:
                return r

            try:
                value = await run(FunctionModel(answer))
            except call_errors():
                continue
            return Outcome(value, tuple(attempts))
        return Outcome(None, tuple(attempts))


class LoggedCache(RouteCache):
    """The route cache as it was for one logged turn: it hits where the live cache hit."""

    def __init__(self, recorded: list[Event]) -> None:
        super().__init__()
        plan = next((e.plan for e in recorded if isinstance(e, PlanMade)), None)
        self._hit = plan if plan is not None and plan.stage == "cache" else None

    def get(self, key: str) -> Plan | None:
        return self._hit

    def put(self, key: str, plan: Plan) -> None:
        return None


def _comparable(e: Event) -> dict[str, Any]:
    data: dict[str, Any] = e.model_dump(mode="json")
    if e.type == "handoff_sent":
        # How the history window is stored changed (copied in v1-v2, referred to by seq in v3);
        # what the handoff asked for did not.
        data.pop("history_seqs", None)
        data["handoff"]["case"].pop("history", None)
        data.pop("v", None)
    if e.type == "plan_made":
        # The decision is compared, not its explanation: a route-cache hit is the classifier's
        # answer remembered, and whether the cache was warm depends on other conversations.
        plan = data["plan"]
        if plan["stage"] == "cache":
            plan["stage"] = "classifier"
        plan.pop("verdicts")
        plan.pop("reason")
    stripped: dict[str, Any] = _strip(data)
    return stripped


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in _VOLATILE}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _diff(recorded: list[Event], replayed: list[Event]) -> list[str]:
    out: list[str] = []
    for i in range(max(len(recorded), len(replayed))):
        a = _comparable(recorded[i]) if i < len(recorded) else None
        b = _comparable(replayed[i]) if i < len(replayed) else None
        if a != b:
            kind = (a or b or {}).get("type", "?")
            out.append(f"event {i + 1} ({kind}): log {_short(a)} != replay {_short(b)}")
    return out


def _short(value: dict[str, Any] | None) -> str:
    text = "nothing" if value is None else str(value)
    return text if len(text) <= 240 else text[:237] + "..."


def _decisions(records: list[Recorded], message_seq: int) -> list[Recorded]:
    """The events the desk appended for the message at ``message_seq``, up to the turn's end."""
    out: list[Recorded] = []
    for r in records:
        if r.seq <= message_seq:
            continue
        out.append(r)
        if r.event.type in TURN_ENDS:
            break
    return out


async def replay(desk: SupportDesk, conversation_id: str, records: list[Recorded] | None = None) -> list[TurnReplay]:
    """Every answered turn of the conversation decided again; differences listed per turn."""
    records = desk.store.load(conversation_id) if records is None else records
    state = fold(conversation_id, records)
    out: list[TurnReplay] = []
    for turn in state.turns:
        if not turn.complete:
            continue
        before = [r for r in records if r.seq <= turn.message_seq]
        logged = _decisions(records, turn.message_seq)
        logged_events = [r.event for r in logged]
        prior = fold(conversation_id, before)
        replayed = await desk.decide_or_fail(prior, prior.turns[-1], operator=RecordedOperator(desk.operator, logged_events),
                                     models=RecordedModels(logged_events, desk.models),
                                     cache=LoggedCache(logged_events))
        out.append(TurnReplay(turn=turn.turn, department=turn.department, mode=turn.mode, reply=turn.reply,
                              seqs=tuple(r.seq for r in logged), differences=tuple(_diff(logged_events, replayed))))
    return out
