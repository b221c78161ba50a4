"""What plan-once orchestration saves: the same turns run as a classic agentic loop.

Every turn runs twice on the same agents:

* **plan-once** — the desk as it ships: one plan, the steps run with no model calls, one reply.
* **agentic loop** — a pydantic-ai ``Agent`` whose tools are the desk's skills: the model picks
  one tool per call, reads its result, and stops with a final answer. Each tool call really runs
  the skill, on another in-memory desk's agents. Two styles: one agent holding every skill, and
  a triage that first transfers to the agent that owns the skill (``transfer_to_billing``, as
  openai-agents hands off), one extra call per agent.

With no real model the loop's model is scripted (a pydantic-ai ``FunctionModel``): it calls the
tools of the plan-once plan one at a time, in plan order, skipping a conditional step whose
condition the upstream result does not meet, then answers; a turn with no tool to run (a
clarifying question, a transfer to a person) is answered in one call. That is the fewest calls a
loop can make, so the comparison favours the loop. Plan-once is charged the calls the desk makes
when a model plans every turn: one plan call, plus one reply call when agents ran and answered
(questions, transfers and approvals are templates). A turn a person owns costs nothing in either
mode. Both then get the same simulated model profile: virtual latency = measured orchestration
time + calls x per-call latency, and cost = calls x per-call price (flat, although a loop's later
calls carry a longer context: again in the loop's favour). The last row is plan-once as it
actually ran: the embedded default answers with no model at all.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from deskline.evals.dataset import EvalDataset
from deskline.evals.metrics import mean, percentile, ratio, rounded
from deskline.evals.runner import Observed, run_turn
from deskline.eventlog.events import HandoffSent, PlanMade
from deskline.handoffs.payload import AgentResult, Handoff
from deskline.handoffs.plan import Plan, PlanStep
from deskline.hierarchy.desk import SupportDesk

DEFAULT_LATENCY_MS = 400.0  # a hosted model's typical time to a short answer
DEFAULT_PRICE_USD = 0.002  # per call: about 1,500 tokens in and 150 out at small-model prices
Style = Literal["tools", "handoffs"]
LOOP_NAMES: dict[Style, str] = {"tools": "skills as tools", "handoffs": "triage hands off"}
_SPEC = re.compile(r"^\s*(latency|price)\s*=\s*([0-9.]+)\s*(ms|s|usd|\$)?\s*$", re.I)


@dataclass(frozen=True, slots=True)
class Profile:
    """A simulated model: what one call takes and costs."""

    call_latency_ms: float = DEFAULT_LATENCY_MS
    price_usd: float = DEFAULT_PRICE_USD

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
        return cls(
            call_latency_ms=values.get("latency", DEFAULT_LATENCY_MS),
            price_usd=values.get("price", DEFAULT_PRICE_USD),
        )


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
        return {
            "mode": self.name,
            "simulated": self.simulated,
            "n": n,
            "llm_calls": {
                "mean": rounded(mean(self.calls)),
                "max": max(self.calls, default=0),
                "total": sum(self.calls),
            },
            "latency_ms": {
                "p50": rounded(percentile(latency, 50), 1),
                "p95": rounded(percentile(latency, 95), 1),
                "mean": rounded(mean(latency), 1),
            },
            "orchestration_ms": {
                "p50": rounded(percentile(self.measured_ms, 50), 3),
                "mean": rounded(mean(self.measured_ms), 3),
            },
            "cost_usd": {
                "per_query": rounded(ratio(sum(costs), n), 6),
                "total": rounded(sum(costs), 4),
            },
        }


@dataclass(slots=True)
class LoopTurn:
    """The deps of one loop run: the plan it imitates and the handoffs of its steps."""

    plan: Plan
    handoffs: dict[str, Handoff]
    reply: str
    desk: SupportDesk
    style: Style = "tools"
    results: dict[str, AgentResult] = field(default_factory=dict)
    agent: str | None = None  # the agent a "handoffs" loop has transferred to

    def next_tool(self) -> str | None:
        """The tool a model that follows the plan calls next; ``None`` when it would answer."""
        for step in self.plan.steps:
            if step.step_id in self.results or step.step_id not in self.handoffs:
                continue
            if step.when is not None and not self._condition_met(step):
                continue
            if self.style == "handoffs" and step.agent != self.agent:
                return f"transfer_to_{step.agent}"
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
            update={"upstream": tuple(self.results[d] for d in step.depends_on if d in self.results)}
        )
        result, _events = await self.desk.operator.run_step(step.model_copy(update={"when": None}), handoff)
        self.results[step.step_id] = result
        return {"status": result.status, "facts": result.facts, "missing": list(result.missing)}


def tool_name(skill: str) -> str:
    return skill.replace(".", "__")


def build_agent(desk: SupportDesk) -> Any:
    """A pydantic-ai agent with one tool per skill of the desk's registry."""
    from pydantic_ai import Agent, RunContext, Tool

    empty = {"type": "object", "properties": {}, "additionalProperties": False}
    tools: list[Tool[LoopTurn]] = []
    for skill in desk.registry.skills.values():

        async def run_skill(ctx: RunContext[LoopTurn], _skill: str = skill.name) -> dict[str, Any]:
            return await ctx.deps.call(_skill)

        tools.append(
            Tool.from_schema(
                run_skill,
                name=tool_name(skill.name),
                description=skill.description,
                json_schema=empty,
                takes_ctx=True,
            )
        )
    for agent in desk.registry.agents:

        async def transfer(ctx: RunContext[LoopTurn], _agent: str = agent) -> str:
            ctx.deps.agent = _agent
            return f"you are now the {_agent} agent"

        tools.append(
            Tool.from_schema(
                transfer,
                name=f"transfer_to_{agent}",
                description=f"Hand over to {agent}.",
                json_schema=empty,
                takes_ctx=True,
            )
        )
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
        return {
            "n": self.turns,
            "profile": {
                "call_latency_ms": self.profile.call_latency_ms,
                "price_usd_per_call": self.profile.price_usd,
            },
            "modes": rows,
            "savings": {row["mode"]: savings(rows[0], row) for row in rows[1:-1]},
            "method": NOTE,
        }


