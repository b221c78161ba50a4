"""What plan-once orchestration saves: the same turns run as a classic agentic loop.

Every turn runs twice on the same agents:

* **plan-once** — the desk as it ships: one plan, the steps run with no model calls, one reply.
* **agentic loop** — a pydantic-ai ``Agent`` whose tools are the desk's skills (plus
  ``transfer_to_human``): the model picks one tool per call, sees its result, and stops with a
  final answer. Each tool call really runs the skill on a second in-memory desk's agents.

With no real model the loop's model is scripted (a pydantic-ai ``FunctionModel``): it calls the
tools of the plan-once plan one at a time, in plan order, skipping a conditional step whose
condition the upstream result does not meet, then answers. That is the fewest calls a loop can
make for the turn, so the comparison favours the loop. Both modes then get the same simulated
model profile: virtual latency = measured orchestration time + calls x per-call latency, and
cost = calls x per-call price. Plan-once is charged what it would call with a model on every
turn (1 plan + 1 reply); a turn a person owns costs nothing in either mode. The table also shows
plan-once as it actually ran (the embedded default needs no model at all).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from deskline.evals.dataset import EvalDataset
from deskline.evals.metrics import mean, percentile, ratio, rounded
from deskline.evals.runner import Observed, run_turn
from deskline.eventlog.events import HandoffSent, PlanMade
from deskline.handoffs.payload import AgentResult, Handoff
from deskline.handoffs.plan import Plan, PlanStep
from deskline.hierarchy.desk import SupportDesk

PLAN_ONCE_CALLS = 2  # one plan, one reply
TRANSFER = "transfer_to_human"
_SPEC = re.compile(r"^\s*(latency|price)\s*=\s*([0-9.]+)\s*(ms|s|usd|\$)?\s*$", re.I)


@dataclass(frozen=True, slots=True)
class Profile:
    """A simulated model: what one call takes and costs."""

    call_latency_ms: float = 400.0
    price_usd: float = 0.002

    @classmethod
    def parse(cls, spec: str) -> Profile:
        """``latency=400ms,price=0.002`` (either part may be left out; ``s`` works for seconds)."""
        values: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            m = _SPEC.match(part)
            if m is None:
                raise ValueError(f"bad profile part {part!r}: use latency=400ms,price=0.002")
            key, number, unit = m.group(1).lower(), float(m.group(2)), (m.group(3) or "").lower()
            values[key] = number * 1000 if key == "latency" and unit == "s" else number
        return cls(call_latency_ms=values.get("latency", cls.call_latency_ms),
                   price_usd=values.get("price", cls.price_usd))


@dataclass(slots=True)
class ModeFigures:
    """Per-turn model calls and measured time of one way of running the turns."""

    name: str
    simulated: bool
    calls: list[int] = field(default_factory=list)
    measured_ms: list[float] = field(default_factory=list)
    cost_usd: list[float] = field(default_factory=list)  # only when not simulated

    def add(self, calls: int, measured_ms: float, cost_usd: float = 0.0) -> None:
        self.calls.append(calls)
        self.measured_ms.append(measured_ms)
        self.cost_usd.append(cost_usd)

    def figures(self, profile: Profile) -> dict[str, Any]:
        extra = profile.call_latency_ms if self.simulated else 0.0
        latency = [m + c * extra for m, c in zip(self.measured_ms, self.calls, strict=True)]
        costs = [c * profile.price_usd for c in self.calls] if self.simulated else self.cost_usd
        n = len(self.calls)
        return {"mode": self.name, "simulated": self.simulated, "n": n,
                "llm_calls": {"mean": rounded(mean(self.calls)), "max": max(self.calls, default=0),
                              "total": sum(self.calls)},
                "latency_ms": {"p50": rounded(percentile(latency, 50), 1), "p95": rounded(percentile(latency, 95), 1),
                               "mean": rounded(mean(latency), 1)},
                "orchestration_ms": {"p50": rounded(percentile(self.measured_ms, 50), 3),
                                     "mean": rounded(mean(self.measured_ms), 3)},
                "cost_usd": {"per_query": rounded(ratio(sum(costs), n), 6), "total": rounded(sum(costs), 4)}}


@dataclass(slots=True)
class LoopTurn:
    """The deps of one loop run: the plan it imitates and the handoffs of its steps."""

    plan: Plan
    handoffs: dict[str, Handoff]
    reply: str
    desk: SupportDesk
    results: dict[str, AgentResult] = field(default_factory=dict)
    transferred: bool = False

    def next_tool(self) -> str | None:
        """The tool a model that follows the plan calls next; ``None`` when it would answer."""
        if self.plan.mode == "escalate":
            return None if self.transferred else TRANSFER
        for step in self.plan.steps:
            if step.step_id in self.results or step.step_id not in self.handoffs:
                continue
            if step.when is not None and not self._condition_met(step):
                continue
            return tool_name(step.skill)
        return None

    def _condition_met(self, step: PlanStep) -> bool:
        assert step.when is not None
        fact, wanted = step.when
        upstream = [self.results[d] for d in step.depends_on if d in self.results]
        return any(r.facts.get(fact, "").lower() == wanted for r in upstream)

    async def call(self, skill: str) -> dict[str, Any]:
        """Run the plan's step for ``skill`` on the loop desk's agents; what the model reads back."""
        step = next(s for s in self.plan.steps if s.skill == skill and s.step_id not in self.results)
        handoff = self.handoffs[step.step_id].model_copy(
            update={"upstream": tuple(self.results[d] for d in step.depends_on if d in self.results)})
        result, _events = await self.desk.operator.run_step(step.model_copy(update={"when": None}), handoff)
        self.results[step.step_id] = result
        return {"status": result.status, "facts": result.facts, "missing": list(result.missing)}


def tool_name(skill: str) -> str:
    return skill.replace(".", "__")


def build_agent(desk: SupportDesk) -> Any:
    """A pydantic-ai agent with one tool per skill of the desk's registry, plus the transfer."""
    from pydantic_ai import Agent, RunContext, Tool

    empty = {"type": "object", "properties": {}, "additionalProperties": False}
    tools: list[Tool[LoopTurn]] = []
    for skill in desk.registry.skills.values():
        async def run_skill(ctx: RunContext[LoopTurn], _skill: str = skill.name) -> dict[str, Any]:
            return await ctx.deps.call(_skill)
        tools.append(Tool.from_schema(run_skill, name=tool_name(skill.name), description=skill.description,
                                      json_schema=empty, takes_ctx=True))

    async def transfer(ctx: RunContext[LoopTurn]) -> str:
        ctx.deps.transferred = True
        return "transferred to the human queue"
    tools.append(Tool.from_schema(transfer, name=TRANSFER, description="Hand the conversation to a person.",
                                  json_schema=empty, takes_ctx=True))
    return Agent(None, deps_type=LoopTurn, tools=tools, defer_model_check=True)


