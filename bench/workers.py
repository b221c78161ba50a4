"""The measurements, each run in a fresh worker process (``run.py --worker NAME``) so that
globals (litellm's provider map, the tracer, RSS) never leak between them."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import random
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from common import (
    HERE,
    PEERS,
    PLAN_MS,
    SKILL_MS,
    WRITE_MS,
    desk_with,
    pct,
    rss_mib,
)


class AlwaysAsk:
    """The model path plans every turn: the local classifier always defers to the planner."""

    threshold = 1.0

    def __init__(self, real: Any) -> None:
        self.real = real

    def predict(self, text: str) -> Any:
        from dataclasses import replace

        return replace(self.real.predict(text), abstain=True)


def peer_paths() -> None:
    for p in (str(HERE), str(PEERS)):
        if p not in sys.path:
            sys.path.insert(0, p)


def adapter(mode: str, db: str) -> Any:
    """bench/fw_deskline.py (the peer adapter) in this process, for ``mode`` on database ``db``."""
    os.environ["DESKLINE_BENCH_MODE"] = mode
    os.environ["DESKLINE_BENCH_DB"] = db
    peer_paths()
    import fw_deskline

    return fw_deskline


# ------------------------------------------------------------------------------------------ workers

async def w_peers_inproc(p: dict[str, Any]) -> dict[str, Any]:
    """The peer workload's deskline rows in process: per-turn wall and CPU; for the model path, the
    time inside ModelRouter.complete (the litellm Router and the fake behind it) and a run with the
    Router bypassed (the fake called directly)."""
    F = adapter(p["mode"], p["db"])
    import workload as W

    await F.setup()
    desk = F._desk
    msgs = W.MESSAGES
    for i in range(p["warmup"]):
        await F.turn(msgs[i % len(msgs)][0])
    n = p["turns"]

    async def phase() -> dict[str, Any]:
        gc.collect()
        samples = []
        outs = []
        pc = time.perf_counter_ns
        W.COUNTS.reset()
        c0, t0 = time.process_time(), pc()
        for i in range(n):
            text = msgs[i % len(msgs)][0]
            s = pc()
            outs.append(await F.turn(text))
            samples.append((pc() - s) / 1000)
        wall, cpu = (pc() - t0) / 1e9, time.process_time() - c0
        wrong = sorted({f"{msgs[i % len(msgs)][0]!r} -> {o!r}"
                        for i, o in enumerate(outs) if o != W.expected_answer(i)})
        return {"n": n, "median_us": statistics.median(samples), "p99_us": pct(samples, 99),
                "mean_us": statistics.fmean(samples), "cpu_us_per_turn": cpu / n * 1e6,
                "cpu_share": cpu / wall, "model_calls_per_turn": W.COUNTS.model / n,
                "wrong_answers": sum(1 for i, o in enumerate(outs) if o != W.expected_answer(i)),
                "wrong_examples": wrong[:3]}

    out: dict[str, Any] = {"mode": p["mode"], "db": p["db"], "plain": await phase()}
    if p["mode"] == "model":
        models = desk.models
        original = models.complete
        inside = [0]

        async def timed(role: Any, group: str, request: dict[str, Any]) -> Any:
            t = time.perf_counter_ns()
            try:
                return await original(role, group, request)
            finally:
                inside[0] += time.perf_counter_ns() - t

        models.complete = timed
        W.TIME_FAKES = True
        W.COUNTS.fake_ns = 0
        wrapped = await phase()
        W.TIME_FAKES = False
        litellm_us = inside[0] / n / 1000
        fake_us = W.COUNTS.fake_ns / n / 1000
        wrapped.update({"inside_complete_us_per_turn": litellm_us, "fake_self_us_per_turn": fake_us,
                        "desk_own_us_per_turn": wrapped["mean_us"] - litellm_us,
                        "desk_own_share": (wrapped["mean_us"] - litellm_us) / wrapped["mean_us"]})
        out["split"] = wrapped

        import litellm

        brain = litellm.custom_provider_map[0]["custom_handler"]

        async def direct(role: Any, group: str, request: dict[str, Any]) -> Any:
            extra = {k: v for k, v in request.items() if k != "messages"}
            return await brain.acompletion(model=group, messages=request["messages"], optional_params=extra)

        models.complete = direct
        out["router_bypassed"] = await phase()
        models.complete = original
    out["breakdown"] = await _breakdown(desk, F, W, n)
    out["rss_mib"] = rss_mib()
    return out


class StageClock:
    """An observer that adds up the desk's own per-layer timings (``Observer`` protocol)."""

    def __init__(self) -> None:
        self.stages: dict[str, float] = {}
        self.appends = 0.0
        self.append_calls = 0

    def appended(self, records: Any) -> None:
        return None

    def stage(self, name: str, seconds: float) -> None:
        self.stages[name] = self.stages.get(name, 0.0) + seconds

    def store_append(self, seconds: float, conflict: bool) -> None:
        self.appends += seconds
        self.append_calls += 1


