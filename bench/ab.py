"""What a change bought: the peer workload's turn, in process, for several commits side by side.

    python bench/ab.py 90489d2 HEAD              # embedded default and model path, 3 rounds
    python bench/ab.py --modes default --rounds 5 HEAD~3 HEAD~2 HEAD~1 HEAD

Each commit's ``deskline`` package is extracted with ``git archive`` (the working tree is not
touched) and measured in a fresh process with ``bench/fw_deskline.py``: 300 warm-up turns, then
blocks of 600 turns (the model path: 3 blocks, the default: 6), each block's median kept. Commits
are interleaved round by round, so a noisy minute of the machine hits all of them alike, and the
table shows the best block median of every round and the best of all. Prints the table on stderr
and one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PEERS = Path(os.environ.get("DESKLINE_PEERS_DIR", REPO.parent / "shared" / "bench" / "peers"))

MEASURE = """
import asyncio, os, sys, time
sys.path[:0] = [{peers!r}, {bench!r}]
os.environ["DESKLINE_BENCH_MODE"] = {mode!r}
import workload as W
import fw_deskline as F

async def main():
    await F.setup()
    texts = [m for m, *_ in W.MESSAGES]
    for i in range(300):
        await F.turn(texts[i % len(texts)])
    medians = []
    for _ in range({blocks}):
        samples = []
        for i in range(600):
            t0 = time.perf_counter_ns()
            await F.turn(texts[i % len(texts)])
            samples.append(time.perf_counter_ns() - t0)
        samples.sort()
        medians.append(samples[len(samples) // 2] / 1000)
    print(min(medians))

asyncio.run(main())
"""


def extract(ref: str, dest: Path) -> str:
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", ref], capture_output=True, text=True,
                            check=True).stdout.strip()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref, "deskline"], capture_output=True, check=True)
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return commit


def measure(src: Path, mode: str, cwd: Path) -> float:
    code = MEASURE.format(peers=str(PEERS), bench=str(HERE), mode=mode, blocks=3 if mode == "model" else 6)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DESKLINE_", "OTEL_", "OPENAI_"))}
    env.update({"PYTHONPATH": str(src), "LITELLM_LOCAL_MODEL_COST_MAP": "True", "HF_HUB_OFFLINE": "1",
                "PYTHONWARNINGS": "ignore"})
    # cwd is an empty folder: the working tree's deskline/ must not shadow the snapshot on sys.path
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=str(cwd),
                         timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"{src.name} {mode}: {out.stderr[-2000:]}")
    return float(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("refs", nargs="+", help="commits to compare, oldest first")
    ap.add_argument("--modes", default="default,model", help="default, model or both (comma-separated)")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    with tempfile.TemporaryDirectory(prefix="deskline-ab-") as tmp:
        root = Path(tmp)
        (root / "cwd").mkdir()
        commits = {ref: extract(ref, root / f"src{i}") for i, ref in enumerate(args.refs)}
        runs: dict[str, dict[str, list[float]]] = {ref: {m: [] for m in modes} for ref in args.refs}
        for rnd in range(1, args.rounds + 1):
            for i, ref in enumerate(args.refs):
                for mode in modes:
                    us = measure(root / f"src{i}", mode, root / "cwd")
                    runs[ref][mode].append(us)
                    print(f"round {rnd}: {commits[ref]} {mode} {us:,.0f} µs", file=sys.stderr, flush=True)
    first = args.refs[0]
    print(f"\n{'commit':<10}" + "".join(f"{m + ' best µs':>20}{'vs first':>10}" for m in modes), file=sys.stderr)
    for ref in args.refs:
        row = f"{commits[ref]:<10}"
        for mode in modes:
            best, base = min(runs[ref][mode]), min(runs[first][mode])
            row += f"{best:>20,.0f}{best / base:>9.2f}×"
        print(row, file=sys.stderr)
    print(json.dumps({"commits": {ref: commits[ref] for ref in args.refs}, "rounds": args.rounds,
                      "best_block_median_us": runs}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