def scripted_model(turn: LoopTurn) -> Any:
    """The simulated model: the next tool of the plan, or the reply when none is left."""
    from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
    from pydantic_ai.models.function import AgentInfo, FunctionModel

    def respond(_messages: list[ModelMessage], _info: AgentInfo) -> ModelResponse:
        name = turn.next_tool()
        if name is not None:
            return ModelResponse(parts=[ToolCallPart(tool_name=name, args={})])
        return ModelResponse(parts=[TextPart(turn.reply or "(no reply)")])

    return FunctionModel(respond, model_name="scripted-loop")


@dataclass(frozen=True, slots=True)
class LoopComparison:
    modes: tuple[ModeFigures, ...]
    profile: Profile
    turns: int

    def to_dict(self) -> dict[str, Any]:
        rows = [m.figures(self.profile) for m in self.modes]
        return {"n": self.turns, "profile": {"call_latency_ms": self.profile.call_latency_ms,
                                             "price_usd_per_call": self.profile.price_usd},
                "modes": rows, "savings": savings(rows[0], rows[1]), "method": NOTE}


def savings(plan_once: dict[str, Any], loop: dict[str, Any]) -> dict[str, Any]:
    """What plan-once saves per query against the loop (positive: plan-once is cheaper)."""
    def cut(path: tuple[str, str]) -> dict[str, float | None]:
        a, b = plan_once[path[0]][path[1]], loop[path[0]][path[1]]
        if a is None or b is None:
            return {"absolute": None, "share": None}
        return {"absolute": rounded(b - a, 6), "share": rounded(ratio(b - a, b))}
    return {"llm_calls_per_query": cut(("llm_calls", "mean")), "latency_p50_ms": cut(("latency_ms", "p50")),
            "cost_per_query_usd": cut(("cost_usd", "per_query"))}