async def _breakdown(desk: Any, F: Any, W: Any, n: int) -> dict[str, Any]:
    """Where a turn's time goes, by the desk's own layer timings (strategy, triage, operation,
    writer, store appends); the rest is load + fold + result building. Means, µs per turn."""
    clock = StageClock()
    saved = desk.observer
    desk.observer = clock
    gc.collect()
    t0 = time.perf_counter()
    for i in range(n):
        await F.turn(W.MESSAGES[i % len(W.MESSAGES)][0])
    wall = time.perf_counter() - t0
    desk.observer = saved
    out = {f"{k}_us": v / n * 1e6 for k, v in clock.stages.items()}
    out["store_append_us"] = clock.appends / n * 1e6
    out["appends_per_turn"] = clock.append_calls / n
    out["turn_us"] = wall / n * 1e6
    out["rest_us"] = out["turn_us"] - sum(v for k, v in out.items() if k not in ("turn_us", "appends_per_turn"))
    return out


def _cp_registry(delays: dict[str, float]) -> Any:
    from pydantic import BaseModel

    from deskline.agents.registry import Skill, SkillCall

    class NoParams(BaseModel):
        pass

    def make(agent: str) -> Skill:
        async def run(call: SkillCall) -> Any:
            ms = delays[agent]
            await asyncio.sleep(ms / 1000)
            return call.result(facts={"agent": agent, "status": "checked", "slept_ms": f"{ms:.0f}"})

        return Skill(name=f"{agent}.probe", agent=agent, description=f"Check the {agent} side of the case.",  # type: ignore[arg-type]
                     params=NoParams, run=run, templates={"default": "The {agent} check is done: {status}."})

    skills = [make(a) for a in ("tech", "billing", "payment")]
    return desk_with(skills, {a: f"{a}.probe" for a in ("tech", "billing", "payment")})