def savings(plan_once: dict[str, Any], loop: dict[str, Any]) -> dict[str, Any]:
    """What plan-once saves per query against the loop (positive: plan-once is cheaper)."""

    def cut(path: tuple[str, str]) -> dict[str, float | None]:
        a, b = plan_once[path[0]][path[1]], loop[path[0]][path[1]]
        if a is None or b is None:
            return {"absolute": None, "share": None}
        return {"absolute": rounded(b - a, 6), "share": rounded(ratio(b - a, b))}

    return {
        "llm_calls_per_query": cut(("llm_calls", "mean")),
        "latency_p50_ms": cut(("latency_ms", "p50")),
        "cost_per_query_usd": cut(("cost_usd", "per_query")),
    }


async def compare_modes(
    dataset: EvalDataset, desk: SupportDesk, make_desk: Callable[[], SupportDesk], profile: Profile
) -> LoopComparison:
    """Every turn of ``dataset`` plan-once on ``desk``, then as each loop style on the agents of a
    desk of its own (``make_desk``), so no loop sees another's actions."""
    loops = {style: (make_desk(), ModeFigures(f"loop, {LOOP_NAMES[style]}", simulated=True)) for style in LOOP_NAMES}
    agents = {style: build_agent(loop_desk) for style, (loop_desk, _) in loops.items()}
    plan_once = ModeFigures("plan-once", simulated=True)
    as_run = ModeFigures("plan-once, as run", simulated=False)
    tag = uuid.uuid4().hex[:8]
    for i, case in enumerate(dataset.cases):
        cid = f"loop-{tag}-{i}"
        for turn_no, text in enumerate(case.inputs.texts, start=1):
            seen = await run_turn(desk, cid, text)
            as_run.add(seen.llm_calls, seen.latency_ms, seen.cost_usd)
            plan_once.add(plan_once_calls(seen), seen.latency_ms)
            for style, (loop_desk, figures) in loops.items():
                figures.add(*await _loop_turn(agents[style], desk, loop_desk, cid, turn_no, text, seen, style))
    return LoopComparison(
        modes=(plan_once, *(f for _, f in loops.values()), as_run),
        profile=profile,
        turns=len(as_run.calls),
    )


