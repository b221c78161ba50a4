"""Every model call the desk makes: one litellm Router, in process, walked under a turn budget.

``ModelRouter.call(role, request, parse, budget)`` tries the role's model group and then its
quality fallbacks (``router_settings.fallbacks``) one attempt at a time, so the turn's budget of
model calls counts what a provider really receives:

* quality fallback: an error, a rate limit, or output that ``parse`` rejects moves to the next
  group; latency fallback: a deployment past its ``timeout`` raises ``litellm.Timeout`` and moves
  on; cost fallback: a group whose estimated cost would pass the turn's or the conversation's cap
  is replaced by its ``deskline.cost_fallbacks`` group, or skipped.
* Every attempt, good or bad, is an ``Attempt`` the desk appends as a ``ModelCalled`` event, with
  the deployment that served it, tokens, cost (from the config's prices) and the raw output, so
  replay needs no model.
* When the chain or the budget runs out the caller gets ``None`` and falls back to the embedded
  default (local classifier, template writer).

litellm is imported only here, only when a models file is configured, and only after setting
``LITELLM_LOCAL_MODEL_COST_MAP`` and ``HF_HUB_OFFLINE`` so the import never reaches the network.

What a call costs inside litellm 1.83, and the levers pulled here (two of the three tried) (``bench/litellm_router.py``
measures each; ``tests/test_models.py`` pins the litellm internals each relies on):

* prices: with ``input_cost_per_token`` in ``litellm_params`` every ``completion()`` calls
  ``register_model()``, which drops the lowercase index of the 2,598-entry price map and so
  rebuilds it on the next lookup. The Router registers ``model_info`` prices once per
  deployment at start-up, and costs come out the same, so prices are moved there.
* success logging is NOT skipped: litellm's internal-call flag would skip it, but it skips the
  failure handler too, and the Router's cooldowns (shared through Redis between processes) are
  fed by that handler (tests/test_scaleout.py caught it).
* the thread hop: ``litellm.acompletion`` runs ``completion()``'s set-up in the loop's default
  executor, then awaits the coroutine it returns. For providers whose set-up does no blocking
  I/O (OpenAI-compatible HTTP, Anthropic, in-process ``CustomLLM``) that hop is pure cost, so the
  loop's default executor (only when the application set none) runs exactly that one call in line.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Generic, Protocol, TypeVar

from deskline.errors import BudgetExceeded
from deskline.routing.llm_config import ModelsFile, Role

T = TypeVar("T")


@dataclass(slots=True)
class Attempt:
    role: Role
    group: str
    deployment: str = ""
    ok: bool = False
    error: str = ""
    latency_ms: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    output: str = ""
    request_summary: str = ""
    fallbacks: tuple[str, ...] = ()


@dataclass(slots=True)
class TurnBudget:
    """Model calls and spend allowed this turn; a call past it raises ``BudgetExceeded``."""

    max_calls: int = 2
    max_cost_usd: Decimal = Decimal("0.05")
    conversation_spent_usd: Decimal = Decimal(0)
    conversation_cap_usd: Decimal = Decimal("1.00")
    calls: int = 0
    spent_usd: Decimal = Decimal(0)
    attempts: list[Attempt] = field(default_factory=list)
    deadline: float | None = None  # time.monotonic() by which the turn's model calls must be done
    skipped: set[str] = field(default_factory=set)  # groups that timed out this turn: not tried again

    def time_left(self) -> float:
        return float("inf") if self.deadline is None else self.deadline - time.monotonic()

    @property
    def remaining(self) -> int:
        return max(0, self.max_calls - self.calls)

    def affordable(self, estimate: Decimal) -> bool:
        return (self.spent_usd + estimate <= self.max_cost_usd
                and self.conversation_spent_usd + self.spent_usd + estimate <= self.conversation_cap_usd)

    def charge(self, attempt: Attempt) -> None:
        if self.calls >= self.max_calls:
            raise BudgetExceeded(f"this turn already made {self.calls} model calls (limit {self.max_calls})",
                                 calls=self.calls, limit=self.max_calls)
        self.calls += 1
        self.spent_usd += attempt.cost_usd
        self.attempts.append(attempt)


@dataclass(frozen=True, slots=True)
class Outcome(Generic[T]):
    value: T | None
    attempts: tuple[Attempt, ...]


# Provider prefixes whose ``completion()`` set-up is plain Python (params, a cached HTTP client):
# no credential refresh or file reads, so it can run on the event loop. Not bedrock, vertex_ai,
# sagemaker, ... whose set-up may fetch credentials.
INLINE_PROVIDERS = frozenset({"openai", "hosted_vllm", "anthropic", "ollama", "ollama_chat", "openrouter",
                              "groq", "deepseek", "mistral", "together_ai", "fireworks_ai", "local"})
PRICE_KEYS = ("input_cost_per_token", "output_cost_per_token", "input_cost_per_second", "output_cost_per_second",
              "cache_read_input_token_cost", "cache_creation_input_token_cost")
_INLINE: contextvars.ContextVar[bool] = contextvars.ContextVar("deskline_inline_completion", default=False)


def router_model_list(model_list: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The models file's deployments as the Router gets them: prices moved from ``litellm_params``
    to ``model_info`` (same costs, no ``register_model()`` on every call)."""
    out = []
    for deployment in model_list:
        params = dict(deployment.get("litellm_params") or {})
        prices = {k: params.pop(k) for k in PRICE_KEYS if k in params}
        if not prices:
            out.append(dict(deployment))
            continue
        out.append({**deployment, "litellm_params": params, "model_info": {**(deployment.get("model_info") or {}),
                                                                            **prices}})
    return out


