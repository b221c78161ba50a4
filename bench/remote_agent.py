"""The extra latency of a remote skill call on loopback: the same skill run in process and through
an agent server (``deskline.agents.server`` under uvicorn, in its own process, on 127.0.0.1).

    python bench/remote_agent.py [--calls 500] [--skill billing.lookup_invoice] [--json]

Both sides run the skill through the operation layer (``Operator.run_step``: handoff checks,
parameters, timeout, the skill) on the same in-memory system of record, each call with a fresh
idempotency key (so the agent really runs it, never replays it). Prints the p50/p99 of each and
of the difference. A benchmark, not a test: it prints figures and asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import time
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import httpx

from deskline.agents.builtin import desk as builtin
from deskline.agents.builtin.backend.memory import MemoryBackend
from deskline.agents.remote import RemoteAgent
from deskline.handoffs.payload import Case, Constraints, Entities, Handoff
from deskline.handoffs.plan import PlanStep
from deskline.hierarchy.operation import Operator

TOKEN = "bench-token"
SERVER = """
import sys, uvicorn
from deskline.agents.builtin import desk
from deskline.agents.builtin.backend.memory import MemoryBackend
from deskline.agents.server import create_agent_app
app = create_agent_app(desk, token=sys.argv[2], agents=[sys.argv[3]], records=MemoryBackend())
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
"""


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(values)
    k = max(0, -(-len(s) * p // 100) - 1)
    return s[int(k)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def handoff(skill: str, agent: str, i: int, entities: Entities) -> Handoff:
    case = Case(conversation_id="bench", turn=i, customer_id="C-1001", intent="", department=agent,
                entities=entities, verified_age_s=0.0)
    return Handoff(step_id="s1", agent=agent, skill=skill, case=case, constraints=Constraints(),
                   idempotency_key=f"bench:{i}:s1")


async def timed(operator: Operator, skill: str, agent: str, calls: int, entities: Entities, offset: int) -> list[float]:
    step = PlanStep(step_id="s1", agent=agent, skill=skill)
    out: list[float] = []
    for i in range(calls):
        h = handoff(skill, agent, offset + i, entities)
        started = time.perf_counter()
        result, _ = await operator.run_step(step, h)
        out.append((time.perf_counter() - started) * 1000)
        assert result.status != "failed", result
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--skill", default="billing.lookup_invoice")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    skill = builtin.registry[args.skill]
    entities = Entities.of(invoice_id="INV-1001", payment_id="PAY-3002", charge_id="CH-2001")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port), TOKEN, skill.agent])
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("the agent server did not start")
        local = Operator(builtin.registry, MemoryBackend(), entities=frozenset(builtin.extractor.by_name))
        remote_desk = builtin.with_remote(**{skill.agent: RemoteAgent(url, token=TOKEN)})
        remote = Operator(remote_desk.registry, MemoryBackend(), entities=frozenset(builtin.extractor.by_name))

        async def run() -> tuple[list[float], list[float]]:
            await timed(local, skill.name, skill.agent, args.warmup, entities, 0)
            await timed(remote, skill.name, skill.agent, args.warmup, entities, 10_000)
            # Interleaved rounds, so a slow moment of the machine hits both sides alike.
            local_ms: list[float] = []
            remote_ms: list[float] = []
            rounds = 10
            for r in range(rounds):
                n = args.calls // rounds
                local_ms += await timed(local, skill.name, skill.agent, n, entities, 100_000 + r * n)
                remote_ms += await timed(remote, skill.name, skill.agent, n, entities, 200_000 + r * n)
            return local_ms, remote_ms

        local_ms, remote_ms = asyncio.run(run())
    finally:
        server.terminate()
        server.wait(10)
    report: dict[str, Any] = {
        "skill": skill.name, "calls": len(local_ms),
        "local_ms": {"p50": round(pct(local_ms, 50), 3), "p99": round(pct(local_ms, 99), 3)},
        "remote_ms": {"p50": round(pct(remote_ms, 50), 3), "p99": round(pct(remote_ms, 99), 3)},
        "extra_ms": {"p50": round(pct(remote_ms, 50) - pct(local_ms, 50), 3),
                     "p99": round(pct(remote_ms, 99) - pct(local_ms, 99), 3)},
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
    }
    if args.json:
        print(json.dumps(report))
        return
    print(f"remote skill call on loopback: {skill.name}, {report['calls']} calls each side "
          f"({report['machine']['cpus']} CPUs, Python {report['machine']['python']})")
    print(f"  {'':<8} {'p50 ms':>8} {'p99 ms':>8}")
    for name in ("local", "remote", "extra"):
        row = report[f"{name}_ms"]
        print(f"  {name:<8} {row['p50']:>8.3f} {row['p99']:>8.3f}")


if __name__ == "__main__":
    main()