def plan_once_calls(seen: Observed) -> int:
    """The desk's model calls for the turn if a model planned every turn: the plan, plus the
    reply when agents ran and answered (the desk's other replies are templates)."""
    if seen.held or seen.error is not None:
        return 0
    return 1 + (1 if seen.steps and seen.outcome == "answered" else 0)


async def _loop_turn(
    agent: Any,
    desk: SupportDesk,
    loop_desk: SupportDesk,
    cid: str,
    turn_no: int,
    text: str,
    seen: Observed,
    style: Style,
) -> tuple[int, float]:
    """One turn as a loop run: (model calls, measured ms). A turn a person owns makes none."""
    if seen.held or seen.error is not None:
        return 0, 0.0
    events = [r.event for r in desk.store.load(cid) if r.turn == turn_no]
    plan = next((e.plan for e in events if isinstance(e, PlanMade)), None)
    if plan is None:
        return 0, 0.0
    handoffs = {e.handoff.step_id: e.handoff for e in events if isinstance(e, HandoffSent)}
    turn = LoopTurn(plan=plan, handoffs=handoffs, reply=seen.reply or "", desk=loop_desk, style=style)
    started = time.perf_counter()
    result = await agent.run(text, model=scripted_model(turn), deps=turn)
    return int(result.usage.requests), (time.perf_counter() - started) * 1000


NOTE = (
    "How this was simulated: both modes get the same model profile; virtual latency = measured "
    "orchestration time + calls x per-call latency, cost = calls x per-call price. Plan-once is charged what "
    "the desk calls when a model plans every turn: 1 plan call, plus 1 reply call when agents ran and answered "
    "(questions, transfers and approvals are templates). The loop is a pydantic-ai agent whose scripted model "
    "calls the plan's tools one per call, then answers; a turn with no tool is one call. That is the fewest "
    "calls a loop can make, and the flat price ignores its growing context, so the figures favour the loop. "
    "The handoffs loop (a triage model transfers to each agent, as openai-agents does) adds one call per "
    "agent. "
    "Tools run for real on the same agents. 'plan-once, as run' is the desk as it ran, not simulated."
)


def print_table(comparison: LoopComparison, console: Any = None) -> None:
    """The comparison as a terminal table, then what plan-once saves and how it was simulated."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    data = comparison.to_dict()
    p = comparison.profile
    table = Table(
        "mode",
        "calls/q",
        "max",
        "p50 ms",
        "p95 ms",
        "$/query",
        "$ total",
        "orch. p50 ms",
        title=f"plan-once vs agentic loop: {comparison.turns} turns, simulated model "
        f"{p.call_latency_ms:g} ms and ${p.price_usd:g} per call",
        title_justify="left",
    )
    for row in data["modes"]:
        table.add_row(
            row["mode"],
            f"{row['llm_calls']['mean']:.2f}",
            str(row["llm_calls"]["max"]),
            f"{row['latency_ms']['p50']:,.1f}",
            f"{row['latency_ms']['p95']:,.1f}",
            f"{row['cost_usd']['per_query']:.5f}",
            f"{row['cost_usd']['total']:,.2f}",
            f"{row['orchestration_ms']['p50']:.3f}",
        )
    console.print(table)

    def said(part: dict[str, float | None], money: bool = False) -> str:
        value, share = part["absolute"], part["share"]
        text = "—" if value is None else (f"${value:.5f}" if money else f"{value:,.2f}")
        return text + ("" if share is None else f" ({share:.0%})")

    for mode, s in data["savings"].items():
        console.print(
            f"against the {mode}: plan-once saves {said(s['llm_calls_per_query'])} model calls per "
            f"query, {said(s['latency_p50_ms'])} ms at p50 and "
            f"{said(s['cost_per_query_usd'], money=True)} per query."
        )
    console.print(NOTE, style="dim")
