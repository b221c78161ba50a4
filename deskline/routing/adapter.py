"""A pydantic-ai ``Model`` whose one request is one attempt at one litellm model group.

pydantic-ai shapes the call (tool definitions from the skills' typed parameters, typed response
parts, typed HTTP errors); the litellm Router serves it in process. The adapter translates the
few message kinds the desk sends and records each request as an ``Attempt`` for the event log.
"""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from pydantic_ai.exceptions import ModelHTTPError, UnexpectedModelBehavior
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    RetryPromptPart,
    SystemPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models import Model, ModelRequestParameters
from pydantic_ai.profiles import ModelProfile
from pydantic_ai.settings import ModelSettings
from pydantic_ai.usage import RequestUsage

from deskline.errors import BudgetExceeded, PlanError
from deskline.observe.tracing import span
from deskline.routing.llm_config import Role
from deskline.routing.models import Attempt, TurnBudget

if TYPE_CHECKING:
    from deskline.routing.models import ModelRouter


class InvalidOutput(Exception):
    """A caller's verdict on a model's answer: try the next group."""


def call_errors() -> tuple[type[BaseException], ...]:
    """What moves the chain to its next group (never ``BudgetExceeded``: that ends it)."""
    return (ModelHTTPError, UnexpectedModelBehavior, InvalidOutput, PlanError, ValidationError,
            json.JSONDecodeError, KeyError, TimeoutError)


_PROFILE = ModelProfile(supports_json_schema_output=True, supports_json_object_output=True)


class RouterModel(Model):
    def __init__(self, router: ModelRouter, role: Role, group: str, budget: TurnBudget,
                 fallbacks: tuple[str, ...] = ()) -> None:
        super().__init__(profile=_PROFILE)
        self.router = router
        self.role = role
        self.group = group
        self.budget = budget
        self.fallbacks = fallbacks
        self.attempts: list[Attempt] = []

    @property
    def model_name(self) -> str:
        return self.group

    @property
    def system(self) -> str:
        return "litellm"

    def fail(self, exc: BaseException) -> None:
        """Mark the last attempt failed (its output did not validate, or the call raised)."""
        if self.attempts and self.attempts[-1].ok:
            self.attempts[-1].ok = False
            self.attempts[-1].error = f"invalid output: {str(exc)[:200]}"

    async def request(self, messages: list[ModelMessage], model_settings: ModelSettings | None,
                      model_request_parameters: ModelRequestParameters) -> ModelResponse:
        params = model_request_parameters
        tools = [
            {"type": "function", "function": {"name": t.name, "description": t.description or "",
                                              "parameters": t.parameters_json_schema}}
            for t in (*params.function_tools, *params.output_tools)
        ]
        request: dict[str, Any] = {"messages": to_openai(messages)}
        if tools:
            request["tools"] = tools  # tool_choice comes from the models file, per role (ModelRouter.complete)
        attempt = Attempt(role=self.role, group=self.group, fallbacks=self.fallbacks,
                          request_summary=_summary(request))
        self.budget.charge(attempt)  # raises BudgetExceeded before anything is sent
        self.attempts.append(attempt)
        with span(f"chat {self.group}", **{"gen_ai.operation.name": "chat", "gen_ai.system": "litellm",
                                             "gen_ai.request.model": self.group, "deskline.role": self.role}) as sp:
            response = await self._complete(request, attempt, sp)
            sp.set_attribute("gen_ai.response.model", attempt.deployment)
            sp.set_attribute("gen_ai.usage.input_tokens", attempt.input_tokens)
            sp.set_attribute("gen_ai.usage.output_tokens", attempt.output_tokens)
            sp.set_attribute("deskline.cost_usd", float(attempt.cost_usd))
        return response

    async def _complete(self, request: dict[str, Any], attempt: Attempt, sp: Any) -> ModelResponse:
        started = time.perf_counter()
        try:
            response = await self.router.complete(self.role, self.group, request)
        except Exception as exc:  # litellm's error tree is wide; every one becomes a typed HTTP error
            if isinstance(exc, BudgetExceeded):
                raise
            attempt.latency_ms = _ms(started)
            attempt.error = f"{type(exc).__name__}: {str(exc)[:200]}"
            sp.set_attribute("error.type", type(exc).__name__)
            status = int(getattr(exc, "status_code", 0) or (408 if "Timeout" in type(exc).__name__ else 500))
            raise ModelHTTPError(status_code=status, model_name=self.group, body=attempt.error) from exc
        attempt.latency_ms = _ms(started)
        hidden = getattr(response, "_hidden_params", {}) or {}
        attempt.deployment = str(hidden.get("litellm_model_name") or hidden.get("model_id") or response.model)
        usage = getattr(response, "usage", None)
        attempt.input_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        attempt.output_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        attempt.cost_usd = Decimal(str(hidden.get("response_cost") or 0))
        self.budget.spent_usd += attempt.cost_usd
        message = response.choices[0].message
        calls = [{"id": c.id, "name": c.function.name, "arguments": c.function.arguments}
                 for c in (message.tool_calls or [])]
        data = {"content": message.content, "tool_calls": calls}
        attempt.output = json.dumps(data)
        attempt.ok = True
        return _response(data, self.group, attempt.input_tokens, attempt.output_tokens)


