"""The fake OpenAI server answers like OpenAI, injects the faults it is told to, and counts.

Driven through the real openai SDK (and once through litellm's Router) over loopback HTTP, so the
status-code-to-exception mapping the model layer relies on is what gets tested.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import subprocess
import sys
import time
import urllib.request
from collections.abc import Coroutine, Iterator
from typing import Any, Literal, TypeVar

import openai
import pytest
from pydantic import BaseModel, ValidationError

from deskline.testing import (
    FakeOpenAI,
    FaultKind,
    ModelBehaviour,
    Reply,
    default_brain,
    remote_reset,
    remote_stats,
)

T = TypeVar("T")

TOOLS: list[dict[str, Any]] = [
    {"type": "function", "function": {
        "name": "lookup_payment", "description": "Find a payment by its id",
        "parameters": {"type": "object", "properties": {"payment_id": {"type": "string"}},
                       "required": ["payment_id"]}}},
    {"type": "function", "function": {
        "name": "refund_invoice", "description": "Refund an invoice to the customer",
        "parameters": {"type": "object",
                       "properties": {"invoice_id": {"type": "string"},
                                      "reason": {"type": "string"},
                                      "notify": {"type": "boolean"}},
                       "required": ["invoice_id", "reason"]}}},
]


class Line(BaseModel):
    sku: str
    quantity: int


class Triage(BaseModel):
    department: Literal["billing", "payments", "tech"]
    invoice_id: str
    urgency: int
    lines: list[Line]
    note: str | None


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def client(server: FakeOpenAI, **kwargs: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.base_url, api_key="x", max_retries=0, **kwargs)


def ask(server: FakeOpenAI, text: str = "hello", model: str = "fake-model",
        **kwargs: Any) -> Any:
    async def call() -> Any:
        async with client(server) as api:
            return await api.chat.completions.create(
                model=model, messages=[{"role": "user", "content": text}], **kwargs)
    return run(call())


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    """A fault-free fake server on an ephemeral port."""
    with FakeOpenAI() as fake:
        yield fake


def test_text_reply(server: FakeOpenAI) -> None:
    """A plain request gets a valid completion quoting the user's first 60 characters."""
    text = "Where is my refund? I paid INV-42 twice last week and nobody answered me at all."
    reply = ask(server, text, model="gpt-fake")
    assert server.base_url.startswith("http://127.0.0.1:") and server.base_url.endswith("/v1")
    assert reply.object == "chat.completion" and reply.model == "gpt-fake" and reply.id
    choice = reply.choices[0]
    assert choice.finish_reason == "stop" and choice.message.tool_calls is None
    assert text[:60] in choice.message.content and text[:61] not in choice.message.content
    usage = reply.usage
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert ask(server, text, model="gpt-fake").usage == usage  # deterministic


def test_tool_call_with_schema_built_arguments(server: FakeOpenAI) -> None:
    """With tools, the best-matching tool is called with required args lifted from the text."""
    reply = ask(server, "please refund invoice INV-42, it was paid by PAY-7", tools=TOOLS)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id
    assert call.function.name == "refund_invoice"
    assert json.loads(call.function.arguments) == {"invoice_id": "INV-42", "reason": "fake-reason"}

    reply = ask(server, "what happened to my payment PAY-7?", tools=TOOLS)
    (call,) = reply.choices[0].message.tool_calls
    assert call.function.name == "lookup_payment"
    assert json.loads(call.function.arguments) == {"payment_id": "PAY-7"}


def test_json_schema_reply_validates(server: FakeOpenAI) -> None:
    """A json_schema response_format gets content that validates against the schema."""
    async def call() -> Any:
        async with client(server) as api:
            return await api.chat.completions.parse(
                model="fake-model", response_format=Triage,
                messages=[{"role": "user", "content": "INV-9 was charged twice"}])
    reply = run(call())
    parsed = Triage.model_validate_json(reply.choices[0].message.content)
    assert parsed == reply.choices[0].message.parsed
    assert parsed.department == "billing" and parsed.invoice_id == "INV-9"
    assert len(parsed.lines) == 1
    assert server.requests[0].had_response_format and not server.requests[0].had_tools


def test_script_then_brain(server: FakeOpenAI) -> None:
    """Scripted replies are consumed in order, then the brain answers again."""
    server.script(Reply.text("scripted"), Reply.tool_call("refund_invoice", {"invoice_id": "X"}),
                  Reply.json({"ok": True}), Reply.error(503, "down for a bit"))
    assert ask(server).choices[0].message.content == "scripted"
    call = ask(server, tools=TOOLS).choices[0].message.tool_calls[0]
    assert (call.function.name, json.loads(call.function.arguments)) == (
        "refund_invoice", {"invoice_id": "X"})
    assert json.loads(ask(server).choices[0].message.content) == {"ok": True}
    with pytest.raises(openai.InternalServerError, match="down for a bit") as info:
        ask(server)
    assert info.value.status_code == 503
    assert server.pending_script == 0
    assert ask(server, "back to the brain").choices[0].message.content.startswith("Fake reply")
    assert [r.scripted for r in server.requests] == [True, True, True, True, False]


