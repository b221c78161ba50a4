"""When a reply fails its grounding check and a model is configured, ask the model what next.

One call with four tools: ``re_plan`` (plan the turn again), ``re_execute`` (run the same plan
again, e.g. after a transient failure; actions keep their idempotency keys, so nothing is done
twice), ``escalate`` and ``complete`` (stop: the desk then sends the safe fallback). The desk
bounds the rounds (``Settings.verify_rounds``) and the turn budget bounds the calls.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Literal

from pydantic_ai.direct import model_request
from pydantic_ai.messages import ModelRequest, SystemPromptPart, ToolCallPart, UserPromptPart
from pydantic_ai.models import Model, ModelRequestParameters
from pydantic_ai.tools import ToolDefinition

from deskline.handoffs.payload import AgentResult
from deskline.routing.adapter import InvalidOutput

NextStep = Literal["re_plan", "re_execute", "escalate", "complete"]
STEPS: dict[NextStep, str] = {
    "re_plan": "The plan was wrong for this message: plan the turn again.",
    "re_execute": "The plan was right but a step failed or returned stale data: run it again.",
    "escalate": "Hand the conversation to a person.",
    "complete": "Stop here; the desk sends a safe holding reply.",
}
VERIFIER_PROMPT = """\
You check a customer-support desk's work. The reply below failed verification: it states facts
the agents' results do not hold. Choose the next step by calling exactly one tool."""
_EMPTY = {"type": "object", "properties": {}}


async def next_step(model: Model, text: str, results: Sequence[AgentResult], problems: Sequence[str]) -> NextStep:
    facts = [{"skill": r.skill, "status": r.status, "facts": r.facts} for r in results]
    prompt = f"Customer: {text}\n\nResults: {json.dumps(facts)}\n\nUnsupported in the reply: {', '.join(problems)}"
    tools = [ToolDefinition(name=name, description=desc, parameters_json_schema=_EMPTY) for name, desc in STEPS.items()]
    response = await model_request(
        model, [ModelRequest(parts=[SystemPromptPart(content=VERIFIER_PROMPT), UserPromptPart(content=prompt)])],
        model_request_parameters=ModelRequestParameters(function_tools=tools, allow_text_output=False))
    call = next((p for p in response.parts if isinstance(p, ToolCallPart)), None)
    if call is None or call.tool_name not in STEPS:
        raise InvalidOutput(f"the verifier chose {call.tool_name if call else 'nothing'}")
    return call.tool_name
