"""The LLM planner and the model writer with pydantic-ai's TestModel and FunctionModel: no network."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.models.test import TestModel

from deskline.agents.builtin import desk as BUILTIN
from deskline.errors import PlanError
from deskline.handoffs.payload import AgentResult
from deskline.hierarchy.model_writer import write_with_model
from deskline.hierarchy.planner import LLMPlanner
from deskline.routing.adapter import InvalidOutput

PLANNER = LLMPlanner(BUILTIN)


def answering(*calls: tuple[str, dict[str, Any]]) -> FunctionModel:
    """A model that answers every request with these tool calls."""

    def fn(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        return ModelResponse(parts=[ToolCallPart(name, json.dumps(args), f"c{i}") for i, (name, args) in enumerate(calls)])

    return FunctionModel(fn)


def plan(*calls: tuple[str, dict[str, Any]], said: str = "a customer message about inv 1001"):  # type: ignore[no-untyped-def]
    return asyncio.run(PLANNER.plan(answering(*calls), said))


def test_tools_are_the_skills_with_typed_schemas_plus_meta_tools() -> None:
    """Every skill is a tool whose JSON schema comes from its parameters; plan_execution is there too."""
    seen: dict[str, Any] = {}

    def fn(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        seen.update({t.name: t.parameters_json_schema for t in info.function_tools})
        seen["allow_text"] = info.allow_text_output
        return ModelResponse(parts=[ToolCallPart("tech__check_service_status", "{}", "c1")])

    asyncio.run(PLANNER.plan(FunctionModel(fn), "is it down?"))
    assert "billing__lookup_invoice" in seen and "plan_execution" in seen and "escalate_to_human" in seen
    assert seen["billing__lookup_invoice"]["required"] == ["invoice_id"]
    assert seen["allow_text"] is False


def test_one_call_is_single_two_are_parallel() -> None:
    """One skill call plans a single step; two independent calls plan a parallel pair."""
    p, found = plan(("billing__lookup_invoice", {"invoice_id": "inv-1001"}))
    assert (p.mode, p.steps[0].skill, p.stage) == ("single", "billing.lookup_invoice", "llm")
    assert found.get("invoice_id") == ("INV-1001",)
    p, _ = plan(("tech__check_service_status", {}), ("payment__transfer_status", {}))
    assert p.mode == "parallel" and [s.agent for s in p.steps] == ["tech", "payment"]


def test_plan_execution_makes_a_sequential_dag() -> None:
    """plan_execution with depends_on becomes a validated sequential plan."""
    p, _ = plan(("plan_execution", {"steps": [
        {"step_id": "a", "skill": "payment__transfer_status"},
        {"step_id": "b", "skill": "billing__lookup_invoice", "depends_on": ["a"], "arguments": {"invoice_id": "INV-1001"}},
    ]}))
    assert p.mode == "sequential" and p.steps[1].depends_on == ("a",)


@pytest.mark.parametrize("calls", [
    [("billing__launch_rockets", {})],
    [("billing__lookup_invoice", {"invoice_id": "INV-1", "iban": "x"})],
    [("plan_execution", {"steps": [{"step_id": "a", "skill": "tech__check_account", "depends_on": ["b"]},
                                   {"step_id": "b", "skill": "tech__check_account", "depends_on": ["a"]}]})],
    [("plan_execution", {"steps": [{"step_id": "a", "skill": "tech__check_account", "depends_on": ["zz"]}]})],
])
def test_invalid_plans_are_rejected(calls: list[tuple[str, dict[str, Any]]]) -> None:
    """Unknown skills, unknown parameters, cycles and missing dependencies raise PlanError."""
    with pytest.raises(PlanError):
        plan(*calls)


def test_meta_tools_abstain() -> None:
    """ask_customer plans a clarifying question; escalate_to_human an escalation."""
    assert plan(("ask_customer", {"question": "which invoice?"}))[0].mode == "clarify"
    assert plan(("escalate_to_human", {"reason": "angry"}))[0].mode == "escalate"


def test_model_arguments_must_be_what_the_customer_named() -> None:
    """'1002' never replaces the customer's INV-1002, a substring id is no match, a made-up email is
    dropped from a lookup, and an action on anything the customer never named is refused."""
    _, found = plan(("billing__lookup_invoice", {"invoice_id": "1002"}), said="check invoice INV-1002")
    assert found.is_empty()  # the customer's own INV-1002 is what the step gets
    _, found = plan(("billing__lookup_invoice", {"invoice_id": "inv 1002"}), said="check invoice INV-1002")
    assert found.get("invoice_id") == ("INV-1002",)
    with pytest.raises(PlanError, match="never named"):
        plan(("billing__refund_charge", {"charge_id": "1"}), said="refund CH-2002 please")
    with pytest.raises(PlanError, match="never named"):
        plan(("tech__reset_password", {"email": "attacker@evil.com"}), said="I forgot my password")
    _, found = plan(("tech__reset_password", {"email": "me@example.com"}), said="reset it, my email is me@example.com")
    assert found.get("email") == ("me@example.com",)


def test_testmodel_drives_the_planner() -> None:
    """pydantic-ai's TestModel, told to call one skill, yields a single-step plan."""
    p, _ = asyncio.run(PLANNER.plan(TestModel(call_tools=["tech__check_service_status"]), "hm"))
    assert p.mode == "single" and p.steps[0].skill == "tech.check_service_status"


RESULT = AgentResult(step_id="s1", agent="billing", skill="billing.lookup_invoice", status="ok",
                     facts={"invoice_id": "INV-1001", "amount": "$49.00"})


def text_model(text: str) -> FunctionModel:
    return FunctionModel(lambda messages, info: ModelResponse(parts=[TextPart(text)]))


def test_model_writer_keeps_a_grounded_reply() -> None:
    """A reply that restates the results' facts is accepted as written."""
    reply = asyncio.run(write_with_model(text_model("Invoice INV-1001 is $49.00."), "hi", [RESULT], "draft"))
    assert reply == "Invoice INV-1001 is $49.00."


def test_model_writer_refuses_invented_facts() -> None:
    """A reply with an amount no result holds raises InvalidOutput, so the router moves on."""
    with pytest.raises(InvalidOutput, match=r"\$5,000.00"):
        asyncio.run(write_with_model(text_model("Refunded $5,000.00 on INV-1001."), "hi", [RESULT], "draft"))


def test_real_model_requests_are_blocked_in_tests() -> None:
    """pydantic-ai's own provider models refuse to send requests while the suite runs."""
    import pydantic_ai.models

    assert pydantic_ai.models.ALLOW_MODEL_REQUESTS is False
