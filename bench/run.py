"""deskline's performance benchmarks: one command, every figure, against its target.

    python bench/run.py                      # everything, default sizes (~10 min on 2 cores)
    python bench/run.py --json               # the same, one JSON object on stdout (tables on stderr)
    python bench/run.py --quick              # smoke version, ~2-3 min
    python bench/run.py --only peers,cold_start
    python bench/run.py --profile default    # where a turn's time goes (pyinstrument), no sections
    python bench/run.py --snapshot HEAD      # measure the committed desk while deskline/ is being edited

Run it with the project's virtualenv (``/tmp/dv/bin/python bench/run.py``). Sections:

* ``peers``          orchestration overhead against OpenAI Agents SDK, LangGraph and pydantic-ai:
                     runs ``../shared/bench/peers/run_all.py`` with deskline's two adapter rows
                     (``bench/fw_deskline.py`` through ``PEER_ADAPTER_PATH``), then measures the same
                     rows in process on an on-disk SQLite file and splits the model path's turn into
                     time inside ``ModelRouter.complete`` (litellm) and the desk's own time.
* ``critical_path``  a three-agent parallel plan under a simulated model (plan 400 ms, write 500 ms,
                     skills 50-300 ms) against plan + slowest skill + write, beside the eval suite's
                     loop mode (``deskline.evals.loop``) on the same profile.
* ``throughput``     sustained turns/s of the embedded default: one process on SQLite, 1/2/4 processes
                     sharing PostgreSQL; p50/p99; memory and event-log bytes per open conversation.
* ``cold_start``     ``deskline ask ... --json`` start to exit (hyperfine when installed).
* ``observability``  turn latency with metrics (DeskMetrics) and tracing (OpenTelemetry SDK, in-memory
                     exporter) on versus off.
* ``eventlog``       ``bench/eventlog.py``'s append and turn throughput on SQLite and PostgreSQL.

Every measurement runs in a fresh worker process (``run.py --worker NAME``), so globals (litellm's
provider map, the tracer, RSS) never leak between measurements. The machine is a shared 2-core VM:
each section records the load average and the whole machine's CPU use before/after, and each
timed phase its own CPU share (CPU time / wall). Writes ``bench/results/latest.json`` and
``latest.md`` and, after the peers section, ``docs/peers.svg``. A benchmark, not a test: it exits 0
whether or not a target is met (1 only if a section failed to run).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pgschema import drop_schema, pg_schema  # noqa: E402  (bench/ helper, found beside this script)

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # litellm never reaches the network
os.environ.setdefault("HF_HUB_OFFLINE", "1")

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PEERS = Path(os.environ.get("DESKLINE_PEERS_DIR", REPO.parent / "shared" / "bench" / "peers"))
RESULTS = HERE / "results"
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SECTIONS = ("peers", "critical_path", "throughput", "cold_start", "observability", "eventlog")
ASK_TEXT = "I was charged twice for invoice INV-1001"

# The targets (from the benchmark issue).
TARGET_MODEL_RATIO = 0.8  # model path median / fastest peer's median
TARGET_DEFAULT_RATIO = 0.05  # embedded default median / fastest peer's median
TARGET_CRITICAL = 1.05  # measured / (plan + slowest skill + write)
TARGET_SQLITE_TPS = 500.0
TARGET_COLD_S = 1.0

# The simulated model profile of the critical-path section.
PLAN_MS, WRITE_MS, SKILL_MS = 400.0, 500.0, (50.0, 300.0)


# ----------------------------------------------------------------------------------------- utils

def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile (as the peer harness computes it)."""
    s = sorted(values)
    k = max(0, -(-len(s) * p // 100) - 1)
    return s[int(k)]


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0)
    return sum(parts) - idle, sum(parts)


class LoadProbe:
    """Load average and whole-machine CPU use over a span of time."""

    def __init__(self) -> None:
        self.load_before = os.getloadavg()
        self.ticks = cpu_ticks()
        self.t0 = time.time()

    def done(self) -> dict[str, Any]:
        busy, total = cpu_ticks()
        d_busy, d_total = busy - self.ticks[0], total - self.ticks[1]
        return {"loadavg_before": [round(x, 2) for x in self.load_before],
                "loadavg_after": [round(x, 2) for x in os.getloadavg()],
                "machine_cpu_busy": round(d_busy / d_total, 3) if d_total else None,
                "seconds": round(time.time() - self.t0, 1)}


def machine_info() -> dict[str, Any]:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            mem = f"{int(f.readline().split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    commit = ""
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "deskline"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        commit += " (+uncommitted changes in deskline/)" if dirty else ""
    except (OSError, subprocess.SubprocessError):
        pass
    return {"python": platform.python_version(), "implementation": platform.python_implementation(),
            "platform": platform.platform(), "cpu": cpu, "cpus": os.cpu_count(), "memory": mem,
            "hostname": platform.node(), "deskline_commit": commit, "executable": sys.executable}


def worker_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DESKLINE_", "OTEL_", "OPENAI_", "ANTHROPIC_", "LITELLM_"))}
    env.update({"LITELLM_LOCAL_MODEL_COST_MAP": "True", "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore",
                "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


def run_worker(name: str, params: dict[str, Any], timeout: float = 1800, env: dict[str, str] | None = None) -> Any:
    """Run ``run.py --worker name`` in a fresh process; its last stdout line is its JSON result."""
    cmd = [sys.executable, str(HERE / "run.py"), "--worker", name, "--params", json.dumps(params)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env or worker_env(), cwd=str(REPO))
    if p.returncode != 0:
        raise RuntimeError(f"worker {name} failed (rc={p.returncode}): {p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def f0(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


def f1(x: float | None) -> str:
    return "-" if x is None else f"{x:,.1f}"


def f2(x: float | None) -> str:
    return "-" if x is None else f"{x:,.2f}"


def f3(x: float | None) -> str:
    return "-" if x is None else f"{x:,.3f}"


def target(name: str, value: float | None, op: str, limit: float, unit: str = "", note: str = "") -> dict[str, Any]:
    met = value is not None and (value <= limit if op == "<=" else value >= limit)
    return {"figure": name, "value": value, "op": op, "target": limit, "unit": unit, "met": met, "note": note}


def load_note(load: dict[str, Any]) -> str:
    return (f"load {load['loadavg_before'][0]:.2f}→{load['loadavg_after'][0]:.2f}, "
            f"machine CPU {100 * (load.get('machine_cpu_busy') or 0):.0f}% busy")


# ---------------------------------------------------------------------------------- shared desk code
# (used inside workers only; imports deskline lazily)

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

    from deskline.agents.registry import Registry, Skill, SkillCall

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
    return Registry(skills, {a: f"{a}.probe" for a in ("tech", "billing", "payment")})


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

    from deskline.agents.backend.memory import MemoryBackend
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
    desk = SupportDesk(store=SqlEventStore(make_engine(p.get("db", "sqlite://"))), backend=MemoryBackend(),
                       registry=registry, classifier=AlwaysAsk(load_classifier()), settings=Settings(),
                       models=models, cache=RouteCache(capacity=0))
    loop_desk = SupportDesk(store=SqlEventStore(make_engine("sqlite://")), backend=MemoryBackend(),
                            registry=registry, classifier=load_classifier(), settings=Settings())
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
    """Turn latency against the turn's position in its conversation (each turn loads and folds
    the whole history): ``conversations`` conversations of ``turns`` turns, median per position."""
    from deskline.config import Settings
    from deskline.runtime import open_desk

    desk = open_desk(Settings(database_url=p["db"]))
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

def section_peers(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    out_dir = tmp / "peers_results"
    venv = Path(sys.executable).parent.parent
    extra = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    # the import-time column: with a --snapshot, import that (run_all.py drops PYTHONPATH for its children)
    stmt = "".join(f"import sys; sys.path.insert(0, {p!r}); " for p in reversed(extra)) + "import deskline"
    cmd = [sys.executable, str(PEERS / "run_all.py"), "--out-dir", str(out_dir),
           "--add", f"deskline={venv}:{stmt}", "--add", f"deskline_default={venv}:{stmt}"]
    if args.quick:
        cmd.append("--quick")
    # a --snapshot is on PYTHONPATH, which run_all.py drops for its children: pass it as an adapter path too
    env = dict(os.environ, PEER_ADAPTER_PATH=os.pathsep.join([str(HERE), *extra]))
    env.pop("DESKLINE_BENCH_DB", None)
    env.pop("DESKLINE_BENCH_MODE", None)
    log("   " + " ".join(cmd[1:]))
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=3600)
    for line in proc.stdout.splitlines():
        if line.startswith(("== ", "   import", "note:", "WARNING")):
            log("   " + line)
    if not (out_dir / "latest.json").exists():
        raise RuntimeError(f"run_all.py wrote no results (rc={proc.returncode}): {proc.stdout[-3000:]}")
    doc = json.loads((out_dir / "latest.json").read_text())
    rows: dict[str, dict[str, Any]] = {}
    for r in doc["results"]:
        if "error" in r:
            rows[r["framework"]] = {"error": r["error"]}
            continue
        s, c = r["sequential"], r["concurrent"]
        fs = r.get("fanout_sequential") or {}
        rows[r["framework"]] = {
            "version": r.get("version") or f"py{r['python']}", "median_us": s["median_us"], "p99_us": s["p99_us"],
            "cpu_us_per_turn": s["cpu_us_per_turn"], "best_block_median_us": s["best_block_median_us"],
            "turns_per_s_at_50": c["turns_per_s"], "fanout_median_us": fs.get("median_us"),
            "model_calls_per_turn": s["model_per_turn"], "import_s": r["import"]["import_s"],
            "peak_rss_mib": r["peak_rss_mib"],
            "cpu_share_min": min(r[k]["cpu_share"] for k in ("sequential", "concurrent", "fanout_sequential",
                                                              "fanout_concurrent") if r.get(k)),
            "loadavg": [r["loadavg_start"][0], r["loadavg_end"][0]],
            "inprocess_baseline_us": r.get("calibration_baseline_median_us")}
    peers = {k: v for k, v in rows.items()
             if k not in ("baseline", "deskline", "deskline_default") and "error" not in v}
    if not peers:
        raise RuntimeError(f"no peer row ran: {rows}")
    fastest = min(peers, key=lambda k: peers[k]["median_us"])
    fastest_cpu = min(peers, key=lambda k: peers[k]["cpu_us_per_turn"])
    for r in rows.values():
        if "error" not in r:
            r["x_fastest_median"] = r["median_us"] / peers[fastest]["median_us"]
            r["x_fastest_cpu"] = r["cpu_us_per_turn"] / peers[fastest_cpu]["cpu_us_per_turn"]
    # in process: on-disk SQLite next to in-memory, and the model path's split
    inproc: dict[str, Any] = {}
    n = 300 if args.quick else 2000
    for mode in ("model", "default"):
        for label, db in (("memory", "sqlite://"), ("file", f"sqlite:///{tmp}/peers-{mode}.db")):
            log(f"   in-process {mode} on {label} SQLite ({n} turns)")
            inproc[f"{mode}/{label}"] = run_worker("peers_inproc", {"mode": mode, "db": db, "turns": n,
                                                                     "warmup": 100 if args.quick else 300})
    ref = peers[fastest]["median_us"]
    for v in inproc.values():
        v["x_fastest_median"] = v["plain"]["median_us"] / ref
    targets = []
    for row, mode, limit in (("deskline", "model", TARGET_MODEL_RATIO),
                             ("deskline_default", "default", TARGET_DEFAULT_RATIO)):
        r = rows.get(row, {})
        if "x_fastest_median" in r:
            value, note = r["x_fastest_median"], f"{f0(r['median_us'])} µs vs {f0(ref)} µs (peer harness row)"
        else:  # the harness row failed (e.g. a wrong answer): the in-process figure, said so
            v = inproc[f"{mode}/memory"]
            value = v["x_fastest_median"]
            note = (f"{f0(v['plain']['median_us'])} µs vs {f0(ref)} µs: IN-PROCESS figure, the harness row failed "
                    f"({r.get('error', 'missing')[:90]})")
        targets.append(target(f"{row}: median / fastest peer ({fastest}) median, in-memory SQLite", value, "<=",
                              limit, "×", note=note))
    for key, v in inproc.items():
        if key.endswith("/memory") and v["plain"].get("wrong_answers"):
            targets[-1 if key.startswith("default") else 0]["note"] += (
                f"; {v['plain']['wrong_answers']}/{v['plain']['n']} wrong answers in process ({key}): "
                + "; ".join(v["plain"]["wrong_examples"]))
    plot_rows = dict(rows)
    for row, mode in (("deskline", "model"), ("deskline_default", "default")):
        if "median_us" not in rows.get(row, {}):
            v = inproc[f"{mode}/memory"]["plain"]
            plot_rows[f"{row} (in-process)"] = {"median_us": v["median_us"], "p99_us": v["p99_us"],
                                                 "model_calls_per_turn": v["model_calls_per_turn"],
                                                 "x_fastest_median": v["median_us"] / ref}
    svg = None
    try:
        if args.no_write:
            raise RuntimeError("--no-write: docs/peers.svg left as it is")
        sys.path.insert(0, str(HERE))
        import plot

        svg_path = REPO / "docs" / "peers.svg"
        svg_path.parent.mkdir(exist_ok=True)
        svg_path.write_text(plot.peers_svg(plot_rows, fastest, title_note=f"{doc['generated_utc']}, "
                                           f"load {rows[fastest]['loadavg'][0]:.2f}"), encoding="utf-8")
        svg = str(svg_path.relative_to(REPO))
    except Exception as exc:  # the figures matter more than the picture
        log(f"   plot failed: {exc}")
    return {"fastest_peer": fastest, "fastest_peer_by_cpu": fastest_cpu, "rows": rows, "inprocess": inproc,
            "plot_rows": plot_rows,
            "peer_table_md": doc.get("table_md"), "peer_params": doc.get("params"), "svg": svg,
            "targets": targets}


def tables_peers(s: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for name, r in sorted(s["rows"].items(), key=lambda kv: kv[1].get("median_us", 1e18)):
        if "error" in r:
            rows.append([name, "ERROR", r["error"][:60], "", "", "", "", "", ""])
            continue
        rows.append([name + (" *" if name.startswith("deskline") else ""), r["version"], f0(r["median_us"]),
                     f0(r["p99_us"]), f0(r["cpu_us_per_turn"]), f"{r['x_fastest_median']:.3f}",
                     f0(r["turns_per_s_at_50"]), f"{r['model_calls_per_turn']:g}", f2(r["cpu_share_min"])])
    t1 = {"title": f"peers: one triage→specialist→tool→answer turn, instant fake model (× = / {s['fastest_peer']})",
          "columns": ["framework", "version", "median µs/turn", "p99 µs", "CPU µs/turn", "× fastest peer",
                      "turns/s @50", "model calls/turn", "CPU share (min)"], "rows": rows}
    rows2 = []
    for key, v in s["inprocess"].items():
        mode, db = key.split("/")
        pl = v["plain"]
        sp = v.get("split") or {}
        by = v.get("router_bypassed") or {}
        rows2.append([("deskline" if mode == "model" else "deskline_default"), f"SQLite {db}", f0(pl["median_us"]),
                      f0(pl["p99_us"]), f0(pl["cpu_us_per_turn"]), f"{v['x_fastest_median']:.3f}",
                      f0(sp.get("inside_complete_us_per_turn")) if sp else "0 (no model)",
                      (f"{f0(sp['desk_own_us_per_turn'])} ({100 * sp['desk_own_share']:.0f}%)" if sp else "100%"),
                      f0(by.get("median_us")) if by else "-", f2(pl["cpu_share"])])
    t2 = {"title": "peers, in process: on-disk SQLite and the desk's own share (time outside ModelRouter.complete)",
          "columns": ["row", "event log", "median µs", "p99 µs", "CPU µs", "× fastest peer",
                      "µs in litellm (Router+fake)", "desk's own µs (share)", "median µs, Router bypassed",
                      "CPU share"], "rows": rows2}
    rows3 = []
    for key, v in s["inprocess"].items():
        b = v.get("breakdown")
        if not b:
            continue
        turn = b["turn_us"]
        cells = [f"{f0(b.get(k + '_us', 0))} ({100 * b.get(k + '_us', 0) / turn:.0f}%)"
                 for k in ("strategy", "triage", "operation", "writer", "store_append", "rest")]
        rows3.append([("deskline" if key.startswith("model") else "deskline_default"), key.split("/")[1],
                      f0(turn), *cells])
    t3 = {"title": "where a turn's time goes (mean µs per turn, the desk's own layer timings; triage and writer "
                   "include the model calls; rest = load + fold + bookkeeping)",
          "columns": ["row", "event log", "turn µs", "strategy", "triage", "operation", "writer",
                      "store appends", "rest"], "rows": rows3}
    return [t1, t2, t3]


def section_critical_path(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    r = run_worker("critical_path", {"turns": 3 if args.quick else 8})
    r["targets"] = [
        target("three-agent parallel turn: measured / (plan + slowest skill + write), worst turn", r["ratio_max"],
               "<=", TARGET_CRITICAL, "×", note=f"median {r['ratio_median']:.3f}; {len(r['turns'])} turns")]
    return r


def tables_critical_path(s: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for t in s["turns"]:
        sk = t["skills_ms"]
        rows.append([f"{sk['tech']:.0f}/{sk['billing']:.0f}/{sk['payment']:.0f}", f0(t["bound_ms"]),
                     f0(t["measured_ms"]), f"{t['ratio']:.3f}", f1(t["overhead_ms"]),
                     f"{t['plan_mode']}, {t['steps']} steps, {t['llm_calls']} calls",
                     f"{f0(t['loop_tools_ms'])} ({t['loop_tools_calls']} calls)",
                     f"{f0(t['loop_handoffs_ms'])} ({t['loop_handoffs_calls']} calls)"])
    return [{"title": f"critical path: simulated model (plan {PLAN_MS:.0f} ms, write {WRITE_MS:.0f} ms), skills "
                      f"{SKILL_MS[0]:.0f}-{SKILL_MS[1]:.0f} ms, parallel plan of 3 agents",
             "columns": ["skills ms (tech/billing/payment)", "plan+max skill+write ms", "desk ms", "ratio",
                         "overhead ms", "plan", "eval loop: skills as tools ms", "eval loop: triage hands off ms"],
             "rows": rows}]


def section_throughput(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    seconds = 3.0 if args.quick else 12.0
    out: dict[str, Any] = {"seconds_per_run": seconds}
    log(f"   SQLite file, 1 process, {seconds:.0f} s")
    ticks = cpu_ticks()
    out["sqlite_1proc"] = run_worker("tp_sqlite", {"db": f"sqlite:///{tmp}/tp.db", "seconds": seconds})
    busy, total = cpu_ticks()
    out["sqlite_1proc"]["machine_cpu_busy"] = round((busy - ticks[0]) / max(1, total - ticks[1]), 3)
    if not args.no_postgres:
        out["postgresql"] = {}
        for nproc in (1, 2, 4):
            log(f"   PostgreSQL, {nproc} process(es), {seconds:.0f} s")
            out["postgresql"][str(nproc)] = pg_processes(args.postgres, nproc, seconds)
    log("   latency against conversation length (SQLite file)")
    out["length"] = run_worker("length", {"db": f"sqlite:///{tmp}/len.db", "conversations": 5 if args.quick else 20,
                                          "turns": 20 if args.quick else 40})
    n = 1000 if args.quick else 10000
    out["memory"] = {}
    for store in ("sqlite-file", "memory"):
        log(f"   memory per open conversation: {n} conversations x 2 turns, {store} store")
        out["memory"][store] = run_worker("memory", {"store": store, "n": n, "db": f"sqlite:///{tmp}/mem-{store}.db"})
    out["targets"] = [target("embedded default, 1 process, SQLite file: sustained turns/s",
                             out["sqlite_1proc"]["turns_per_s"], ">=", TARGET_SQLITE_TPS, "turns/s",
                             note=f"p50 {out['sqlite_1proc']['p50_ms']:.2f} ms, "
                                  f"p99 {out['sqlite_1proc']['p99_ms']:.2f} ms; "
                                  f"CPU share {out['sqlite_1proc']['cpu_share']:.2f}, "
                                  f"{out['sqlite_1proc']['turns_per_cpu_s']:.0f} turns per CPU-second")]
    return out


def pg_processes(base_url: str, nproc: int, seconds: float) -> dict[str, Any]:
    url, schema = pg_schema(base_url)
    procs: list[subprocess.Popen[str]] = []
    try:
        for k in range(nproc):  # one after another, so the schema and the demo data are set up once
            cmd = [sys.executable, str(HERE / "run.py"), "--worker", "tp_pg_proc", "--params",
                   json.dumps({"db": url, "seconds": seconds, "k": k})]
            pr = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, env=worker_env(), cwd=str(REPO))
            procs.append(pr)
            line = pr.stdout.readline()  # type: ignore[union-attr]
            while line and line.strip() != "READY":
                line = pr.stdout.readline()  # type: ignore[union-attr]
            if not line:
                raise RuntimeError(f"PostgreSQL worker {k} did not start: {pr.stderr.read()[-2000:]}")  # type: ignore[union-attr]
        ticks = cpu_ticks()
        for pr in procs:
            pr.stdin.write("GO\n")  # type: ignore[union-attr]
            pr.stdin.flush()  # type: ignore[union-attr]
        results = []
        for pr in procs:
            stdout, stderr = pr.communicate(timeout=seconds * 10 + 120)
            if pr.returncode != 0:
                raise RuntimeError(f"PostgreSQL worker failed: {stderr[-2000:]}")
            results.append(json.loads(stdout.strip().splitlines()[-1]))
        busy, total = cpu_ticks()
    finally:
        for pr in procs:
            if pr.poll() is None:
                pr.kill()
        drop_schema(base_url, schema)
    lat = [x for r in results for x in r["latencies_ms"]]
    turns = sum(r["turns"] for r in results)
    wall = max(r["seconds"] for r in results)
    return {"processes": nproc, "turns": turns, "turns_per_s": turns / wall, "p50_ms": statistics.median(lat),
            "p99_ms": pct(lat, 99), "per_process_turns_per_s": [round(r["turns_per_s"], 1) for r in results],
            "cpu_share_per_process": [round(r["cpu_share"], 2) for r in results],
            "machine_cpu_busy": round((busy - ticks[0]) / max(1, total - ticks[1]), 3)}


def tables_throughput(s: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    sq = s["sqlite_1proc"]
    rows.append(["SQLite file (WAL)", "1", f0(sq["turns_per_s"]), f0(sq.get("turns_per_cpu_s")), f2(sq["p50_ms"]),
                 f2(sq["p99_ms"]), f"{sq['turns']:,}", f2(sq["cpu_share"]),
                 f"{100 * sq['machine_cpu_busy']:.0f}%" if sq.get("machine_cpu_busy") is not None else "-"])
    for n, r in (s.get("postgresql") or {}).items():
        rows.append(["PostgreSQL, one schema", n, f0(r["turns_per_s"]), "-", f2(r["p50_ms"]), f2(r["p99_ms"]),
                     f"{r['turns']:,}", "/".join(f"{x:.2f}" for x in r["cpu_share_per_process"]),
                     f"{100 * r['machine_cpu_busy']:.0f}%"])
    t1 = {"title": f"throughput: embedded default (classifier + templates), sequential turns per process, "
                   f"{s['seconds_per_run']:.0f} s each",
          "columns": ["event log", "processes", "turns/s", "turns per CPU-second", "p50 ms", "p99 ms", "turns",
                      "CPU share/process", "machine CPU busy"], "rows": rows}
    rows2 = []
    for store, m in s["memory"].items():
        rows2.append([store, f"{m['conversations']:,}", f1(m["rss_kib_per_conversation"]),
                      f"{m['rss_before_mib']:.0f}→{m['rss_after_mib']:.0f}", f1(m["events_per_conversation"]),
                      f0(m["event_json_bytes_per_conversation"]),
                      f0(m.get("disk_growth_bytes_per_conversation"))])
    t2 = {"title": "memory per open conversation (2 turns each)",
          "columns": ["store", "conversations", "RSS KiB/conversation", "RSS MiB before→after", "events/conv.",
                      "event JSON bytes/conv.", "SQLite file bytes/conv."], "rows": rows2}
    ln = s.get("length")
    if not ln:
        return [t1, t2]
    marks = ln["median_ms_at_turn"]
    t3 = {"title": f"turn latency against the turn's position in its conversation (SQLite file, "
                   f"{ln['conversations']} conversations, billing/tech/payment messages)",
          "columns": ["turn #", *marks.keys()], "rows": [["median ms", *[f2(v) for v in marks.values()]]]}
    return [t1, t3, t2]


def section_cold_start(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    exe = Path(sys.executable).parent / "deskline"
    if not exe.exists():
        raise RuntimeError(f"{exe} not found: install the project into this virtualenv")
    runs = 5 if args.quick else 10
    db = tmp / "cold" / "cold.db"
    db.parent.mkdir(exist_ok=True)
    env = worker_env(DESKLINE_DATABASE_URL=f"sqlite:///{db}")
    check = subprocess.run([str(exe), "ask", ASK_TEXT, "--json"], env=env, capture_output=True, text=True,
                           cwd=str(db.parent), timeout=120)
    answer = json.loads(check.stdout.strip().splitlines()[-1])
    out: dict[str, Any] = {"command": f"deskline ask {json.dumps(ASK_TEXT)} --json", "runs": runs,
                           "answer": {k: answer.get(k) for k in ("department", "mode", "reply", "llm_calls")}}
    hf = shutil.which("hyperfine")
    for label, fresh in (("fresh SQLite file", True), ("existing SQLite file", False)):
        if hf:
            js = tmp / f"hf-{fresh}.json"
            cmd = [hf, "--runs", str(runs), "--warmup", "1", "--export-json", str(js), "--style", "none"]
            if fresh:
                cmd += ["--prepare", f"rm -f {db} {db}-wal {db}-shm"]
            cmd.append(f"{exe} ask {json.dumps(ASK_TEXT)} --json")
            subprocess.run(cmd, env=env, cwd=str(db.parent), check=True, capture_output=True, timeout=600)
            times = json.loads(js.read_text())["results"][0]["times"]
            tool = "hyperfine"
        else:
            times = []
            for _ in range(runs + 1):
                if fresh:
                    for f in db.parent.glob("cold.db*"):
                        f.unlink()
                t0 = time.perf_counter()
                subprocess.run([str(exe), "ask", ASK_TEXT, "--json"], env=env, cwd=str(db.parent), check=True,
                               capture_output=True, timeout=120)
                times.append(time.perf_counter() - t0)
            times = times[1:]
            tool = "subprocess timing"
        out[label] = {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
                      "times_s": times, "tool": tool}
    py = subprocess.run(["hyperfine", "--runs", str(runs), "--warmup", "1", "--style", "none", "--export-json",
                         str(tmp / "py.json"), f"{sys.executable} -c pass"], capture_output=True,
                        timeout=300) if hf else None
    if py is not None and py.returncode == 0:
        out["python_bare_s"] = statistics.median(json.loads((tmp / "py.json").read_text())["results"][0]["times"])
    first = out["fresh SQLite file"]
    out["targets"] = [target("cold start: `deskline ask` on a fresh SQLite file, start to exit (median)",
                             first["median_s"], "<=", TARGET_COLD_S, "s", note=f"min {first['min_s']:.3f} s")]
    return out


def tables_cold_start(s: dict[str, Any]) -> list[dict[str, Any]]:
    labels = ("fresh SQLite file", "existing SQLite file")
    rows = [[label, f3(s[label]["median_s"]), f3(s[label]["min_s"]), f3(s[label]["max_s"]),
             str(len(s[label]["times_s"])), s[label]["tool"]] for label in labels]
    if "python_bare_s" in s:
        rows.append(["(bare `python -c pass`)", f3(s["python_bare_s"]), "", "", "", "hyperfine"])
    return [{"title": f"cold start: {s['command']}  →  {s['answer']['department']}, {s['answer']['mode']}",
             "columns": ["database", "median s", "min s", "max s", "runs", "tool"], "rows": rows}]


def section_observability(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mode in ("default", "model"):
        log(f"   {mode} path")
        out[mode] = run_worker("observability", {"mode": mode, "blocks": 4 if args.quick else 10,
                                                 "per_block": 100 if args.quick else 300, "warmup": 50})
    out["targets"] = []
    return out


def tables_observability(s: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for mode in ("default", "model"):
        for name, r in s[mode]["configs"].items():
            rows.append([("deskline_default" if mode == "default" else "deskline (model path)"), name,
                         f0(r["median_us"]), f0(r["p99_us"]), f"{r['overhead_us']:+,.0f} ({r['overhead_pct']:+.1f}%)",
                         f0(r["cpu_us_per_turn"]), f"{r['cpu_overhead_us']:+,.0f} ({r['cpu_overhead_pct']:+.1f}%)",
                         f"{r['spans_per_turn']:.1f}"])
    return [{"title": "observability: DeskMetrics observer and an OpenTelemetry SDK tracer (SimpleSpanProcessor, "
                      "in-memory exporter) on vs off, blocks interleaved, in-memory SQLite",
             "columns": ["row", "config", "median µs", "p99 µs", "Δ median", "CPU µs/turn", "Δ CPU", "spans/turn"],
             "rows": rows}]


def section_eventlog(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    targets = {"sqlite-memory": "sqlite://", "sqlite-file": "sqlite:///unused"}
    out: dict[str, Any] = {}
    schema = None
    if not args.no_postgres:
        url, schema = pg_schema(args.postgres)
        targets["postgresql"] = url
    params = {"conversations": 20 if args.quick else 50, "append_turns": 10 if args.quick else 20,
              "turns": 300 if args.quick else 1000, "tmp": str(tmp)}
    try:
        for name, url in targets.items():
            log(f"   {name}")
            out[name] = run_worker("eventlog", {**params, "name": name, "url": url})
    finally:
        if schema:
            drop_schema(args.postgres, schema)
    return {"results": out, "params": params, "targets": []}


def tables_eventlog(s: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for name, r in s["results"].items():
        a, t = r["append"], r["turns"]
        rows.append([name, f"{a['events_per_s']:,}", f"{a['appends_per_s']:,}", f"{t['turns_per_s']:,}",
                     f2(t["p50_ms"]), f2(t["p99_ms"]), f2(t.get("cpu_share"))])
    return [{"title": "event log (bench/eventlog.py): appends of 8 events, and whole turns (embedded default)",
             "columns": ["database", "events/s", "appends/s", "turns/s", "p50 ms", "p99 ms", "CPU share"],
             "rows": rows}]


SECTION_FUNCS = {"peers": (section_peers, tables_peers), "critical_path": (section_critical_path, tables_critical_path),
                 "throughput": (section_throughput, tables_throughput),
                 "cold_start": (section_cold_start, tables_cold_start),
                 "observability": (section_observability, tables_observability),
                 "eventlog": (section_eventlog, tables_eventlog)}


# ------------------------------------------------------------------------------------------- output

def md_table(columns: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(columns, *rows, strict=True)]
    lines = ["| " + " | ".join(str(h).ljust(w) for h, w in zip(columns, widths, strict=True)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)) + " |" for row in rows]
    return "\n".join(lines)


def targets_table(doc: dict[str, Any]) -> dict[str, Any]:
    rows = []
    for name, s in doc["sections"].items():
        if "error" in s:
            rows.append([name, "section failed", s["error"][:80], "", "NO", ""])
            continue
        for t in s.get("targets", []):
            v = t["value"]
            value = "-" if v is None else (f"{v:.3f}" if abs(v) < 10 else f"{v:,.0f}")
            rows.append([name, t["figure"], f"{value} {t['unit']}".strip(),
                         f"{t['op']} {t['target']:g} {t['unit']}".strip(), "yes" if t["met"] else "NO",
                         (t.get("note") or "") + "; " + load_note(s["load"])])
    return {"title": "targets", "columns": ["section", "figure", "measured", "target", "met", "note"], "rows": rows}


def print_tables(tables: list[dict[str, Any]], stream: Any) -> None:
    try:
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table
        from rich.text import Text

        console = Console(file=stream, width=200)
        for t in tables:  # Text cells: a reply like "[billing] ..." is not rich markup
            table = Table(*[escape(c) for c in t["columns"]], title=Text(t["title"]), title_justify="left")
            for row in t["rows"]:
                table.add_row(*[Text(str(x)) for x in row])
            console.print(table)
    except ImportError:
        for t in tables:
            print(f"\n{t['title']}\n\n{md_table(t['columns'], t['rows'])}", file=stream)


def markdown(doc: dict[str, Any], tables: list[dict[str, Any]]) -> str:
    m = doc["machine"]
    head = (f"# deskline benchmarks ({doc['generated_utc']}{', --quick' if doc['quick'] else ''})\n\n"
            f"Machine: {m['cpu']}, {m['cpus']} CPUs, {m['memory']}, {m['platform']}, Python {m['python']}; "
            f"deskline {m['deskline_commit']}. Load average {doc['loadavg_before'][0]:.2f} before, "
            f"{doc['loadavg_after'][0]:.2f} after; {doc['total_seconds']:.0f} s in all.\n")
    parts = [head]
    for t in tables:
        parts.append(f"### {t['title']}\n\n{md_table(t['columns'], t['rows'])}\n")
    return "\n".join(parts)


def snapshot(ref: str, dest: Path) -> str:
    """The ``deskline`` package as committed at ``ref``, extracted into ``dest`` (``git archive``: the
    working tree is not touched), put first on every worker's path; returns the commit measured."""
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", ref], capture_output=True, text=True,
                            check=True).stdout.strip()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref, "deskline"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(dest) + (os.pathsep + old if old else "")
    return commit


def run_sections(args: argparse.Namespace) -> int:
    only = [s.strip() for s in args.only.split(",")] if args.only else list(SECTIONS)
    unknown = set(only) - set(SECTIONS)
    if unknown:
        sys.exit(f"unknown section(s): {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}")
    started = time.perf_counter()
    doc: dict[str, Any] = {"generated_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                           "command": " ".join(["python", "bench/run.py", *sys.argv[1:]]), "quick": args.quick,
                           "machine": machine_info(), "loadavg_before": [round(x, 2) for x in os.getloadavg()],
                           "sections": {}}
    stream = sys.stderr if args.json else sys.stdout
    all_tables: list[dict[str, Any]] = []
    failed = False
    with tempfile.TemporaryDirectory(prefix="deskline-bench-") as tmpdir:
        if args.snapshot:
            src = Path(tmpdir) / "src"
            src.mkdir()
            doc["machine"]["deskline_commit"] = snapshot(args.snapshot, src) + f" (snapshot of {args.snapshot})"
            log(f"measuring deskline as committed at {doc['machine']['deskline_commit']}")
        for name in SECTIONS:
            if name not in only:
                continue
            log(f"== {name} (load {os.getloadavg()[0]:.2f})")
            probe = LoadProbe()
            sec_tmp = Path(tmpdir) / name
            sec_tmp.mkdir()
            func, tabler = SECTION_FUNCS[name]
            try:
                result = func(args, sec_tmp)
                result["load"] = probe.done()
                tables = tabler(result)
                for t in tables:
                    t["title"] += f"  [{load_note(result['load'])}]"
            except Exception as exc:
                failed = True
                traceback.print_exc(file=sys.stderr)
                result = {"error": f"{type(exc).__name__}: {exc}", "load": probe.done(), "targets": []}
                tables = [{"title": f"{name}: FAILED", "columns": ["error"], "rows": [[result["error"][:300]]]}]
            doc["sections"][name] = result
            all_tables.extend(tables)
            print_tables(tables, stream)
    doc["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    doc["total_seconds"] = round(time.perf_counter() - started, 1)
    summary = targets_table(doc)
    doc["targets"] = [dict(t, section=n) for n, s in doc["sections"].items() for t in s.get("targets", [])]
    doc["all_targets_met"] = all(t["met"] for t in doc["targets"]) and not failed
    all_tables.append(summary)
    print_tables([summary], stream)
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "latest.json").write_text(json.dumps(doc, indent=2, default=str) + "\n", encoding="utf-8")
        (RESULTS / "latest.md").write_text(markdown(doc, all_tables), encoding="utf-8")
        log(f"wrote {RESULTS / 'latest.json'} and latest.md ({doc['total_seconds']:.0f} s)")
    if args.json:
        print(json.dumps(doc, indent=2, default=str))
    return 1 if failed else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout (tables go to stderr)")
    ap.add_argument("--quick", action="store_true", help="smoke version with small sizes (~2-3 min)")
    ap.add_argument("--only", help=f"comma-separated sections: {','.join(SECTIONS)}")
    ap.add_argument("--postgres", default=os.environ.get("DESKLINE_TEST_POSTGRES_URL", DEFAULT_PG))
    ap.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL measurements")
    ap.add_argument("--no-write", action="store_true", help="do not write bench/results/ or docs/peers.svg")
    ap.add_argument("--snapshot", metavar="REF", help="measure deskline as committed at REF (e.g. HEAD), extracted "
                    "with git archive into a temp dir, instead of the working tree (which may be mid-edit)")
    ap.add_argument("--profile", choices=("default", "model"), help="profile N turns of a path and exit")
    ap.add_argument("--profile-turns", type=int, default=2000)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--params", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker_main(args.worker, json.loads(args.params or "{}"))
        return 0
    if args.profile:
        print(run_worker("profile", {"mode": args.profile, "turns": args.profile_turns})["text"])
        return 0
    return run_sections(args)


if __name__ == "__main__":
    sys.exit(main())
