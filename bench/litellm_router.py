"""What litellm costs per call on its own: ``Router.acompletion`` and ``litellm.acompletion`` on an
instant in-process ``CustomLLM`` (no network, no desk), the floor under the desk's model path.

    python bench/litellm_router.py            # 2,000 calls each after 300 warm-up calls
    python bench/litellm_router.py --calls 5000

Prints one JSON object: median and p99 µs per call for each.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import os
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # litellm never reaches the network
os.environ.setdefault("HF_HUB_OFFLINE", "1")


async def measure(calls: int) -> dict[str, object]:
    import litellm
    from litellm import CustomLLM

    class Instant(CustomLLM):
        async def acompletion(self, model: str, messages: list, *args: object, **kwargs: object):  # type: ignore[no-untyped-def, override]
            return litellm.ModelResponse(
                choices=[{"message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop", "index": 0}],
                model=model, usage={"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6})

    litellm.custom_provider_map = [{"provider": "local", "custom_handler": Instant()}]
    litellm.utils.custom_llm_setup()
    litellm.suppress_debug_info = True
    router = litellm.Router(model_list=[{"model_name": "m", "litellm_params": {"model": "local/instant"}}],
                            num_retries=0)
    messages = [{"role": "user", "content": "hello"}]

    async def via_router() -> None:
        await router.acompletion(model="m", messages=messages, disable_fallbacks=True)

    async def direct() -> None:
        await litellm.acompletion(model="local/instant", messages=messages)

    out: dict[str, object] = {"litellm": importlib.metadata.version("litellm")}
    for name, call in (("router_acompletion", via_router), ("litellm_acompletion", direct)):
        for _ in range(300):
            await call()
        samples = []
        for _ in range(calls):
            t0 = time.perf_counter_ns()
            await call()
            samples.append(time.perf_counter_ns() - t0)
        samples.sort()
        out[name] = {"calls": calls, "median_us": round(samples[calls // 2] / 1000, 1),
                     "p99_us": round(samples[int(calls * 0.99)] / 1000, 1)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=2000)
    print(json.dumps(asyncio.run(measure(ap.parse_args().calls)), indent=1))


if __name__ == "__main__":
    main()
