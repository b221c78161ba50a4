"""Remote agents over real HTTP: the built-in desk with its billing agent served by an agent server
(uvicorn on a loopback port) passes the same end-to-end tests as with the agent in process; a
server that is down or slow fails the step transiently, the step is retried with the same key,
and then the turn goes to a person; every key runs once on the agent.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from deskline import RemoteAgent, Settings, Skill, SkillCall, memory_desk
from deskline.agents.builtin import desk as BUILTIN
from deskline.agents.remote import RemoteSkill, TaskRequest
from deskline.agents.server import create_agent_app
from deskline.errors import SkillError
from deskline.eventlog.events import AgentFailed, CompensationCompleted, EscalationRequested
from deskline.eventlog.projections import fold
from deskline.handoffs import AgentResult
from deskline.handoffs.payload import Case, Constraints, Handoff
from deskline.hierarchy.humans import HumanConsole
from deskline.hierarchy.replay import replay
from tests.desks import rollback
from tests.fakes import KeywordClassifier
from tests.test_api import serve

TOKEN = "agent-token-for-tests"
DOUBLE = "I was charged twice for invoice INV-1001"
REFUNDED = ("You were charged twice for invoice INV-1001 ($49.00, issued March 1, 2025): CH-2001 and CH-2002. "
            "I've refunded the duplicate charge CH-2002; your refund reference is RF-2002, and the money should be "
            "back by March 24, 2025.")


@dataclasses.dataclass
class Setup:
    """A desk, and the system of record its billing agent acts on (in process, or the server's)."""

    desk: Any
    billing: Any
    url: str = ""


@pytest.fixture(params=["local", "remote"])
def setup(request: pytest.FixtureRequest) -> Iterator[Setup]:
    """The built-in desk with billing in process, then with billing served over HTTP."""
    if request.param == "local":
        desk = memory_desk()
        yield Setup(desk, desk.records)
        return
    app = create_agent_app(BUILTIN, token=TOKEN, agents=["billing"])
    with serve(app) as url:
        desk = memory_desk(desk=BUILTIN.with_remote(billing=RemoteAgent(url, token=TOKEN)))
        yield Setup(desk, app.state.records, url)


def say(desk: Any, text: str, cid: str = "c1") -> Any:
    return asyncio.run(desk.handle(cid, text))


def refunded(records: Any, invoice: str = "INV-1001") -> list[str]:
    return [c.id for c in records.charges("C-1001", invoice) if c.status == "refunded"]


# -- the same end-to-end tests, local and remote ---------------------------------------------------


def test_a_billing_turn_records_the_same_events_and_refunds_once(setup: Setup) -> None:
    """A duplicate charge: one handoff, the refund done once by whoever owns billing, the same reply."""
    r = say(setup.desk, DOUBLE)
    assert (r.department, r.mode, r.escalated, r.reply) == ("billing", "single", False, REFUNDED)
    assert [x.event.type for x in setup.desk.store.load("c1")] == [
        "conversation_opened", "customer_messaged", "strategy_decided", "plan_made", "handoff_sent",
        "action_requested", "action_completed", "agent_completed", "reply_sent"]
    assert refunded(setup.billing) == ["CH-2002"]
    if setup.url:
        assert all(c.status == "captured" for c in setup.desk.records.charges("C-1001", "INV-1001"))


def test_slot_filling_resumes_a_billing_plan(setup: Setup) -> None:
    """A missing invoice id becomes a question; the answer resumes the plan on the agent."""
    first = say(setup.desk, "I was charged twice on an invoice")
    assert first.department == "billing" and "invoice number" in (first.reply or "")
    second = say(setup.desk, "it's INV-1001")
    assert second.stage == "resume" and second.reply == REFUNDED


def test_a_refund_over_the_limit_waits_for_a_person_who_approves_it_once(setup: Setup) -> None:
    """The agent's approval gate stops the $750 refund; a person's approval runs it once, under its key."""
    r = say(setup.desk, "I was charged twice for invoice INV-1003")
    assert r.escalated and "approval" in (r.reply or "")
    assert refunded(setup.billing, "INV-1003") == []
    console = HumanConsole(setup.desk)
    console.claim("c1", "dana")
    asyncio.run(console.decide_action("c1", "dana", approve=True))
    assert refunded(setup.billing, "INV-1003") == ["CH-2005"]
    human = [x.event for x in setup.desk.store.load("c1") if x.event.type == "human_replied"]
    assert "RF-2005" in human[-1].text  # type: ignore[union-attr]


def test_a_retried_turn_repeats_no_refund(setup: Setup) -> None:
    """Deciding the same turn again gets the first refund's facts back; the charge is refunded once."""
    r = say(setup.desk, DOUBLE)
    state = fold("c1", [x for x in setup.desk.store.load("c1")
                        if x.event.type in ("conversation_opened", "customer_messaged")])
    again = asyncio.run(setup.desk.decide(state, state.turns[-1]))
    assert again[-1].text == r.reply  # type: ignore[union-attr]
    assert refunded(setup.billing) == ["CH-2002"]


def test_a_parallel_plan_with_a_billing_step_and_its_replay(setup: Setup) -> None:
    """Billing and tech together; the replay reproduces the turn from the log, calling no agent."""
    r = say(setup.desk, "I was charged twice for invoice INV-1001 and also the app keeps crashing on login")
    assert r.mode == "parallel" and (r.reply or "").startswith(REFUNDED)
    assert [t.same for t in asyncio.run(replay(setup.desk, "c1"))] == [True]
    assert refunded(setup.billing) == ["CH-2002"]


# -- what only a remote agent can do: be down, be slow -----------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_server_that_is_down_fails_transiently_is_retried_then_escalates() -> None:
    """Connection refused is transient: the step is tried 1 + retries times, then a person gets the turn."""
    url = f"http://127.0.0.1:{_closed_port()}"
    desk = memory_desk(desk=BUILTIN.with_remote(billing=RemoteAgent(url, token=TOKEN, timeout_s=1.0)))
    r = say(desk, DOUBLE)
    assert r.escalated and r.reply == BUILTIN.texts.failed
    failed = next(x.event for x in desk.store.load("c1") if isinstance(x.event, AgentFailed))
    assert failed.attempts == desk.settings.step_retries + 1 == 3
    assert "agent billing is unreachable (ConnectError)" in failed.error
    escalation = next(x.event for x in desk.store.load("c1") if isinstance(x.event, EscalationRequested))
    assert "unreachable" in escalation.reason


class Nothing(BaseModel):
    pass


def test_a_slow_agent_is_stopped_at_the_deadline_and_retried_with_the_same_key() -> None:
    """The desk passes its step deadline: the agent stops there each time; three attempts, one key, a person."""
    started: list[str] = []
    finished: list[str] = []

    async def slow(call: SkillCall) -> AgentResult:
        started.append(call.key)
        await asyncio.sleep(1.5)
        finished.append(call.key)
        return call.result(summary="late")

    skill = Skill(name="billing.slow_summary", agent="billing", description="slow", params=Nothing, run=slow,
                  intents=frozenset({"invoice_question"}), templates={"default": "{summary}"}, facts=("summary",))
    served = dataclasses.replace(BUILTIN, skills=(skill, *BUILTIN.skills))
    app = create_agent_app(served, token=TOKEN, agents=["billing"])
    with serve(app) as url:
        remote = served.with_remote(billing=RemoteAgent(url, token=TOKEN))
        desk = memory_desk(Settings(step_timeout_s=0.3), desk=remote)
        desk.tactician.classifier = KeywordClassifier()
        took = time.perf_counter()
        r = say(desk, "a question about my invoice")
        took = time.perf_counter() - took
        time.sleep(0.2)
    failed = next(x.event for x in desk.store.load("c1") if isinstance(x.event, AgentFailed))
    assert failed.attempts == 3 and r.escalated and r.reply == BUILTIN.texts.failed
    assert started == ["c1:1:s1"] * 3 and finished == []  # the agent gave up at each deadline too
    assert took < 1.5


def test_the_agent_server_speaks_its_protocol() -> None:
    """Bearer auth, one run per key (a repeat is replayed), typed errors, task status and the OpenAPI document."""
    app = create_agent_app(BUILTIN, token=TOKEN, agents=["billing"])
    case = Case(conversation_id="p1", turn=1, customer_id="C-1001", intent="", department="billing")
    handoff = Handoff(step_id="s1", agent="billing", skill="billing.refund_charge", case=case,
                      constraints=Constraints(), idempotency_key="p1:1:s1")
    task = TaskRequest(skill="billing.refund_charge", handoff=handoff, params={"charge_id": "CH-2002"})
    with serve(app) as url, httpx.Client(base_url=url) as client:
        headers = {"Authorization": f"Bearer {TOKEN}", "Idempotency-Key": "p1:1:s1", "Content-Type": "application/json"}
        body = task.model_dump_json()
        assert client.post("/v1/tasks", content=body, headers={"Idempotency-Key": "p1:1:s1"}).status_code == 401
        first = client.post("/v1/tasks", content=body, headers=headers).json()
        again = client.post("/v1/tasks", content=body, headers=headers).json()
        assert first["state"] == "done" and not first["replayed"] and again["replayed"]
        assert again["result"] == first["result"] and first["result"]["facts"]["refund_id"] == "RF-2002"
        assert client.get("/v1/tasks/p1:1:s1", headers=headers).json()["state"] == "done"
        assert client.get("/v1/tasks/p1:1:s9", headers=headers).json()["state"] == "unknown"
        mismatch = client.post("/v1/tasks", content=body, headers={**headers, "Idempotency-Key": "other"})
        assert (mismatch.status_code, mismatch.json()["error"]) == (400, "key_mismatch")
        other = TaskRequest(skill="tech.unlock_account", handoff=handoff.model_copy(
            update={"skill": "tech.unlock_account", "agent": "tech"}))
        assert client.post("/v1/tasks", content=other.model_dump_json(), headers=headers).status_code == 404
        spec = client.get("/openapi.json").json()
    assert {"/v1/tasks", "/v1/tasks/{key}", "/v1/skills", "/healthz"} <= set(spec["paths"])
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert {"TaskRequest", "TaskResult", "TaskError", "AgentResult", "Handoff"} <= set(spec["components"]["schemas"])
    assert [c.status for c in app.state.records.charges("C-1001", "INV-1001")].count("refunded") == 1


def test_errors_come_back_as_the_desks_own() -> None:
    """A wrong token is not transient; a transient failure on the agent is; approval is a gate, not an error."""
    app = create_agent_app(BUILTIN, token=TOKEN, agents=["billing"])
    case = Case(conversation_id="e1", turn=1, customer_id="C-1001", intent="", department="billing")
    handoff = Handoff(step_id="s1", agent="billing", skill="billing.refund_charge", case=case,
                      constraints=Constraints(), idempotency_key="e1:1:s1")
    from deskline.agents.registry import ApprovalRequired

    params = BUILTIN.registry["billing.refund_charge"].params.model_validate({"charge_id": "CH-2005"})
    with serve(app) as url:
        wrong = RemoteSkill(RemoteAgent(url, token="nope"), "billing", "billing.refund_charge")
        with pytest.raises(SkillError) as caught:
            asyncio.run(wrong(SkillCall(handoff=handoff, params=params, records=None)))
        assert caught.value.transient is False and caught.value.fields["code"] == "unauthorized"
        right = RemoteSkill(RemoteAgent(url, token=TOKEN), "billing", "billing.refund_charge")
        with pytest.raises(ApprovalRequired) as gate:  # $750 is over the $500 limit in the handoff
            asyncio.run(right(SkillCall(handoff=handoff, params=params, records=None)))
        assert gate.value.amount is not None and str(gate.value.amount) == "$750.00"


def test_a_remote_agent_undoes_its_own_action_once_when_the_plan_fails() -> None:
    """Compensation crosses the wire too: the agent relocks under <key>:undo, once, even when the turn is retried."""
    served = rollback.desk
    app = create_agent_app(served, token=TOKEN, agents=["tech"])
    with serve(app) as url:
        desk = memory_desk(desk=served.with_remote(tech=RemoteAgent(url, token=TOKEN)))
        r = say(desk, "please unlock my account and sync my devices")
        assert r.escalated
        agent_records = app.state.records
        assert agent_records.customer("C-1001").status == "locked"
        assert desk.records.customer("C-1001").status == "locked"  # the desk's own copy was never touched
        state = fold("c1", [x for x in desk.store.load("c1")
                            if x.event.type in ("conversation_opened", "customer_messaged")])
        again = asyncio.run(desk.decide(state, state.turns[-1]))
        assert [type(e) for e in again].count(CompensationCompleted) == 1
    assert [k for k in agent_records._ledger if k.endswith(":undo")] == ["c1:1:unlock:undo"]


def test_a_desk_may_declare_skills_only_its_remote_agent_implements() -> None:
    """`run=remote_only`: the desk plans and writes with the declaration, the agent runs the skill;
    such a desk without the remote agent does not load."""
    from deskline.agents import remote_only
    from deskline.definition import DeskDefinitionError, validate

    declared = tuple(dataclasses.replace(s, run=remote_only) if s.agent == "billing" else s for s in BUILTIN.skills)
    hollow = dataclasses.replace(BUILTIN, skills=declared)
    with pytest.raises(DeskDefinitionError, match=r"'billing\.refund_charge' runs only on a remote agent"):
        validate(hollow)
    app = create_agent_app(BUILTIN, token=TOKEN, agents=["billing"])
    with serve(app) as url:
        desk = memory_desk(desk=hollow.with_remote(billing=RemoteAgent(url, token=TOKEN)))
        assert say(desk, DOUBLE).reply == REFUNDED


def test_deskline_agent_server_serves_a_desks_agent(tmp_path: Path) -> None:
    """`deskline agent-server --agent billing` answers a desk's refund over HTTP on its own database."""
    port = _closed_port()
    env = {**os.environ, "DESKLINE_AGENT_TOKEN": TOKEN, "DESKLINE_DATABASE_URL": f"sqlite:///{tmp_path}/agent.db"}
    proc = subprocess.Popen([sys.executable, "-m", "deskline.cli", "agent-server", "--agent", "billing",
                             "--port", str(port)], env=env, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the agent server did not start"
            time.sleep(0.1)
        desk = memory_desk(desk=BUILTIN.with_remote(billing=RemoteAgent(url, token=TOKEN)))
        assert say(desk, DOUBLE).reply == REFUNDED
    finally:
        proc.terminate()
        proc.wait(10)
    from deskline.agents.builtin.backend.sql import SqlBackend

    agent_db = SqlBackend.from_url(f"sqlite:///{tmp_path}/agent.db")
    assert refunded(agent_db) == ["CH-2002"]