def _cp_models() -> Any:
    """A litellm Router over an in-process CustomLLM that takes the profile's time."""
    import litellm
    from litellm import CustomLLM

    class SlowModel(CustomLLM):
        async def acompletion(self, model: str, messages: list[Any], *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            params = kwargs.get("optional_params") or {}
            user = str(messages[-1]["content"])
            if params.get("tools"):
                await asyncio.sleep(PLAN_MS / 1000)
                calls = [{"id": f"call_{i}", "type": "function",
                          "function": {"name": f"{a}__probe", "arguments": "{}"}}
                         for i, a in enumerate(("tech", "billing", "payment"))]
                message: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": calls}
            else:
                await asyncio.sleep(WRITE_MS / 1000)
                message = {"role": "assistant", "content": user.rsplit("Draft: ", 1)[-1].strip()}
            return litellm.ModelResponse(choices=[{"message": message, "finish_reason": "stop", "index": 0}],
                                         model=model, usage={"prompt_tokens": 300, "completion_tokens": 40,
                                                             "total_tokens": 340})

    litellm.custom_provider_map = [{"provider": "local", "custom_handler": SlowModel()}]
    from deskline.routing.llm_config import ModelsFile
    from deskline.routing.models import ModelRouter

    config = ModelsFile.model_validate({"model_list": [
        {"model_name": "planner", "litellm_params": {"model": "local/slow-planner"}},
        {"model_name": "writer", "litellm_params": {"model": "local/slow-writer"}}]})
    return ModelRouter(config)


async def w_critical_path(p: dict[str, Any]) -> dict[str, Any]:
    from pydantic_ai.messages import ModelResponse, TextPart, ToolCallPart
    from pydantic_ai.models.function import FunctionModel

    from deskline.agents.builtin.backend.memory import MemoryBackend
    from deskline.agents.builtin.desk import ROUTER
    from deskline.config import Settings
    from deskline.evals.loop import LoopTurn, build_agent
    from deskline.eventlog.database import make_engine
    from deskline.eventlog.events import HandoffSent, PlanMade
    from deskline.eventlog.store import SqlEventStore
    from deskline.hierarchy.desk import SupportDesk
    from deskline.routing.cache import RouteCache
    from deskline.routing.classifier import load_classifier

    delays: dict[str, float] = {}
    registry = _cp_registry(delays)
    models = _cp_models()
    desk = SupportDesk(store=SqlEventStore(make_engine(p.get("db", "sqlite://"))), records=MemoryBackend(),
                       desk=registry, classifier=AlwaysAsk(load_classifier(ROUTER)), settings=Settings(),
                       models=models, cache=RouteCache(capacity=0))
    loop_desk = SupportDesk(store=SqlEventStore(make_engine("sqlite://")), records=MemoryBackend(),
                            desk=registry, classifier=load_classifier(ROUTER), settings=Settings())
    agent = build_agent(loop_desk)
    text = p.get("text", "I can't log in to the app, invoice INV-1001 looks wrong and my transfer PAY-2001 is late")
    rng = random.Random(p.get("seed", 7))

    async def loop_run(turn: LoopTurn) -> tuple[float, int]:
        async def respond(_messages: Any, _info: Any) -> ModelResponse:
            name = turn.next_tool()
            if name is not None:
                await asyncio.sleep(PLAN_MS / 1000)  # choosing the next tool: a planning call
                return ModelResponse(parts=[ToolCallPart(tool_name=name, args={})])
            await asyncio.sleep(WRITE_MS / 1000)  # the final answer: a writing call
            return ModelResponse(parts=[TextPart(turn.reply or "(no reply)")])

        t0 = time.perf_counter()
        result = await agent.run(text, model=FunctionModel(respond, model_name="profile-loop"), deps=turn)
        return (time.perf_counter() - t0) * 1000, int(result.usage.requests)

    # warm-up (imports, first-call set-up in litellm and pydantic-ai), with short sleeps
    delays.update({"tech": 1.0, "billing": 1.0, "payment": 1.0})
    await desk.handle(None, text)
    turns = []
    for i in range(p["turns"]):
        delays.update({a: rng.uniform(*SKILL_MS) for a in ("tech", "billing", "payment")})
        if i == 0:  # the first turn uses the profile's end points and middle: 50, 175, 300 ms
            delays.update({"tech": SKILL_MS[0], "billing": sum(SKILL_MS) / 2, "payment": SKILL_MS[1]})
        cid = f"cp-{uuid.uuid4().hex[:12]}"
        t0, c0 = time.perf_counter(), time.process_time()
        result = await desk.handle(cid, text)
        wall = (time.perf_counter() - t0) * 1000
        cpu = (time.process_time() - c0) * 1000
        bound = PLAN_MS + max(delays.values()) + WRITE_MS
        events = [r.event for r in desk.store.load(cid) if r.turn == result.turn]
        plan = next(e.plan for e in events if isinstance(e, PlanMade))
        handoffs = {e.handoff.step_id: e.handoff for e in events if isinstance(e, HandoffSent)}
        row: dict[str, Any] = {
            "skills_ms": {a: round(v, 1) for a, v in delays.items()}, "bound_ms": round(bound, 1),
            "measured_ms": round(wall, 1), "ratio": round(wall / bound, 4), "overhead_ms": round(wall - bound, 1),
            "cpu_ms": round(cpu, 1), "plan_mode": plan.mode, "steps": len(plan.steps),
            "llm_calls": result.llm_calls, "reply": result.reply,
            "serial_sum_ms": round(PLAN_MS + sum(delays.values()) + WRITE_MS, 1)}
        for style in ("tools", "handoffs"):
            lt = LoopTurn(plan=plan, handoffs=handoffs, reply=result.reply or "", desk=loop_desk, style=style)  # type: ignore[arg-type]
            ms, calls = await loop_run(lt)
            row[f"loop_{style}_ms"] = round(ms, 1)
            row[f"loop_{style}_calls"] = calls
        turns.append(row)
    ratios = [t["ratio"] for t in turns]
    return {"profile": {"plan_ms": PLAN_MS, "write_ms": WRITE_MS, "skill_ms": list(SKILL_MS)},
            "text": text, "turns": turns, "ratio_median": statistics.median(ratios), "ratio_max": max(ratios),
            "overhead_ms_median": statistics.median(t["overhead_ms"] for t in turns),
            "measured_ms_median": statistics.median(t["measured_ms"] for t in turns),
            "bound_ms_median": statistics.median(t["bound_ms"] for t in turns),
            "loop_tools_ms_median": statistics.median(t["loop_tools_ms"] for t in turns),
            "loop_handoffs_ms_median": statistics.median(t["loop_handoffs_ms"] for t in turns),
            "loop_tools_calls": turns[0]["loop_tools_calls"], "loop_handoffs_calls": turns[0]["loop_handoffs_calls"]}


def _tp_messages() -> list[str]:
    return ["I was charged twice for invoice INV-1001", "I forgot my password and can't log in",
            "my transfer to my landlord hasn't arrived", "is the service down?",
            "I want to talk to a real person", "what is my balance"]


async def _tp_loop(desk: Any, prefix: str, seconds: float, pool: int = 500, per_conv: int = 3) -> dict[str, Any]:
    msgs = _tp_messages()
    lat: list[float] = []
    modes: dict[str, int] = {}
    i = 0
    pc = time.perf_counter
    c0 = time.process_time()
    t_start = pc()
    end = t_start + seconds
    while True:
        now = pc()
        if now >= end:
            break
        conv = (i % pool) + pool * (i // (pool * per_conv))
        result = await desk.handle(f"{prefix}-{conv}", msgs[i % len(msgs)])
        lat.append((pc() - now) * 1000)
        modes[result.mode] = modes.get(result.mode, 0) + 1
        i += 1
    wall = pc() - t_start
    cpu = time.process_time() - c0
    return {"turns": i, "seconds": wall, "turns_per_s": i / wall, "p50_ms": statistics.median(lat),
            "p99_ms": pct(lat, 99), "latencies_ms": lat, "cpu_share": cpu / wall, "modes": modes,
            "turns_per_cpu_s": i / cpu if cpu else None,
            "conversations": (i // per_conv) + 1}


async def w_tp_sqlite(p: dict[str, Any]) -> dict[str, Any]:
    from deskline.config import Settings
    from deskline.runtime import open_desk

    desk = open_desk(Settings(database_url=p["db"]))
    await _tp_loop(desk, "warm", p.get("warmup_s", 1.0))
    r = await _tp_loop(desk, f"tp{uuid.uuid4().hex[:6]}", p["seconds"])
    lat = r.pop("latencies_ms")
    r["p90_ms"] = pct(lat, 90)
    r["rss_mib"] = rss_mib()
    return r


async def w_length(p: dict[str, Any]) -> dict[str, Any]:
    """Turn latency against the turn's position in its conversation: ``conversations``
    conversations of ``turns`` turns, median per position. ``state_cache=0`` makes every turn read
    and fold the whole conversation (no cached folds), to show what the cache buys."""
    from deskline.config import Settings
    from deskline.runtime import open_desk

    desk = open_desk(Settings(database_url=p["db"], state_cache=p.get("state_cache", Settings().state_cache)))
    msgs = ["I was charged twice for invoice INV-1001", "I forgot my password and can't log in",
            "my transfer to my landlord hasn't arrived"]
    for i in range(100):
        await desk.handle(f"warm-{i % 10}", msgs[i % len(msgs)])
    by_pos: list[list[float]] = [[] for _ in range(p["turns"])]
    modes: dict[str, int] = {}
    for c in range(p["conversations"]):
        cid = f"len-{c}-{uuid.uuid4().hex[:6]}"
        for t in range(p["turns"]):
            t0 = time.perf_counter()
            result = await desk.handle(cid, msgs[(c + t) % len(msgs)])
            by_pos[t].append((time.perf_counter() - t0) * 1000)
            modes[result.mode] = modes.get(result.mode, 0) + 1
    marks = sorted({1, 5, 10, 20, 40, p["turns"]} & set(range(1, p["turns"] + 1)))
    return {"conversations": p["conversations"], "turns": p["turns"], "modes": modes,
            "median_ms_at_turn": {str(k): statistics.median(by_pos[k - 1]) for k in marks}}


def w_tp_pg_proc(p: dict[str, Any]) -> None:
    """One of several processes on one PostgreSQL schema: READY after set-up, GO on stdin, then run."""
    from deskline.config import Settings
    from deskline.runtime import open_desk

    desk = open_desk(Settings(database_url=p["db"]))
    asyncio.run(_tp_loop(desk, f"warm{p['k']}", p.get("warmup_s", 1.0), pool=50))
    print("READY", flush=True)
    sys.stdin.readline()
    r = asyncio.run(_tp_loop(desk, f"w{p['k']}-{uuid.uuid4().hex[:6]}", p["seconds"]))
    print(json.dumps(r), flush=True)


async def w_memory(p: dict[str, Any]) -> dict[str, Any]:
    """RSS growth and event-log bytes per conversation kept open (``n`` conversations, 2 turns each)."""
    from deskline.config import Settings
    from deskline.runtime import memory_desk, open_desk

    msgs = _tp_messages()
    desk = memory_desk(Settings()) if p["store"] == "memory" else open_desk(Settings(database_url=p["db"]))
    for i in range(200):
        await desk.handle(f"warm-{i % 50}", msgs[i % len(msgs)])
    db_file = Path(p["db"].removeprefix("sqlite:///")) if p["store"] != "memory" else None

    def disk() -> int:
        if db_file is None:
            return 0
        return sum(f.stat().st_size for f in db_file.parent.glob(db_file.name + "*"))

    gc.collect()
    rss0, disk0 = rss_mib(), disk()
    t0 = time.perf_counter()
    n = p["n"]
    for c in range(n):
        await desk.handle(f"open-{c}", msgs[c % len(msgs)])
        await desk.handle(f"open-{c}", msgs[(c + 1) % len(msgs)])
    seconds = time.perf_counter() - t0
    gc.collect()
    rss1, disk1 = rss_mib(), disk()
    sample = [f"open-{c}" for c in range(0, n, max(1, n // 200))]
    events = [r for cid in sample for r in desk.store.load(cid)]
    json_bytes = sum(len(r.event.model_dump_json()) for r in events)
    out = {"store": p["store"], "conversations": n, "turns": 2 * n, "seconds": seconds,
           "rss_before_mib": rss0, "rss_after_mib": rss1,
           "rss_kib_per_conversation": (rss1 - rss0) * 1024 / n,
           "events_per_conversation": len(events) / len(sample),
           "event_json_bytes_per_conversation": json_bytes / len(sample)}
    if db_file is not None:
        import sqlite3

        with sqlite3.connect(db_file) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            stored = conn.execute("SELECT count(*), sum(length(data)) FROM events WHERE conversation_id LIKE 'open-%'"
                                  ).fetchone()
        out.update({"disk_growth_bytes_per_conversation": (disk1 - disk0) / n,
                    "db_file_bytes_after_checkpoint": disk(),
                    "stored_events_per_conversation": stored[0] / n,
                    "stored_data_bytes_per_conversation": (stored[1] or 0) / n})
    return out


async def w_observability(p: dict[str, Any]) -> dict[str, Any]:
    """Turn latency and CPU per turn with the observer and the tracer switched on and off, interleaved
    in blocks so machine load hits every configuration alike."""
    F = adapter(p["mode"], "sqlite://")
    import workload as W
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from deskline.observe.hooks import NullObserver
    from deskline.observe.metrics import DeskMetrics
    from deskline.observe.tracing import NullTracer, OtelTracer, use_tracer

    await F.setup()
    desk = F._desk
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    otel = OtelTracer(provider.get_tracer("deskline-bench"))
    metrics = DeskMetrics()
    configs = {"off": (NullObserver(), NullTracer()), "metrics": (metrics, NullTracer()),
               "tracing": (NullObserver(), otel), "metrics+tracing": (metrics, otel)}
    samples: dict[str, list[float]] = {k: [] for k in configs}
    cpu: dict[str, float] = dict.fromkeys(configs, 0.0)
    spans: dict[str, int] = dict.fromkeys(configs, 0)
    msgs = W.MESSAGES
    rng = random.Random(3)
    for observer, tracer in configs.values():  # warm every configuration
        desk.observer = observer
        use_tracer(tracer)
        for i in range(p["warmup"]):
            await F.turn(msgs[i % len(msgs)][0])
    exporter.clear()
    pc = time.perf_counter_ns
    for _block in range(p["blocks"]):
        order = list(configs)
        rng.shuffle(order)
        for name in order:
            observer, tracer = configs[name]
            desk.observer = observer
            use_tracer(tracer)
            gc.collect()
            c0 = time.process_time()
            for i in range(p["per_block"]):
                t = pc()
                await F.turn(msgs[i % len(msgs)][0])
                samples[name].append((pc() - t) / 1000)
            cpu[name] += time.process_time() - c0
            spans[name] += len(exporter.get_finished_spans())
            exporter.clear()
    use_tracer(NullTracer())
    n = p["blocks"] * p["per_block"]
    base = statistics.median(samples["off"])
    base_cpu = cpu["off"] / n * 1e6
    rows = {}
    for name in configs:
        med = statistics.median(samples[name])
        cpu_us = cpu[name] / n * 1e6
        rows[name] = {"median_us": med, "p99_us": pct(samples[name], 99), "cpu_us_per_turn": cpu_us,
                      "overhead_us": med - base, "overhead_pct": 100 * (med - base) / base,
                      "cpu_overhead_us": cpu_us - base_cpu, "cpu_overhead_pct": 100 * (cpu_us - base_cpu) / base_cpu,
                      "spans_per_turn": spans[name] / n}
    return {"mode": p["mode"], "turns_per_config": n, "configs": rows,
            "scrape_bytes": len(metrics.scrape())}


def w_eventlog(p: dict[str, Any]) -> dict[str, Any]:
    """bench/eventlog.py's append and turn benchmarks on one database."""
    sys.path.insert(0, str(HERE))
    import eventlog as E
    from sqlalchemy import text

    from deskline.eventlog.database import make_engine

    url = p["url"]
    append_url, turn_url = url, url
    if p["name"] == "sqlite-file":
        append_url, turn_url = f"sqlite:///{p['tmp']}/append.db", f"sqlite:///{p['tmp']}/turns.db"
    la0 = os.getloadavg()
    appends = E.bench_appends(append_url, conversations=p["conversations"], turns=p["append_turns"], batch=8)
    if p["name"] == "postgresql":
        with make_engine(url).begin() as conn:
            conn.execute(text("DELETE FROM events; DELETE FROM open_turns"))
    c0, t0 = time.process_time(), time.perf_counter()
    turns = E.bench_turns(turn_url, p["turns"], 100)
    turns["cpu_share"] = round((time.process_time() - c0) / (time.perf_counter() - t0), 3)
    return {"append": appends, "turns": turns, "loadavg": [la0[0], os.getloadavg()[0]]}


def w_profile(p: dict[str, Any]) -> dict[str, Any]:
    """pyinstrument (or cProfile) over ``turns`` turns of the peer workload on in-memory SQLite."""
    F = adapter(p["mode"], p.get("db", "sqlite://"))
    import workload as W

    async def go(n: int) -> None:
        for i in range(n):
            await F.turn(W.MESSAGES[i % len(W.MESSAGES)][0])

    async def main() -> str:
        await F.setup()
        await go(200)
        try:
            from pyinstrument import Profiler
        except ImportError:
            import cProfile
            import io
            import pstats

            prof = cProfile.Profile()
            prof.enable()
            await go(p["turns"])
            prof.disable()
            s = io.StringIO()
            pstats.Stats(prof, stream=s).sort_stats("cumulative").print_stats(60)
            return s.getvalue()
        profiler = Profiler(interval=0.0002, async_mode="enabled")
        profiler.start()
        await go(p["turns"])
        profiler.stop()
        return profiler.output_text(unicode=True, color=False, show_all=False)

    return {"text": asyncio.run(main())}


WORKERS = {"peers_inproc": w_peers_inproc, "critical_path": w_critical_path, "tp_sqlite": w_tp_sqlite,
           "length": w_length,
           "memory": w_memory, "observability": w_observability}
SYNC_WORKERS = {"eventlog": w_eventlog, "profile": w_profile}


def worker_main(name: str, params: dict[str, Any]) -> None:
    if name == "tp_pg_proc":
        w_tp_pg_proc(params)
        return
    result = SYNC_WORKERS[name](params) if name in SYNC_WORKERS else asyncio.run(WORKERS[name](params))
    print(json.dumps(result, default=str), flush=True)


# ------------------------------------------------------------------------------------------ sections

