"""The model layer against a real HTTP server: litellm's Router, pydantic-ai, budgets, fallbacks.

Every test points a models file at the project's fake OpenAI-compatible server on a loopback
port; the server, not the desk, counts the requests.
"""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from deskline.config import Settings
from deskline.errors import ConfigError
from deskline.eventlog.events import ModelCalled, PlanMade
from deskline.hierarchy.replay import replay
from deskline.routing.llm_config import load_models
from deskline.runtime import memory_desk
from deskline.testing import FakeOpenAI, ModelBehaviour, Reply

GIBBERISH = "zorp the flibber quux"  # the classifier abstains, so the LLM planner is asked
NAMED = "zorp the flibber quux INV-1001"  # the same, naming the invoice the planner's arguments may use


def deployment(group: str, model: str, server: FakeOpenAI, **extra: Any) -> dict[str, Any]:
    params = {"model": f"openai/{model}", "api_base": server.base_url, "api_key": "x", "timeout": 5,
              "input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6, **extra}
    return {"model_name": group, "litellm_params": params}


def models_file(tmp_path: Path, server: FakeOpenAI, *, planner: str = "good-model", writer: str | None = "writer-model",
                fallbacks: bool = True, **deskline: Any) -> Path:
    model_list = [deployment("planner", planner, server), deployment("planner-backup", "good-model", server)]
    if writer:
        model_list.append(deployment("writer", writer, server))
    doc: dict[str, Any] = {"model_list": model_list,
                           "router_settings": {"fallbacks": [{"planner": ["planner-backup"]}] if fallbacks else []}}
    if deskline:
        doc["deskline"] = deskline
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def desk_for(path: Path, **settings: Any):  # type: ignore[no-untyped-def]
    """A desk whose classifier abstains on all but certain routes, so the planner is asked."""
    settings.setdefault("abstain_threshold", 0.99999)
    return memory_desk(Settings(models_path=path, **settings))


def model_events(desk, cid: str) -> list[ModelCalled]:  # type: ignore[no-untyped-def]
    return [r.event for r in desk.store.load(cid) if isinstance(r.event, ModelCalled)]


@pytest.fixture
def server():  # type: ignore[no-untyped-def]
    with FakeOpenAI(models={"bad-model": ModelBehaviour(always="500"),
                            "limited-model": ModelBehaviour(always="429"),
                            "slow-model": ModelBehaviour(always="slow"),
                            "broken-model": ModelBehaviour(always="malformed_tool_call")},
                    slow_seconds=3.0) as s:
        yield s


def test_no_models_file_means_no_litellm_import() -> None:
    """With no models file the desk answers without importing litellm or pydantic-ai."""
    import subprocess
    import sys

    code = ("import asyncio, sys; from deskline.runtime import memory_desk; d = memory_desk(); "
            "asyncio.run(d.handle(None, 'is the service down?')); "
            "print('litellm' in sys.modules, 'pydantic_ai' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["False", "False"], out.stderr


def test_bad_models_file_is_a_config_error(tmp_path: Path) -> None:
    """A models file that is not YAML or lacks model_list is refused with a clear message."""
    bad = tmp_path / "m.yaml"
    bad.write_text("model_list: [")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_models(bad)
    bad.write_text("router_settings: {}")
    with pytest.raises(ConfigError, match="model_list"):
        load_models(bad)


KEPT = ("Invoice INV-1001 ($49.00, issued March 1, 2025) was charged twice, as CH-2001 and CH-2002; "
        "I can refund the duplicate for you.")


def test_planner_plans_when_the_classifier_abstains(tmp_path: Path, server: FakeOpenAI) -> None:
    """One planner call with the skills as tools; the plan is validated and recorded with its cost."""
    server.script(Reply.tool_call("billing__lookup_invoice", {"invoice_id": "INV-1001"}), Reply.text(KEPT))
    desk = desk_for(models_file(tmp_path, server))
    r = asyncio.run(desk.handle("c1", NAMED))
    assert (r.department, r.mode, r.stage) == ("billing", "single", "llm")
    assert r.llm_calls == 2 == server.count()
    calls = model_events(desk, "c1")
    assert [c.role for c in calls] == ["planner", "writer"]
    planner = calls[0]
    assert planner.ok and planner.deployment.endswith("good-model") and planner.input_tokens > 0
    expected = Decimal(str(planner.input_tokens * 1e-6 + planner.output_tokens * 2e-6))
    assert abs(planner.cost_usd - expected) < Decimal("1e-9")
    assert r.cost_usd == sum(c.cost_usd for c in calls)
    assert r.reply == KEPT


@pytest.mark.parametrize("failing", ["bad-model", "limited-model", "broken-model"])
def test_quality_fallback_moves_to_the_next_group(tmp_path: Path, server: FakeOpenAI, failing: str) -> None:
    """An error, a rate limit or a malformed tool call from the planner group moves to its fallback."""
    server.script(Reply.tool_call("tech__check_service_status", {}))
    desk = desk_for(models_file(tmp_path, server, planner=failing, writer=None))
    r = asyncio.run(desk.handle("c1", GIBBERISH))
    calls = model_events(desk, "c1")
    assert [(c.model_group, c.ok) for c in calls] == [("planner", False), ("planner-backup", True)]
    assert calls[1].fallbacks == ("planner",)
    assert (r.department, r.stage) == ("tech", "llm")
    assert server.count(failing) == 1 and server.count("good-model") == 1


def test_latency_fallback_on_a_deployment_timeout(tmp_path: Path, server: FakeOpenAI) -> None:
    """A deployment slower than its timeout falls back to the next group in about that time."""
    path = models_file(tmp_path, server, planner="slow-model", writer=None)
    doc = yaml.safe_load(path.read_text())
    doc["model_list"][0]["litellm_params"]["timeout"] = 0.5
    path.write_text(yaml.safe_dump(doc))
    server.script(Reply.tool_call("tech__check_service_status", {}))
    desk = desk_for(path)
    r = asyncio.run(desk.handle("c1", GIBBERISH))
    calls = model_events(desk, "c1")
    assert not calls[0].ok and "Timeout" in calls[0].error and calls[0].latency_ms < 2500
    assert calls[1].ok and r.stage == "llm"


def test_invalid_plan_is_rejected_and_the_cascade_moves_on(tmp_path: Path, server: FakeOpenAI) -> None:
    """A plan naming an unknown skill is rejected; with no group left the desk asks the customer."""
    server.script(Reply.tool_call("billing__launch_rockets", {}), Reply.tool_call("nope__nope", {}))
    desk = desk_for(models_file(tmp_path, server, writer=None), max_llm_calls=4)
    r = asyncio.run(desk.handle("c1", GIBBERISH))
    assert r.mode == "clarify"
    plan = next(x.event for x in desk.store.load("c1") if isinstance(x.event, PlanMade))
    assert "no usable plan" in plan.plan.verdicts[-1].reason  # type: ignore[union-attr]
    assert [c.ok for c in model_events(desk, "c1")] == [False, False]


def test_turn_budget_caps_what_the_server_sees(tmp_path: Path, server: FakeOpenAI) -> None:
    """With the default budget of 2 and a writer configured, a failing planner gets one try only."""
    desk = desk_for(models_file(tmp_path, server, planner="bad-model"))
    r = asyncio.run(desk.handle("c1", GIBBERISH))
    assert server.count() <= 2 and r.llm_calls == server.count()
    assert r.mode == "clarify"  # the planner failed; the embedded default asks
    assert server.count("good-model") == 0  # no budget left for the planner's fallback


def test_cost_fallback_picks_the_cheaper_group(tmp_path: Path, server: FakeOpenAI) -> None:
    """A group whose estimated cost passes the turn's cap is replaced by its cheaper group."""
    path = models_file(tmp_path, server, writer=None, cost_fallbacks={"planner": "planner-cheap"})
    doc = yaml.safe_load(path.read_text())
    doc["model_list"][0]["litellm_params"].update(input_cost_per_token=1.0, output_cost_per_token=1.0)
    doc["model_list"].append(deployment("planner-cheap", "cheap-model", server,
                                        input_cost_per_token=1e-9, output_cost_per_token=1e-9))
    path.write_text(yaml.safe_dump(doc))
    server.script(Reply.tool_call("tech__check_service_status", {}))
    desk = desk_for(path)
    asyncio.run(desk.handle("c1", GIBBERISH))
    calls = model_events(desk, "c1")
    assert [c.model_group for c in calls] == ["planner-cheap"]
    assert "cost fallback" in calls[0].fallbacks[0]
    assert server.count("good-model") == 0 and server.count("cheap-model") == 1


def test_same_text_is_planned_once(tmp_path: Path, server: FakeOpenAI) -> None:
    """An identical query at temperature 0 is served from the plan cache: no second planner call."""
    server.script(Reply.tool_call("tech__check_service_status", {}), Reply.tool_call("tech__check_service_status", {}))
    desk = desk_for(models_file(tmp_path, server, writer=None))
    first = asyncio.run(desk.handle("a", GIBBERISH))
    second = asyncio.run(desk.handle("b", GIBBERISH + "  "))
    assert (first.stage, second.stage) == ("llm", "cache")
    assert server.count() == 1


def test_structured_only_skips_the_writer(tmp_path: Path, server: FakeOpenAI) -> None:
    """A caller that wants results only gets the template reply and one model call."""
    server.script(Reply.tool_call("tech__check_service_status", {}))
    desk = desk_for(models_file(tmp_path, server))
    r = asyncio.run(desk.handle("c1", GIBBERISH, structured_only=True))
    assert r.llm_calls == 1 == server.count()


def test_ungrounded_model_reply_falls_back_to_the_template(tmp_path: Path, server: FakeOpenAI) -> None:
    """A writer that invents an amount is refused; the template reply is sent instead."""
    server.script(Reply.text("Good news: we refunded you $5,000.00!"))
    desk = desk_for(models_file(tmp_path, server), abstain_threshold=None)
    r = asyncio.run(desk.handle("c1", "I was charged twice for invoice INV-1001"))
    assert "$5,000.00" not in (r.reply or "") and "INV-1001" in (r.reply or "")
    writer = model_events(desk, "c1")[-1]
    assert writer.role == "writer" and not writer.ok and "invalid output" in writer.error


def test_replay_uses_recorded_outputs_and_calls_no_model(tmp_path: Path, server: FakeOpenAI) -> None:
    """Replaying a conversation with model calls reproduces it with zero server requests."""
    server.script(Reply.tool_call("billing__lookup_invoice", {"invoice_id": "INV-1001"}), Reply.text("Invoice INV-1001: $49.00."))
    desk = desk_for(models_file(tmp_path, server, planner="bad-model"), max_llm_calls=3)
    asyncio.run(desk.handle("c1", GIBBERISH))
    seen = server.count()
    turns = asyncio.run(replay(desk, "c1"))
    assert [t.differences for t in turns] == [()]
    assert server.count() == seen


def test_ask_json_reports_cost_and_latency(tmp_path: Path, server: FakeOpenAI) -> None:
    """`deskline ask --models FILE --json` reports calls, cost and latency for the turn."""
    import os
    import subprocess
    import sys

    server.script(Reply.tool_call("tech__check_service_status", {}), Reply.text("No incidents right now."))
    path = models_file(tmp_path, server)
    env = {**os.environ, "DESKLINE_DATABASE_URL": f"sqlite:///{tmp_path}/d.db", "DESKLINE_ABSTAIN_THRESHOLD": "0.99999"}
    done = subprocess.run([sys.executable, "-m", "deskline.cli", "ask", "what's up with the thing", "--models",
                           str(path), "--json"], env=env, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    out = json.loads(done.stdout)
    assert out["llm_calls"] == server.count() <= 2
    assert out["cost_usd"] > 0 and out["latency_ms"] > 0


def test_plans_are_shared_through_redis_with_a_ttl(tmp_path: Path, server: FakeOpenAI) -> None:
    """A second process (a second desk) reuses the first one's plan from Redis, under a TTL."""
    import uuid

    import redis

    from tests.conftest import REDIS_URL, service_unavailable

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as exc:
        service_unavailable("Redis at 127.0.0.1:6379", exc)
    text = f"{GIBBERISH} {uuid.uuid4().hex[:6]}"
    path = models_file(tmp_path, server, writer=None, redis_url=REDIS_URL, plan_cache_ttl_s=60)
    server.script(Reply.tool_call("tech__check_service_status", {}))
    first = asyncio.run(desk_for(path).handle("a", text))
    second = asyncio.run(desk_for(path).handle("b", text))  # a fresh desk: empty local cache
    assert (first.stage, second.stage) == ("llm", "cache") and server.count() == 1
    keys = [k for k in client.scan_iter("deskline:plan:*") if text.encode() in k]
    assert keys and 0 < client.ttl(keys[0]) <= 60
    client.delete(*keys)


def test_failed_verification_asks_the_model_what_next_within_bounds(tmp_path: Path, server: FakeOpenAI) -> None:
    """An ungrounded reply makes one verifier call (bounded rounds), then the turn escalates."""
    from deskline.agents.registry import Skill
    from deskline.hierarchy.desk import SupportDesk
    from tests.fakes import BUILTIN, NoParams, builtin_with
    from tests.test_desk import _invent

    liar = Skill(name="billing.liar", agent="billing", description="invents", params=NoParams, run=_invent,
                 intents=frozenset({"transaction_charged_twice"}), templates={"default": "Refunded $999.00."})
    base = desk_for(models_file(tmp_path, server, writer=None), abstain_threshold=None, max_llm_calls=3)
    desk = SupportDesk(store=base.store, desk=builtin_with([liar, *BUILTIN.skills]), records=base.records,
                       classifier=base.tactician.classifier, settings=base.settings, models=base.models)
    server.script(Reply.tool_call("re_execute", {}), Reply.tool_call("re_execute", {}))
    r = asyncio.run(desk.handle("c1", "I was charged twice for invoice INV-1001"))
    roles = [c.role for c in model_events(desk, "c1")]
    assert roles == ["verifier"]  # verify_rounds = 1
    assert r.escalated and "$999.00" not in (r.reply or "")
    assert [t.differences for t in asyncio.run(replay(desk, "c1"))] == [()]


@pytest.mark.parametrize(("configured", "sent"), [(None, "auto"), ({"planner": "required"}, "required")])
def test_tool_choice_comes_from_the_models_file(tmp_path: Path, server: FakeOpenAI, configured: Any, sent: str) -> None:
    """The planner's tool_choice is `auto` unless the models file says otherwise per role (a stock
    llama-cpp-python server refuses `required`)."""
    extra = {"tool_choice": configured} if configured else {}
    desk = desk_for(models_file(tmp_path, server, writer=None, **extra))
    asyncio.run(desk.handle("c1", "something about my account and a thing I was charged for"))
    planned = [r for r in server.requests if r.had_tools]
    assert planned and {r.tool_choice for r in planned} == {sent}


def test_a_turn_never_waits_past_its_deadline(tmp_path: Path, server: FakeOpenAI) -> None:
    """A planner that hangs is cut at its role's timeout, well inside the turn's deadline, and the
    turn ends with the desk's own reply instead of waiting for the provider."""
    import time

    server.script(Reply.tool_call("billing__lookup_invoice", {"invoice_id": "INV-1001"}).delayed(5),
                  Reply.tool_call("billing__lookup_invoice", {"invoice_id": "INV-1001"}).delayed(5))
    desk = desk_for(models_file(tmp_path, server, turn_deadline_s=1.0, role_timeout_s={"planner": 0.6}))
    started = time.monotonic()
    r = asyncio.run(desk.handle("c1", GIBBERISH))
    took = time.monotonic() - started
    assert took < 2.0, took
    calls = model_events(desk, "c1")
    assert [c.role for c in calls] == ["planner"]  # one call left for the writer, which never runs
    assert not calls[0].ok and calls[0].error.startswith("timeout")
    without = asyncio.run(memory_desk(Settings()).handle("c1", GIBBERISH))
    assert (r.mode, r.reply) == (without.mode, without.reply)  # the embedded default's answer, in time


def test_a_group_that_timed_out_is_skipped_for_the_rest_of_the_turn() -> None:
    """The fallback walk does not try a group that already timed out in this turn, nor anything past the deadline."""
    import time

    from deskline.routing.llm_config import ModelsFile
    from deskline.routing.models import ModelRouter, TurnBudget

    config = ModelsFile.model_validate({"model_list": [
        {"model_name": "planner", "litellm_params": {"model": "openai/x", "api_base": "http://127.0.0.1:9"}}]})
    router = ModelRouter(config)
    skipped = TurnBudget(max_calls=5)
    skipped.skipped.add("planner")

    async def never(model: Any) -> None:
        raise AssertionError("no call may be made")

    assert asyncio.run(router.call("planner", never, skipped)).value is None
    late = TurnBudget(max_calls=5, deadline=time.monotonic() - 1)
    assert asyncio.run(router.call("planner", never, late)).value is None


@pytest.mark.parametrize(("text", "planned", "instead"), [
    ("Is the app down?", "tech__reset_password", "tech.check_service_status"),
    ("send me the details of invoice INV-1001", "billing__review_duplicate_charge", "billing.lookup_invoice"),
])
def test_an_action_the_customer_did_not_ask_for_is_not_taken(tmp_path: Path, server: FakeOpenAI, text: str,
                                                             planned: str, instead: str) -> None:
    """The model proposes, the desk disposes: a planned action the customer's words do not ask for
    becomes its agent's lookup, and nothing is changed."""
    from deskline.eventlog.events import ActionCompleted, PlanMade

    arguments = {"invoice_id": "INV-1001"} if "invoice" in planned else {}
    server.script(Reply.tool_call(planned, arguments), Reply.text("x"))
    desk = desk_for(models_file(tmp_path, server, writer=None))
    asyncio.run(desk.handle("c1", text))
    events = [r.event for r in desk.store.load("c1")]
    plan = next(e.plan for e in events if isinstance(e, PlanMade))
    assert [s.skill for s in plan.steps] == [instead] and "did not ask for" in plan.verdicts[-1].reason
    assert not any(isinstance(e, ActionCompleted) for e in events)


# ------------------------------------------------------------------ the speed levers and the litellm
# internals they rely on (litellm 1.83): an upgrade that changes one fails here, not in production.

def _instant_provider() -> Any:
    """An instant in-process litellm provider (``local/``) that answers with one tool call."""
    import litellm
    from litellm import CustomLLM

    class Instant(CustomLLM):
        async def acompletion(self, model: str, messages: list[Any], *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            return litellm.ModelResponse(
                choices=[{"message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop", "index": 0}],
                model=model, usage={"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110})

    litellm.custom_provider_map = [{"provider": "local", "custom_handler": Instant()}]
    litellm.utils.custom_llm_setup()
    return litellm


def _router(params: dict[str, Any], **router_settings: Any):  # type: ignore[no-untyped-def]
    from deskline.routing.llm_config import ModelsFile
    from deskline.routing.models import ModelRouter

    return ModelRouter(ModelsFile.model_validate({"model_list": [{"model_name": "planner", "litellm_params": params}],
                                                  "router_settings": router_settings}))


PRICED = {"model": "local/instant", "input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}
HELLO = {"messages": [{"role": "user", "content": "hello"}]}


def test_prices_move_to_model_info_with_the_same_cost(monkeypatch: pytest.MonkeyPatch) -> None:
    """Prices in litellm_params make every litellm call re-register the model (and rebuild its
    price index); the desk hands them to the Router as model_info, which costs a call the same."""
    litellm = _instant_provider()
    from deskline.routing.models import router_model_list

    moved = router_model_list([{"model_name": "planner", "litellm_params": dict(PRICED)}])
    assert moved[0]["litellm_params"] == {"model": "local/instant"}
    assert moved[0]["model_info"] == {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}
    registered: list[Any] = []
    real = litellm.register_model
    monkeypatch.setattr(litellm, "register_model", lambda *a, **k: registered.append(a or k) or real(*a, **k))
    old = litellm.Router(model_list=[{"model_name": "planner", "litellm_params": dict(PRICED)}], num_retries=0)
    router = _router(dict(PRICED))
    registered.clear()
    before = asyncio.run(old.acompletion(model="planner", **HELLO))
    assert registered, "litellm 1.83 registers litellm_params prices on every call: the lever is moot now"
    registered.clear()
    after = asyncio.run(router.complete("planner", "planner", HELLO))
    assert registered == []
    expected = 100 * 1e-6 + 10 * 2e-6
    assert before._hidden_params["response_cost"] == pytest.approx(expected)
    assert after._hidden_params["response_cost"] == pytest.approx(expected)


def test_litellm_setup_runs_in_line_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """litellm.acompletion hands completion()'s set-up to the loop's default executor; for a
    provider with no blocking set-up the desk's executor runs exactly that job in line, and any
    other job (or a provider not on the list) still gets a thread."""
    _instant_provider()
    from deskline.routing import models as M

    inlined: list[str] = []
    threaded: list[str] = []
    real_submit = M.InlineCompletionExecutor.submit

    def submit(self: Any, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        (inlined if M._INLINE.get() and M._is_completion(fn) else threaded).append(getattr(fn, "__name__", "job"))
        return real_submit(self, fn, *args, **kwargs)

    monkeypatch.setattr(M.InlineCompletionExecutor, "submit", submit)

    async def turn(router: Any) -> None:
        M.install_inline_executor(asyncio.get_running_loop())
        await router.complete("planner", "planner", HELLO)
        await asyncio.get_running_loop().run_in_executor(None, lambda: None)  # someone else's job

    asyncio.run(turn(_router(dict(PRICED))))
    assert len(inlined) == 1 and len(threaded) == 1
    inlined.clear()
    threaded.clear()
    monkeypatch.setattr(M, "INLINE_PROVIDERS", frozenset())
    asyncio.run(turn(_router(dict(PRICED))))
    assert inlined == [] and len(threaded) == 2


def test_an_applications_own_default_executor_is_left_alone() -> None:
    """A loop whose application set its own default executor keeps it: no inline set-up there."""
    from concurrent.futures import ThreadPoolExecutor

    from deskline.routing.models import InlineCompletionExecutor, install_inline_executor

    async def check() -> tuple[bool, bool]:
        loop = asyncio.get_running_loop()
        mine = ThreadPoolExecutor(max_workers=1)
        loop.set_default_executor(mine)
        return install_inline_executor(loop), isinstance(loop._default_executor, InlineCompletionExecutor)  # type: ignore[attr-defined]

    assert asyncio.run(check()) == (False, False)

    async def fresh() -> bool:
        return install_inline_executor(asyncio.get_running_loop())

    assert asyncio.run(fresh()) is True


def test_hosted_vllm_prefix_plans_against_an_openai_compatible_server(tmp_path: Path, server: FakeOpenAI) -> None:
    """``hosted_vllm/`` (litellm's own HTTP client, faster than ``openai/``) sends the tools and
    tool_choice an OpenAI-compatible server needs, and the desk plans with its answer."""
    path = models_file(tmp_path, server, writer=None)
    doc = yaml.safe_load(path.read_text())
    for d in doc["model_list"]:
        d["litellm_params"]["model"] = d["litellm_params"]["model"].replace("openai/", "hosted_vllm/")
    path.write_text(yaml.safe_dump(doc))
    server.script(Reply.tool_call("billing__lookup_invoice", {"invoice_id": "INV-1001"}))
    desk = desk_for(path)
    r = asyncio.run(desk.handle("c1", NAMED))
    assert r.department == "billing" and r.stage == "llm"
    planned = [q for q in server.requests if q.had_tools]
    assert planned and planned[0].tool_choice == "auto" and planned[0].model == "good-model"
    assert model_events(desk, "c1")[0].cost_usd > 0


def test_a_model_plan_never_overrules_a_router_sure_at_its_calibrated_threshold(tmp_path: Path) -> None:
    """Forced to plan every turn, a model that sends a double charge to tech is overruled by the
    router, sure of billing at its own calibrated threshold; where the router is unsure the plan stands."""
    from deskline.testing import ModelBehaviour as Behaviour
    from deskline.testing.fake_brain import Reply as Said

    def wrong(request: dict[str, Any]) -> Said:
        return Said.tool_call("tech__check_service_status", {})

    with FakeOpenAI(models={"wrong-model": Behaviour(brain=wrong)}) as server:
        desk = desk_for(models_file(tmp_path, server, planner="wrong-model", writer=None, fallbacks=False),
                        abstain_threshold=1.0)  # every turn goes to the planner
        sure = asyncio.run(desk.handle("c1", "I was charged twice for invoice INV-1001"))
        unsure = asyncio.run(desk.handle("c2", GIBBERISH))
    assert sure.department == "billing" and sure.stage == "classifier"
    plan = next(r.event for r in desk.store.load("c1") if isinstance(r.event, PlanMade))
    assert "the router is sure of billing" in plan.plan.verdicts[-1].reason
    assert unsure.department == "tech" and unsure.stage == "llm"


def test_the_planners_question_is_sent_only_when_it_is_a_proper_question(tmp_path: Path, server: FakeOpenAI) -> None:
    """ask_customer: the model's question reaches the customer when it passes the checks; a form
    label is refused, the desk's own question is sent, and the event and the eval say why."""
    from deskline.eventlog.events import ReplySent
    from deskline.evals.runner import run_turn

    good, bad = "Which invoice do you mean?", "What is your name? (optional):"
    server.script(Reply.tool_call("ask_customer", {"question": good}),
                  Reply.tool_call("ask_customer", {"question": bad}))
    desk = desk_for(models_file(tmp_path, server, writer=None))
    asked = asyncio.run(desk.handle("c1", "zorp the flibber quux"))
    assert (asked.mode, asked.reply) == ("clarify", good)
    seen = asyncio.run(run_turn(desk, "c2", "blarg the wibble flonk"))  # another text: no route-cache hit
    assert seen.reply and seen.reply != bad and "name" not in seen.reply
    sent = [r.event for r in desk.store.load("c2") if isinstance(r.event, ReplySent)]
    assert "not a question" in sent[-1].refused
    planner = [c for c in seen.model_calls if c.role == "planner"]
    assert planner and not planner[-1].ok and planner[-1].kind == "rejected" and "question" in planner[-1].reason


def test_a_failed_planner_leaves_routing_as_the_router_had_it(tmp_path: Path, server: FakeOpenAI) -> None:
    """Forced to plan every turn, a model that answers without a tool call changes nothing the
    router was sure of: out of scope stays out of scope, a department stays that department."""
    desk = desk_for(models_file(tmp_path, server, writer=None, fallbacks=False))
    plain = memory_desk(Settings())
    for i, text in enumerate(("what's the weather like tomorrow", "can you recommend a good pizza place",
                              "I was charged twice for invoice INV-1001")):
        server.script(Reply.text("Sure! Let me help you with that."))
        with_model = asyncio.run(desk.handle(f"m{i}", text))
        without = asyncio.run(plain.handle(f"p{i}", text))
        assert (with_model.department, with_model.mode, with_model.reply) == (without.department, without.mode,
                                                                               without.reply), text
        asked = model_events(desk, f"m{i}")
        assert with_model.stage in ("classifier", "workflow") and all(not c.ok for c in asked), (text, asked)
