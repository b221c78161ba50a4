"""What litellm costs per call, and what each of the desk's levers on it saves
(``deskline/routing/models.py``'s docstring says what each lever is).

    python bench/litellm_router.py                  # every variant, 3 rounds, 1,500 calls each
    python bench/litellm_router.py --calls 3000 --rounds 5
    python bench/litellm_router.py --only http      # or: inproc

Each variant runs ``ModelRouter.complete`` (one model call as the desk makes it, a tool offered)
in its own process, the variants taking turns round after round so the load of a shared machine
falls on all of them; the figures are the median over rounds of each round's median µs per call
and CPU µs per call (the latter counts litellm's background logging work, which wall time can miss):

* ``inproc``: an instant in-process ``CustomLLM`` (``local/``): litellm's own cost, no I/O.
  ``before`` (prices in ``litellm_params``, litellm's success logging, the thread hop), then the
  levers one by one, cumulatively: ``+model_info``, ``+inline``. (Skipping litellm's success
  logging with its internal-call flag, was dropped: the flag skips
  the failure handler too, which feeds the Router's cooldowns.)
* ``http``: the project's fake OpenAI-compatible server on loopback, in its own process (its default
  brain answers the tool-offering request with a tool call): ``openai/`` before and with
  the levers, ``hosted_vllm/`` with the levers, and the plain ``openai`` client for reference.

Prints one JSON object, and a table on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # litellm never reaches the network
os.environ.setdefault("HF_HUB_OFFLINE", "1")

PRICES = {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}
INPROC = ("before", "+model_info", "+inline")
HTTP = ("openai/ before", "openai/ levers", "hosted_vllm/ levers", "plain openai client")
TOOL = {"type": "function", "function": {"name": "lookup", "description": "Look a record up",
                                         "parameters": {"type": "object", "properties": {"id": {"type": "string"}}}}}
REQUEST = {"messages": [{"role": "system", "content": "You route support messages."},
                        {"role": "user", "content": "where is my invoice INV-1001"}], "tools": [TOOL]}


def _router(model: str, api_base: str | None, levers: set[str]) -> Any:
    """The desk's ``ModelRouter`` on one deployment, with only ``levers`` pulled."""
    import litellm

    from deskline.routing.llm_config import ModelsFile
    from deskline.routing.models import ModelRouter

    params: dict[str, Any] = {"model": model, "timeout": 10, **PRICES}
    if api_base:
        params.update(api_base=api_base, api_key="x")
    config = ModelsFile.model_validate({"model_list": [{"model_name": "planner", "litellm_params": params}]})
    router = ModelRouter(config)
    if "model_info" not in levers:
        router.router = litellm.Router(model_list=config.model_list, num_retries=0)
    if "inline" not in levers:
        router._inline = set()
    return router


def _instant() -> None:
    import litellm
    from litellm import CustomLLM

    class Instant(CustomLLM):
        async def acompletion(self, model: str, messages: list[Any], *args: Any,  # type: ignore[override]
                              **kwargs: Any) -> Any:
            return litellm.ModelResponse(
                choices=[{"message": {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "c1", "type": "function",
                     "function": {"name": "lookup", "arguments": '{"id": "INV-1001"}'}}]},
                    "finish_reason": "tool_calls", "index": 0}],
                model=model, usage={"prompt_tokens": 50, "completion_tokens": 10, "total_tokens": 60})

    litellm.custom_provider_map = [{"provider": "local", "custom_handler": Instant()}]


async def _measure(call: Any, calls: int) -> dict[str, Any]:
    for _ in range(300):
        response = await call()
    samples = []
    c0 = time.process_time()
    for _ in range(calls):
        t0 = time.perf_counter_ns()
        await call()
        samples.append(time.perf_counter_ns() - t0)
    cpu = (time.process_time() - c0) / calls * 1e6
    await asyncio.sleep(0.05)  # let litellm's logging tasks of the last calls run
    hidden = getattr(response, "_hidden_params", {}) or {}
    return {"median_us": statistics.median(samples) / 1000, "cpu_us": cpu, "cost": hidden.get("response_cost")}


async def variant(name: str, calls: int) -> dict[str, Any]:
    """One variant's figures, in this process."""
    levers = {"before": set(), "+model_info": {"model_info"}}.get(name, {"model_info", "inline"})
    if name in INPROC:
        _instant()
        router = _router("local/instant", None, levers)
        return await _measure(lambda: router.complete("planner", "planner", REQUEST), calls)
    base_url = os.environ["BENCH_FAKE_URL"]
    if name == "plain openai client":
        import openai

        client = openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0)

        async def plain() -> Any:
            return await client.chat.completions.create(model="m", max_tokens=400, temperature=0.0,
                                                        tool_choice="auto", **REQUEST)  # type: ignore[call-overload]

        return await _measure(plain, calls)
    prefix = "hosted_vllm" if name.startswith("hosted_vllm") else "openai"
    router = _router(f"{prefix}/m", base_url, set() if "before" in name else levers)
    return await _measure(lambda: router.complete("planner", "planner", REQUEST), calls)


def _fake_server() -> tuple[subprocess.Popen[bytes], str]:
    """The project's fake OpenAI-compatible server in its own process (its threads must not
    share this process's GIL with the client being measured)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "deskline.testing.fake_openai", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the fake server did not start")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=1500)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", choices=("inproc", "http"))
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.variant:
        print(json.dumps(asyncio.run(variant(args.variant, args.calls))))
        return
    names = [*(INPROC if args.only != "http" else ()), *(HTTP if args.only != "inproc" else ())]
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    server, os.environ["BENCH_FAKE_URL"] = _fake_server()
    try:
        for _ in range(args.rounds):
            for name in names:
                out = subprocess.run([sys.executable, __file__, "--variant", name, "--calls", str(args.calls)],
                                     capture_output=True, text=True, check=True)
                runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    finally:
        server.terminate()
    result: dict[str, Any] = {"litellm": importlib.metadata.version("litellm"), "calls": args.calls,
                              "rounds": args.rounds, "loadavg": os.getloadavg()[0], "variants": {}}
    for name, rs in runs.items():
        result["variants"][name] = {"median_us": round(statistics.median(r["median_us"] for r in rs)),
                                    "cpu_us": round(statistics.median(r["cpu_us"] for r in rs)),
                                    "cost": rs[-1]["cost"]}
    for name, v in result["variants"].items():
        print(f"{name:22} median {v['median_us']:6,} µs   CPU {v['cpu_us']:6,} µs   cost {v['cost']}", file=sys.stderr)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