def provider_of(deployment: dict[str, Any]) -> str:
    params = deployment.get("litellm_params") or {}
    model = str(params.get("model", ""))
    return str(params.get("custom_llm_provider") or (model.split("/", 1)[0] if "/" in model else ""))


class InlineCompletionExecutor(ThreadPoolExecutor):
    """A thread pool that runs litellm's ``completion()`` set-up in the calling thread when the
    desk asked for it (``_INLINE`` set in the calling task's context); every other job, and that
    one when not asked, goes to a thread as usual."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        if not (_INLINE.get() and _is_completion(fn)):
            return super().submit(fn, *args, **kwargs)
        _INLINE.set(False)  # one call: a later hop in the same task (a DNS lookup) keeps its thread
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # handed to the awaiting caller, as the pool would
            future.set_exception(exc)
        return future


def _is_completion(fn: Any) -> bool:
    """Whether ``fn`` is what ``litellm.acompletion`` hands its executor: ``partial(ctx.run,
    partial(litellm.main.completion, ...))``."""
    import litellm.main

    inner = fn.args[0] if isinstance(fn, functools.partial) and fn.args else None
    return isinstance(inner, functools.partial) and inner.func is litellm.main.completion


def install_inline_executor(loop: asyncio.AbstractEventLoop) -> bool:
    """Make the inline-capable pool ``loop``'s default executor, unless the application set its
    own (True when the loop's default executor is, now or already, one of ours)."""
    current = getattr(loop, "_default_executor", None)  # asyncio creates it lazily; None until then
    if isinstance(current, InlineCompletionExecutor):
        return True
    if current is not None:
        return False
    loop.set_default_executor(InlineCompletionExecutor(thread_name_prefix="asyncio"))
    return True


def _import_litellm() -> Any:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import litellm

    litellm.suppress_debug_info = True
    litellm.telemetry = False
    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    return litellm


class ModelGateway(Protocol):
    """What the desk needs from a model layer: the live router, or replay's recorded outputs."""

    def has(self, role: Role) -> bool: ...

    async def call(self, role: Role, run: Callable[[Any], Awaitable[T]], budget: TurnBudget,
                   reserve: int = 0, size_hint: Sequence[dict[str, Any]] = ()) -> Outcome[T]: ...


class ModelRouter:
    """The litellm Router for one models file, and the budgeted fallback walk over it."""

    def __init__(self, config: ModelsFile) -> None:
        self.config = config
        self.litellm = _import_litellm()
        settings = {k: v for k, v in config.router_settings.items() if k != "fallbacks"}
        settings.setdefault("num_retries", 0)  # the chain below owns retries: one attempt each
        if any(str(d.get("litellm_params", {}).get("model", "")).startswith("local/") for d in config.model_list):
            self.litellm.utils.custom_llm_setup()
        self.router = self.litellm.Router(model_list=router_model_list(config.model_list), **settings)
        self._inline = {group for group in config.groups
                        if all(provider_of(d) in INLINE_PROVIDERS for d in config.model_list
                               if d.get("model_name") == group)}

    def has(self, role: Role) -> bool:
        return self.config.group_for(role) is not None

    def chain(self, role: Role) -> list[str]:
        group = self.config.group_for(role)
        return self.config.chain(group) if group else []

    def estimate(self, group: str, messages: Sequence[dict[str, Any]], max_tokens: int) -> Decimal:
        price_in, price_out = self.config.price(group)
        words = sum(len(str(m.get("content") or "").split()) for m in messages)
        return price_in * int(words * 1.4 + 20) + price_out * max_tokens

    async def call(self, role: Role, run: Callable[[Any], Awaitable[T]], budget: TurnBudget,
                   reserve: int = 0, size_hint: Sequence[dict[str, Any]] = ()) -> Outcome[T]:
        """Walk the role's chain until ``run(model)`` returns, the chain ends or the budget does.

        ``run`` receives a pydantic-ai model bound to one model group and makes one request with
        it; anything it raises (an HTTP error, a timeout, output it could not validate) moves to the
        next group. ``reserve`` calls are left for later roles of the turn (the writer).
        """
        from deskline.routing.adapter import RouterModel, call_errors

        attempts: list[Attempt] = []
        tried: list[str] = []
        max_tokens = self.config.deskline.max_tokens.get(role, 400)
        if budget.deadline is None:  # the turn's first model call starts its clock
            budget.deadline = time.monotonic() + self.config.deskline.turn_deadline_s
        for group in self.chain(role):
            if budget.remaining <= reserve:
                break
            if budget.time_left() <= 0:
                tried.append("(the turn's deadline passed)")
                break
            if group in budget.skipped:
                tried.append(f"{group} (timed out earlier this turn)")
                continue
            target = group
            if not budget.affordable(self.estimate(target, size_hint, max_tokens)):
                cheaper = self.config.deskline.cost_fallbacks.get(group)
                if cheaper is None or not budget.affordable(self.estimate(cheaper, size_hint, max_tokens)):
                    tried.append(f"{group} (over budget)")
                    continue
                tried.append(f"{group} (cost fallback to {cheaper})")
                target = cheaper
            model = RouterModel(self, role, target, budget, tuple(tried))
            limit = min(budget.time_left(), self.config.deskline.role_timeout_s.get(role, float("inf")))
            try:
                async with asyncio.timeout(limit):
                    value = await run(model)
            except TimeoutError:  # the role's time or the turn's ran out: never wait past it
                if model.attempts:
                    last = model.attempts[-1]
                    last.ok, last.error = False, f"timeout: no answer within {limit:.1f} s"
                budget.skipped.add(target)
                attempts.extend(model.attempts)
                tried.append(target)
                continue
            except call_errors() as exc:
                model.fail(exc)
                if "timeout" in type(exc).__name__.lower():
                    budget.skipped.add(target)
                attempts.extend(model.attempts)
                tried.append(target)
                continue
            attempts.extend(model.attempts)
            return Outcome(value, tuple(attempts))
        return Outcome(None, tuple(attempts))

    async def complete(self, role: Role, group: str, request: dict[str, Any]) -> Any:
        """One attempt at one group: the litellm response, or the litellm error raised."""
        if "tools" in request:  # the models file says how hard to push for a tool call
            request = {**request, "tool_choice": self.config.deskline.tool_choice.get(role, "auto")}
        call = self.router.acompletion(
            model=group, disable_fallbacks=True,
            temperature=self.config.deskline.temperature.get(role, 0.0),
            max_tokens=self.config.deskline.max_tokens.get(role, 400),
            metadata={"deskline_role": role}, **request)
        if group in self._inline and install_inline_executor(asyncio.get_running_loop()):
            return await _inline(call)
        return await call


async def _inline(call: Awaitable[Any]) -> Any:
    """Await ``call`` with litellm's ``completion()`` set-up run in line (see the module docstring);
    the flag lives in this task's context only, and is cleared when the call ends."""
    token = _INLINE.set(True)
    try:
        return await call
    finally:
        _INLINE.reset(token)