async def compare_modes(dataset: EvalDataset, desk: SupportDesk, loop_desk: SupportDesk,
                        profile: Profile) -> LoopComparison:
    """Every turn of ``dataset`` plan-once on ``desk`` and as a loop on ``loop_desk``'s agents."""
    agent = build_agent(loop_desk)
    plan_once = ModeFigures("plan-once (1 plan + 1 reply call)", simulated=True)
    loop = ModeFigures("agentic loop (1 call per tool + answer)", simulated=True)
    as_run = ModeFigures("plan-once as run (no simulation)", simulated=False)
    tag = uuid.uuid4().hex[:8]
    for i, case in enumerate(dataset.cases):
        cid = f"loop-{tag}-{i}"
        for turn_no, text in enumerate(case.inputs.texts, start=1):
            seen = await run_turn(desk, cid, text)
            as_run.add(seen.llm_calls, seen.latency_ms, seen.cost_usd)
            calls, took = await _loop_turn(agent, desk, loop_desk, cid, turn_no, text, seen)
            plan_once.add(0 if seen.held else PLAN_ONCE_CALLS, seen.latency_ms)
            loop.add(calls, took)
    return LoopComparison(modes=(plan_once, loop, as_run), profile=profile, turns=len(as_run.calls))


async def _loop_turn(agent: Any, desk: SupportDesk, loop_desk: SupportDesk, cid: str, turn_no: int, text: str,
                     seen: Observed) -> tuple[int, float]:
    """One turn as a loop run: (model calls, measured ms). A turn a person owns makes none."""
    if seen.held or seen.error is not None:
        return 0, 0.0
    events = [r.event for r in desk.store.load(cid) if r.turn == turn_no]
    plan = next((e.plan for e in events if isinstance(e, PlanMade)), None)
    if plan is None:
        return 0, 0.0
    handoffs = {e.handoff.step_id: e.handoff for e in events if isinstance(e, HandoffSent)}
    turn = LoopTurn(plan=plan, handoffs=handoffs, reply=seen.reply or "", desk=loop_desk)
    started = time.perf_counter()
    result = await agent.run(text, model=scripted_model(turn), deps=turn)
    return int(result.usage.requests), (time.perf_counter() - started) * 1000


NOTE = ("Simulated model profile: virtual latency = measured orchestration time + calls x per-call latency; "
        "cost = calls x per-call price. Plan-once is charged 1 plan + 1 reply call on every turn the bot answers; "
        "the loop is a pydantic-ai agent whose scripted model calls the plan's tools one per call, then answers "
        "(the fewest calls a loop can make, so the comparison favours the loop). Tools run for real on the same "
        "agents. The last row is plan-once as it actually ran, with no simulation.")


def print_table(comparison: LoopComparison, console: Any = None) -> None:
    """The comparison as a terminal table, then what plan-once saves and how it was simulated."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    data = comparison.to_dict()
    p = comparison.profile
    table = Table("mode", "calls/query", "max calls", "latency p50 (ms)", "latency p95 (ms)", "cost/query ($)",
                  "cost total ($)", "orchestration p50 (ms)",
                  title=f"plan-once vs agentic loop: {comparison.turns} turns, simulated model "
                        f"{p.call_latency_ms:g} ms and ${p.price_usd:g} per call", title_justify="left")
    for row in data["modes"]:
        table.add_row(row["mode"], f"{row['llm_calls']['mean']:.2f}", str(row["llm_calls"]["max"]),
                      f"{row['latency_ms']['p50']:,.1f}", f"{row['latency_ms']['p95']:,.1f}",
                      f"{row['cost_usd']['per_query']:.5f}", f"{row['cost_usd']['total']:,.2f}",
                      f"{row['orchestration_ms']['p50']:.3f}")
    console.print(table)
    s = data["savings"]
    console.print(f"plan-once saves {s['llm_calls_per_query']['absolute']:.2f} model calls per query "
                  f"({s['llm_calls_per_query']['share']:.0%}), {s['latency_p50_ms']['absolute']:,.0f} ms at p50 "
                  f"({s['latency_p50_ms']['share']:.0%}) and ${s['cost_per_query_usd']['absolute']:.5f} per query "
                  f"({s['cost_per_query_usd']['share']:.0%}) against the loop.")
    console.print(NOTE, style="dim")


def limit_cases(dataset: EvalDataset, limit: int | None) -> EvalDataset:
    """The first ``limit`` cases (all when ``None``)."""
    from pydantic_evals import Dataset

    if limit is None or limit >= len(dataset.cases):
        return dataset
    return Dataset(name=dataset.name, cases=list(dataset.cases[:limit]))


__all__: Sequence[str] = ("LoopComparison", "Profile", "compare_modes", "print_table")
