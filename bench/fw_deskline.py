"""deskline as a row of the peer benchmark in ``../shared/bench/peers`` (found through
``PEER_ADAPTER_PATH``): the same triage -> specialist -> tool -> answer workload, run through the
real desk (strategy, tactical, operation, writer, event log on SQLite).

Two ways, chosen by ``DESKLINE_BENCH_MODE`` (``fw_deskline_default.py`` sets ``default``):

* ``model``: an instant fake model behind the real model-routing layer (litellm Router with an
  in-process ``CustomLLM``, the pydantic-ai adapter, the turn budget): the planner call picks the
  specialist's skill as a tool call, the writer call writes the answer. 2 model calls a turn,
  where the peers make 3 (6 for fan-out, where deskline still makes 2: one plan, one reply).
* ``default``: the embedded default: local classifier, template writer. 0 model calls.

``DESKLINE_BENCH_DB`` picks the event log's database (default ``sqlite://``, in memory; a file
URL for the on-disk figure).
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import workload as W
from common import desk_with

MODE = os.environ.get("DESKLINE_BENCH_MODE", "model")
DB = os.environ.get("DESKLINE_BENCH_DB", "sqlite://")
NAME = "deskline" if MODE == "model" else "deskline_default"
IDIOM = (
    "SupportDesk.handle: strategy -> LLM planner (skills as tools, 1 call via litellm Router + "
    "pydantic-ai) -> operation (skill = tool) -> model writer (1 call); every step an event in SQLite"
    if MODE == "model"
    else "SupportDesk.handle with the embedded default: local classifier -> skill -> template writer; "
    "0 model calls; every step an event in SQLite"
)
FANOUT_IDIOM = (
    "one planner call with two skill tool calls -> parallel plan (TaskGroup) -> one writer call"
    if MODE == "model" else None
)
PACKAGES = ["deskline", "litellm", "pydantic-ai-slim", "sqlmodel"]
MODEL_CALLS_PER_TURN = 2 if MODE == "model" else 0
MODEL_CALLS_PER_FANOUT = 2 if MODE == "model" else 0

_desk: Any = None
_FACTS = re.compile(r"Facts: (\[.*\])\n", re.S)


def _skills() -> list[Any]:
    from pydantic import BaseModel

    from deskline.agents.registry import Skill, SkillCall

    class AccountParams(BaseModel):
        user_id: str | None = None

    class InvoiceParams(BaseModel):
        invoice_id: str | None = None

    class TransferParams(BaseModel):
        payment_id: str | None = None

    def make(agent: str, tool: str, key: str, params: type[BaseModel], entity: str | None) -> Skill:
        lookup = W.TOOL_FUNCS[tool]

        async def run(call: SkillCall) -> Any:
            case = call.handoff.case
            ident = case.entities.first(entity) if entity else None  # type: ignore[arg-type]
            if ident is None:  # the workload's user ids are not desk entities: read the message
                ident = W.extract_id(agent, case.history[-1].text)
            result = lookup(ident)
            return call.result(facts={"specialist": agent, "ident": result[key], "status": result["status"]})

        return Skill(name=f"{agent}.{tool}", agent=agent, description=f"{tool} for the {agent} desk",  # type: ignore[arg-type]
                     params=params, run=run, templates={"default": f"[{agent}] {{ident}}: {{status}}"})

    return [make("tech", "lookup_account", "user_id", AccountParams, None),
            make("billing", "lookup_invoice", "invoice_id", InvoiceParams, "invoice_id"),
            make("payment", "lookup_transfer", "transfer_id", TransferParams, "payment_id")]


def _fake_llm() -> Any:
    """The instant fake model, behind litellm's Router as an in-process CustomLLM."""
    import litellm
    from litellm import CustomLLM

    class Brain(CustomLLM):
        async def acompletion(self, model: str, messages: list[Any], *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            t0 = time.perf_counter_ns() if W.TIME_FAKES else 0
            params = kwargs.get("optional_params") or {}
            user = str(messages[-1]["content"])
            if params.get("tools"):
                W.COUNTS.model_call("triage")
                text = user.split("\n\n(local classifier")[0]
                calls = []
                for i, spec in enumerate(W.route(text)):
                    tool, args = W.tool_call_for(spec, text)
                    args = {"payment_id" if k == "transfer_id" else k: v for k, v in args.items()}
                    calls.append({"id": f"call_{i}", "type": "function",
                                  "function": {"name": f"{spec}__{tool}", "arguments": json.dumps(args)}})
                message: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": calls}
            else:
                W.COUNTS.model_call("writer")
                facts = json.loads(_FACTS.search(user).group(1))  # type: ignore[union-attr]
                parts = [W.final_answer(f["facts"]["specialist"], {SPEC_KEY[f["facts"]["specialist"]]: f["facts"]["ident"],
                                                                    "status": f["facts"]["status"]}) for f in facts]
                message = {"role": "assistant", "content": parts[0] if len(parts) == 1 else W.fanout_answer(parts)}
            response = litellm.ModelResponse(choices=[{"message": message, "finish_reason": "stop", "index": 0}],
                                             model=model, usage={"prompt_tokens": 50, "completion_tokens": 10,
                                                                 "total_tokens": 60})
            if W.TIME_FAKES:
                W.COUNTS.fake_ns += time.perf_counter_ns() - t0
            return response

    litellm.custom_provider_map = [{"provider": "local", "custom_handler": Brain()}]


SPEC_KEY = {spec: arg for spec, (_tool, arg) in W.SPECIALIST_TOOL.items()}


class _AlwaysAsk:
    """The model path plans every turn: the local classifier always defers to the planner."""

    threshold = 1.0

    def __init__(self, real: Any) -> None:
        self.real = real

    def predict(self, text: str) -> Any:
        from dataclasses import replace

        return replace(self.real.predict(text), abstain=True)


async def setup() -> None:
    global _desk
    from deskline.agents.builtin.backend.memory import MemoryBackend
    from deskline.agents.builtin.desk import ROUTER
    from deskline.config import Settings
    from deskline.eventlog.database import make_engine
    from deskline.eventlog.store import SqlEventStore
    from deskline.hierarchy.desk import SupportDesk
    from deskline.routing.cache import RouteCache
    from deskline.routing.classifier import load_classifier

    skills = _skills()
    definition = desk_with(skills, {"tech": "tech.lookup_account", "billing": "billing.lookup_invoice",
                                    "payment": "payment.lookup_transfer"})
    classifier: Any = load_classifier(ROUTER)
    models = None
    if MODE == "model":
        from deskline.routing.llm_config import ModelsFile
        from deskline.routing.models import ModelRouter

        _fake_llm()
        config = ModelsFile.model_validate({"model_list": [
            {"model_name": "planner", "litellm_params": {"model": "local/fake-planner"}},
            {"model_name": "writer", "litellm_params": {"model": "local/fake-writer"}}]})
        models = ModelRouter(config)
        classifier = _AlwaysAsk(classifier)
    # No route cache: every turn must really plan (the harness checks 2 model calls a turn).
    _desk = SupportDesk(store=SqlEventStore(make_engine(DB)), records=MemoryBackend(), desk=definition,
                        classifier=classifier, settings=Settings(), models=models, cache=RouteCache(capacity=0))


async def turn(text: str) -> str:
    result = await _desk.handle(uuid.uuid4().hex, text)
    return str(result.reply)


async def fanout(text: str) -> str:
    return await turn(text)
