"""Observability: the span tree of a turn, metrics counted from events, trace ids in logs, explain."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from deskline.config import Settings
from deskline.hierarchy.explain import explain, render
from deskline.observe.metrics import DeskMetrics
from deskline.observe.tracing import NullTracer, OtelTracer, span, trace_ids, use_tracer
from deskline.runtime import memory_desk, open_desk
from deskline.testing import FakeOpenAI, ModelBehaviour, Reply
from tests.test_models import models_file

PARALLEL = "The app keeps crashing on login and also my transfer to my landlord hasn't arrived"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Spans of the test, kept in memory; the no-op tracer comes back afterwards."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    use_tracer(OtelTracer(provider.get_tracer("test")))
    yield exporter
    use_tracer(NullTracer())


def test_parallel_turn_span_tree(spans: InMemorySpanExporter) -> None:
    """One turn span; strategy, triage, operation and writer under it; handoffs under operation; skills under handoffs."""
    desk = memory_desk()
    asyncio.run(desk.handle("c1", PARALLEL))
    finished = spans.get_finished_spans()
    by_id = {s.context.span_id: s for s in finished}

    def parent(s):  # type: ignore[no-untyped-def]
        return by_id[s.parent.span_id].name if s.parent else None

    turn = next(s for s in finished if s.name == "deskline.turn")
    assert turn.parent is None and turn.attributes["deskline.conversation_id"] == "c1"
    assert turn.attributes["deskline.mode"] == "parallel"
    for name in ("deskline.strategy", "deskline.triage", "deskline.operation", "deskline.writer"):
        assert parent(next(s for s in finished if s.name == name)) == "deskline.turn", name
    assert parent(next(s for s in finished if s.name == "deskline.triage.classifier")) == "deskline.triage"
    handoffs = [s for s in finished if s.name == "deskline.handoff"]
    assert len(handoffs) == 2 and {parent(h) for h in handoffs} == {"deskline.operation"}
    skills = [s for s in finished if s.name == "deskline.skill"]
    assert {parent(s) for s in skills} == {"deskline.handoff"}
    assert {s.attributes["deskline.skill"] for s in skills} == {"tech.check_service_status", "payment.transfer_status"}
    assert len({s.context.trace_id for s in finished}) == 1


def test_model_call_spans_follow_genai_conventions(spans: InMemorySpanExporter, tmp_path: Path) -> None:
    """A model call is a 'chat GROUP' span with gen_ai attributes under the triage span."""
    with FakeOpenAI() as server:
        server.script(Reply.tool_call("tech__check_service_status", {}))
        desk = memory_desk(Settings(models_path=models_file(tmp_path, server, writer=None), abstain_threshold=0.99999))
        asyncio.run(desk.handle("c1", "zorp the flibber quux"))
    chat = next(s for s in spans.get_finished_spans() if s.name == "chat planner")
    assert chat.attributes["gen_ai.operation.name"] == "chat"
    assert chat.attributes["gen_ai.usage.input_tokens"] > 0
    assert str(chat.attributes["gen_ai.response.model"]).endswith("good-model")


def test_trace_ids_reach_the_logs(spans: InMemorySpanExporter) -> None:
    """Inside a span, log lines get the trace and span ids; outside, nothing is added."""
    with span("outer"):
        ids = trace_ids()
    assert len(ids["trace_id"]) == 32 and len(ids["span_id"]) == 16
    assert trace_ids() == {}


def test_metrics_count_what_the_turns_did() -> None:
    """After a few turns the scrape shows the turns, escalations, skills and store appends they caused."""
    metrics = DeskMetrics()
    desk = memory_desk(observer=metrics)
    for text in ("I was charged twice for invoice INV-1001", "is the service down?", "I want to talk to a real person"):
        asyncio.run(desk.handle(None, text))
    text = metrics.scrape().decode()
    assert 'deskline_turns_total{department="billing",mode="single",stage="classifier"} 1.0' in text
    assert 'deskline_turns_total{department="human",mode="escalate",stage="rules"} 1.0' in text
    assert 'deskline_escalations_total{reason="asked_for_person"} 1.0' in text
    assert 'deskline_skill_results_total{skill="billing.review_duplicate_charge",status="ok"} 1.0' in text
    assert "deskline_store_append_seconds_count 6.0" in text  # accept + decide, three turns
    assert 'deskline_stage_latency_seconds_count{stage="triage"} 3.0' in text
    assert "deskline_turn_latency_seconds_count 3.0" in text


def test_explain_a_turn_with_cascade_parallel_escalation_and_fallback(tmp_path: Path) -> None:
    """explain shows each stage's verdict, the plan, handoffs, the failed and the fallback model call."""
    with FakeOpenAI(models={"bad-model": ModelBehaviour(always="500")}) as server:
        server.script(Reply.tool_call("plan_execution", {"steps": [
            {"step_id": "s1", "skill": "tech__check_service_status"},
            {"step_id": "s2", "skill": "payment__transfer_status"}]}))
        path = models_file(tmp_path, server, planner="bad-model", writer=None)
        desk = memory_desk(Settings(models_path=path, abstain_threshold=0.99999, max_llm_calls=3))
        asyncio.run(desk.handle("c1", "zorp the flibber quux"))
        asyncio.run(desk.handle("c1", "I want to talk to a real person"))
    [first, second] = explain(desk.store.load("c1"))
    assert [v["stage"] for v in first.stages] == ["cache", "classifier", "llm"]
    assert "below threshold" in first.stages[1]["reason"]
    assert first.plans[0]["mode"] == "parallel" and len(first.handoffs) == 2
    assert [m["ok"] for m in first.model_calls] == [False, True]
    assert first.model_calls[1]["fallbacks"] == ["planner"]
    assert second.escalation is not None and second.stages[0]["stage"] == "rules"
    lines = "\n".join(render([first, second]))
    assert "FAILED" in lines and "after planner" in lines and "escalated (priority 2)" in lines


def test_explain_command(tmp_path: Path) -> None:
    """`deskline explain ID --json` prints the turns; an unknown id exits 1 with a message."""
    url = f"sqlite:///{tmp_path}/d.db"
    desk = open_desk(Settings(database_url=url))
    asyncio.run(desk.handle("c1", PARALLEL))
    env = {**os.environ, "DESKLINE_DATABASE_URL": url}
    done = subprocess.run([sys.executable, "-m", "deskline.cli", "explain", "c1", "--json"], env=env,
                          capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    [turn] = json.loads(done.stdout)
    assert turn["plans"][0]["mode"] == "parallel" and turn["reply"]["grounded"] is True
    missing = subprocess.run([sys.executable, "-m", "deskline.cli", "explain", "nope"], env=env,
                             capture_output=True, timeout=60)
    assert missing.returncode == 1 and b"no conversation" in missing.stderr