def from_output(output: str, model_name: str, input_tokens: int = 0, output_tokens: int = 0) -> ModelResponse:
    """A recorded output (as the event log keeps it) back into pydantic-ai's typed parts."""
    return _response(json.loads(output), model_name, input_tokens, output_tokens)


def _response(data: dict[str, Any], model_name: str, input_tokens: int, output_tokens: int) -> ModelResponse:
    parts: list[Any] = []
    if data.get("content"):
        parts.append(TextPart(content=data["content"]))
    for call in data.get("tool_calls") or ():
        parts.append(ToolCallPart(tool_name=call["name"], args=call["arguments"], tool_call_id=call["id"]))
    return ModelResponse(parts=parts, usage=RequestUsage(input_tokens=input_tokens, output_tokens=output_tokens),
                         model_name=model_name, provider_name="litellm")


def to_openai(messages: list[ModelMessage]) -> list[dict[str, Any]]:
    """pydantic-ai messages in the chat-completions wire format."""
    out: list[dict[str, Any]] = []
    for m in messages:
        if isinstance(m, ModelRequest):
            for part in m.parts:
                if isinstance(part, SystemPromptPart):
                    out.append({"role": "system", "content": part.content})
                elif isinstance(part, UserPromptPart):
                    out.append({"role": "user", "content": part.content if isinstance(part.content, str)
                                else " ".join(str(c) for c in part.content)})
                elif isinstance(part, ToolReturnPart):
                    out.append({"role": "tool", "tool_call_id": part.tool_call_id,
                                "content": part.model_response_str()})
                elif isinstance(part, RetryPromptPart):
                    out.append({"role": "user", "content": part.model_response()})
        elif isinstance(m, ModelResponse):
            text = "".join(p.content for p in m.parts if isinstance(p, TextPart))
            calls = [{"id": p.tool_call_id, "type": "function",
                      "function": {"name": p.tool_name, "arguments": p.args_as_json_str()}}
                     for p in m.parts if isinstance(p, ToolCallPart)]
            msg: dict[str, Any] = {"role": "assistant", "content": text or None}
            if calls:
                msg["tool_calls"] = calls
            out.append(msg)
    return out


def _summary(request: dict[str, Any]) -> str:
    last: dict[str, Any] = next((m for m in reversed(request["messages"]) if m.get("role") == "user"), {})
    tools = len(request.get("tools") or ())
    return f"{len(request['messages'])} messages, {tools} tools; user: {str(last.get('content', ''))[:120]}"


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