def test_custom_brain_per_server_and_per_model() -> None:
    """A brain passed to the server, or to one model's behaviour, decides the answers."""
    def shout(request: dict[str, Any]) -> Reply:
        return Reply.text(request["messages"][-1]["content"].upper())

    with FakeOpenAI(brain=shout, models={"polite": ModelBehaviour(brain=default_brain)}) as fake:
        assert ask(fake, "hi there").choices[0].message.content == "HI THERE"
        assert ask(fake, "hi there", model="polite").choices[0].message.content.startswith(
            "Fake reply")


def test_default_brain_after_a_tool_result_answers() -> None:
    """After a tool result the default brain calls a final_result tool if any, else answers."""
    messages = [{"role": "user", "content": "refund INV-3"},
                {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {
                    "name": "refund_invoice", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "refunded"}]
    assert default_brain({"messages": messages, "tools": TOOLS}).content == (
        'Fake reply to: "refund INV-3"')
    final = {"type": "function", "function": {"name": "final_result", "parameters": {
        "type": "object", "properties": {"invoice_id": {"type": "string"}},
        "required": ["invoice_id"]}}}
    reply = default_brain({"messages": messages, "tools": [*TOOLS, final]})
    assert reply.tool_calls[0].name == "final_result"
    assert json.loads(reply.tool_calls[0].arguments) == {"invoice_id": "INV-3"}


@pytest.mark.parametrize(("kind", "error", "status"), [
    ("500", openai.InternalServerError, 500),
    ("429", openai.RateLimitError, 429),
])
def test_status_faults_map_to_sdk_errors(kind: Literal["500", "429"],
                                         error: type[openai.APIStatusError], status: int) -> None:
    """The 500 and 429 faults surface as the SDK's InternalServerError and RateLimitError."""
    with FakeOpenAI(models={"bad": ModelBehaviour(always=kind)}, retry_after=7) as fake:
        with pytest.raises(error) as info:
            ask(fake, model="bad")
        assert info.value.status_code == status
        assert isinstance(info.value.body, dict) and "injected" in info.value.body["message"]
        if kind == "429":
            assert info.value.response.headers["retry-after"] == "7"
        assert ask(fake, model="good").choices[0].finish_reason == "stop"
        assert [(r.model, r.fault, r.status) for r in fake.requests] == [
            ("bad", kind, status), ("good", None, 200)]


def test_slow_fault_triggers_client_timeout() -> None:
    """A slow model outlasts a short client timeout: the SDK raises APITimeoutError."""
    with FakeOpenAI(models={"slow-model": ModelBehaviour(always="slow")}, slow_seconds=5) as fake:
        started = time.perf_counter()
        with pytest.raises(openai.APITimeoutError):
            ask(fake, model="slow-model", timeout=0.2)
        assert time.perf_counter() - started < 2
        assert fake.count("slow-model") == 1 and fake.requests[0].fault == "slow"
    # leaving the block woke the sleeping handler: the test did not wait the 5 s out


def test_malformed_tool_call_arguments_are_not_json() -> None:
    """The malformed_tool_call fault returns a tool call whose arguments fail json.loads."""
    with FakeOpenAI(fault_rate=1.0, fault_kinds=("malformed_tool_call",)) as fake:
        reply = ask(fake, "refund INV-5", tools=TOOLS)
    call = reply.choices[0].message.tool_calls[0]
    assert reply.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "refund_invoice"
    with pytest.raises(json.JSONDecodeError):
        json.loads(call.function.arguments)


def test_invalid_output_violates_schema_or_names_unknown_tool() -> None:
    """invalid_output breaks the response_format schema, or calls a tool that was not offered."""
    schema = {"type": "json_schema", "json_schema": {
        "name": "Triage", "schema": Triage.model_json_schema(), "strict": True}}
    with FakeOpenAI(models={"liar": ModelBehaviour(always="invalid_output")}) as fake:
        reply = ask(fake, "INV-1", model="liar", response_format=schema)
        content = reply.choices[0].message.content
        json.loads(content)  # it is JSON, just not the promised shape
        with pytest.raises(ValidationError):
            Triage.model_validate_json(content)
        call = ask(fake, "INV-1", model="liar", tools=TOOLS).choices[0].message.tool_calls[0]
        assert call.function.name not in {tool["function"]["name"] for tool in TOOLS}


def test_streaming_is_refused_clearly(server: FakeOpenAI) -> None:
    """stream=true gets a counted 400 that says streaming is not supported."""
    with pytest.raises(openai.BadRequestError, match="stream=true is not supported"):
        ask(server, stream=True)
    assert [(r.model, r.status, r.fault) for r in server.requests] == [("fake-model", 400, None)]


def test_a_failing_brain_answers_500_instead_of_hanging() -> None:
    """A brain that raises gives the client a 500 naming the error, not a hung connection."""
    def broken(request: dict[str, Any]) -> Reply:
        raise KeyError("no such intent")

    with FakeOpenAI(brain=broken) as fake:
        with pytest.raises(openai.InternalServerError, match="no such intent"):
            ask(fake)
        assert fake.requests[0].status == 500


def test_seeded_fault_rate_is_reproducible_and_near_the_rate() -> None:
    """Two servers with one seed fault the same requests, about 30% of 200."""
    kinds: tuple[FaultKind, ...] = ("500", "429", "malformed_tool_call", "invalid_output")

    async def hammer(fake: FakeOpenAI) -> None:
        async with client(fake) as api:
            for _ in range(200):
                with contextlib.suppress(openai.InternalServerError, openai.RateLimitError):
                    await api.chat.completions.create(
                        model="m", messages=[{"role": "user", "content": "hi"}])

    sequences = []
    for _ in range(2):
        with FakeOpenAI(fault_rate=0.3, fault_kinds=kinds, seed=1) as fake:
            run(hammer(fake))
            sequences.append([record.fault for record in fake.requests])
    assert sequences[0] == sequences[1]
    faulted = sum(fault is not None for fault in sequences[0])
    assert 40 <= faulted <= 80, faulted
    assert set(sequences[0]) == {None, *kinds}


def test_counts_stats_endpoint_and_reset() -> None:
    """count(), /_fake/stats and /_fake/reset agree on what the server saw."""
    with FakeOpenAI(models={"bad": ModelBehaviour(always="500")}) as fake:
        ask(fake, model="a", tools=TOOLS)
        ask(fake, model="a")
        with pytest.raises(openai.InternalServerError):
            ask(fake, model="bad")
        assert (fake.count(), fake.count("a"), fake.count("bad"), fake.count("z")) == (3, 2, 1, 0)
        first = fake.requests[0]
        assert first.had_tools and first.status == 200 and first.latency is not None

        stats = remote_stats(fake.base_url)
        assert stats["total"] == 3 and stats["in_flight"] == 0
        assert stats["by_model"] == {"a": {"total": 2, "faults": {}},
                                     "bad": {"total": 1, "faults": {"500": 1}}}
        assert stats["by_status"] == {"200": 2, "500": 1}
        with urllib.request.urlopen(f"{fake.base_url}/models") as response:
            names = {model["id"] for model in json.load(response)["data"]}
        assert {"a", "bad"} <= names

        remote_reset(fake.url)
        assert fake.count() == 0 and fake.stats()["total"] == 0
        fake.set_behaviour("bad", None)
        ask(fake, model="bad")
        fake.set_behaviour("a", ModelBehaviour(always="429"))
        with pytest.raises(openai.RateLimitError):
            ask(fake, model="a")
        assert [(r.model, r.status) for r in fake.requests] == [("bad", 200), ("a", 429)]
        fake.reset()
        assert fake.requests == []


def test_cli_serves_until_terminated() -> None:
    """The module runs as a CLI that prints its base URL and serves until killed."""
    process = subprocess.Popen(
        [sys.executable, "-m", "deskline.testing.fake_openai", "--seed", "1",
         "--model-fault", "bad=500"], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        base_url = process.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
        assert remote_stats(base_url)["total"] == 0
    finally:
        process.terminate()
    assert process.wait(timeout=5) == 0


def test_litellm_router_falls_back_to_the_backup_deployment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """litellm's Router sends primary's 500 on to backup; the server saw one call per model."""
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # before the import: offline
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import litellm
    from litellm.router import Router

    monkeypatch.setattr(litellm, "suppress_debug_info", True)
    # the Router logs a traceback for every failed try, even when the fallback succeeds
    monkeypatch.setattr(logging.getLogger("LiteLLM Router"), "disabled", True)
    with FakeOpenAI(models={"bad-model": ModelBehaviour(always="500")}) as fake:
        router = Router(
            model_list=[
                {"model_name": "primary", "litellm_params": {
                    "model": "openai/bad-model", "api_base": fake.base_url, "api_key": "x"}},
                {"model_name": "backup", "litellm_params": {
                    "model": "openai/good-model", "api_base": fake.base_url, "api_key": "x"}},
            ],
            fallbacks=[{"primary": ["backup"]}], num_retries=0)
        response = run(router.acompletion(
            model="primary", messages=[{"role": "user", "content": "refund INV-1"}]))
        assert response.model == "good-model"
        assert response.choices[0].message.content == 'Fake reply to: "refund INV-1"'
        hidden = response._hidden_params
        assert hidden["litellm_model_name"] == "openai/good-model"
        assert hidden["additional_headers"]["x-litellm-model-group"] == "backup"
        assert hidden["additional_headers"]["x-litellm-attempted-fallbacks"] == 1
        assert (fake.count("bad-model"), fake.count("good-model")) == (1, 1)
        assert [r.fault for r in fake.requests] == ["500", None]
