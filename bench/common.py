"""What the benchmark sections share: paths, targets, the worker-process runner, machine facts
and formatting. The command is ``run.py``."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

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



def desk_with(skills: Any, defaults: dict[str, str]) -> Any:
    """The built-in desk with a benchmark's own skills (and each agent's default skill)."""
    import dataclasses

    from deskline.agents.builtin import desk as builtin

    agents = tuple(dataclasses.replace(a, default_skill=defaults[a.name]) for a in builtin.agents)
    return dataclasses.replace(builtin, skills=tuple(skills), agents=agents)
