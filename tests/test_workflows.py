"""Declared workflows: validated with the desk, chosen as one plan (locally or by the model planner
in its one call), run node by node with conditions and parallel branches, explained and replayed.

The built-in desk declares ``failed_payment`` in YAML (deskline/agents/builtin/workflows.yaml):
the payment and the account are checked together, and the payment is retried only if it failed
and the account is active.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

import pytest
from pydantic import BaseModel

from deskline import Edge, Node, Settings, Skill, SkillCall, Workflow, load_workflows, memory_desk
from deskline.agents.builtin import desk as BUILTIN
from deskline.definition import DeskDefinitionError, validate
from deskline.eventlog.events import AgentCompleted, HandoffSent, PlanMade, WorkflowFinished
from deskline.handoffs import AgentResult
from deskline.hierarchy.explain import explain, render
from deskline.hierarchy.replay import replay
from deskline.testing import FakeOpenAI, Reply
from tests.test_models import models_file

SORT_OUT = "please sort out my failed payment PAY-3101"  # C-1002: the payment failed, the account is active


def finished(desk, cid: str) -> WorkflowFinished:  # type: ignore[no-untyped-def]
    return next(r.event for r in desk.store.load(cid) if isinstance(r.event, WorkflowFinished))


def test_a_declared_workflow_runs_end_to_end_with_a_condition_and_a_parallel_branch() -> None:
    """Both checks run together; the condition holds, so the retry runs on the payment the check found."""
    desk = memory_desk(Settings(default_customer="C-1002"))
    r = asyncio.run(desk.handle("w1", SORT_OUT))
    assert (r.department, r.mode, r.stage, r.llm_calls, r.escalated) == ("payment", "sequential", "rules", 0, False)
    assert r.reply == ("I've resubmitted payment PAY-3101 of $35.00 to Northside Gym; it is pending now and "
                       "should arrive by March 16, 2025.")  # the last word on the path speaks
    records = [x.event for x in desk.store.load("w1")]
    plan = next(e.plan for e in records if isinstance(e, PlanMade))
    assert plan.workflow == "failed_payment" and [s.step_id for s in plan.steps] == ["payment", "account", "retry"]
    kinds = [e.type for e in records]
    first_result = kinds.index("agent_completed")
    sent = [e.handoff.step_id for e in records if isinstance(e, HandoffSent)]
    assert sent[:2] == ["payment", "account"] and kinds[first_result - 2:first_result] == ["handoff_sent"] * 2
    retry = next(e for e in records if isinstance(e, HandoffSent) and e.handoff.step_id == "retry").handoff
    assert {u.step_id for u in retry.upstream} == {"payment", "account"}
    assert [(n.node, n.outcome) for n in finished(desk, "w1").nodes] == [
        ("payment", "ok"), ("account", "ok"), ("retry", "ok")]
    assert finished(desk, "w1").outcome == "completed"
    assert desk.records.payment("C-1002", "PAY-3101").status == "pending"


def test_a_condition_that_does_not_hold_skips_the_node_and_says_why() -> None:
    """A locked account (C-1001): no retry; the reply gives both checks, the log says why the retry was skipped."""
    desk = memory_desk()
    r = asyncio.run(desk.handle("w1", "please sort out my failed payment PAY-3002"))
    assert "is locked" in (r.reply or "") and "failed because the receiving bank declined it" in (r.reply or "")
    nodes = {n.node: n for n in finished(desk, "w1").nodes}
    assert nodes["retry"].outcome == "skipped"
    assert nodes["retry"].reason == "account: account_status is locked, not active"
    assert desk.records.payment("C-1001", "PAY-3002").status == "failed"
    assert not any(isinstance(x.event, HandoffSent) and x.event.handoff.step_id == "retry"
                   for x in desk.store.load("w1"))


def test_explain_shows_the_workflow_node_by_node_and_replay_reproduces_it() -> None:
    """`deskline explain` prints each node: what it waited on and how it ended; replay decides the same."""
    desk = memory_desk(Settings(default_customer="C-1002"))
    asyncio.run(desk.handle("w1", SORT_OUT))
    text = "\n".join(render(explain(desk.store.load("w1"))))
    assert "  workflow failed_payment: completed" in text
    assert "    node payment payment.transfer_status -> ok" in text
    assert ("    node retry payment.retry_payment after payment if status = failed, "
            "account if account_status = active -> ok") in text
    assert [t.same for t in asyncio.run(replay(desk, "w1"))] == [True]
    assert desk.records.payment("C-1002", "PAY-3101").retries == 1  # replay ran nothing


class Slow(BaseModel):
    pass


def test_independent_nodes_run_in_parallel_and_inputs_come_from_upstream_outputs() -> None:
    """Two 0.3 s nodes in one wave take ~0.3 s together; a later node reads a named output of one of them."""

    async def slow(call: SkillCall) -> AgentResult:
        await asyncio.sleep(0.3)
        return call.result(ticket=f"T-{call.handoff.step_id}")

    class Ticket(BaseModel):
        payment_id: str

    async def echo(call: SkillCall) -> AgentResult:
        return call.result(echoed=call.params_as(Ticket).payment_id)

    skills = (Skill(name="tech.probe", agent="tech", description="slow", params=Slow, run=slow, facts=("ticket",),
                    templates={"default": "probed {ticket}"}),
              Skill(name="payment.echo", agent="payment", description="echo", params=Ticket, run=echo,
                    facts=("echoed",), templates={"default": "echo {echoed}"}))
    flow = Workflow(name="probe_twice", keywords=("probe twice",), nodes=(
        Node("a", "tech.probe"), Node("b", "tech.probe"),
        Node("c", "payment.echo", after=("a", Edge("b", fact="ticket", equals=("T-b",))),
             inputs={"payment_id": "b.ticket"})))
    desk = memory_desk(desk=dataclasses.replace(BUILTIN, skills=(*BUILTIN.skills, *skills), workflows=(flow,)))
    started = time.perf_counter()
    r = asyncio.run(desk.handle("p1", "probe twice please"))
    took = time.perf_counter() - started
    assert r.reply == "echo T-b"
    assert took < 0.55, f"the two probes ran one after the other ({took:.2f} s)"
    results = [x.event.result for x in desk.store.load("p1") if isinstance(x.event, AgentCompleted)]
    assert [x.step_id for x in results] == ["a", "b", "c"]


def test_workflows_load_from_yaml_like_python(tmp_path: Path) -> None:
    """The YAML form reads into the same Workflow as the Python one."""
    path = tmp_path / "flows.yaml"
    path.write_text(
        "- name: failed_payment\n"
        "  keywords: [sort out my failed payment]\n"
        "  nodes:\n"
        "    - {id: payment, skill: payment.transfer_status, inputs: {payment_id: payment_id}}\n"
        "    - {id: account, skill: tech.check_account}\n"
        "    - id: retry\n"
        "      skill: payment.retry_payment\n"
        "      after: [{node: payment, fact: status, equals: failed}, account]\n"
        "      inputs: {payment_id: payment.payment_id}\n")
    (flow,) = load_workflows(path)
    assert flow == Workflow(name="failed_payment", keywords=("sort out my failed payment",), nodes=(
        Node("payment", "payment.transfer_status", inputs={"payment_id": "payment_id"}),
        Node("account", "tech.check_account"),
        Node("retry", "payment.retry_payment", after=(Edge("payment", fact="status", equals=("failed",)), "account"),
             inputs={"payment_id": "payment.payment_id"})))
    assert validate(dataclasses.replace(BUILTIN, workflows=(path,))).workflow_map["failed_payment"] == flow


def test_a_broken_workflow_fails_at_load_with_every_problem(tmp_path: Path) -> None:
    """Unknown skills and nodes, cycles, inputs nobody provides, facts never returned: all listed at once."""
    flows = (
        Workflow(name="ghost", nodes=(Node("a", "tech.no_such_skill"),)),
        Workflow(name="loop", nodes=(Node("a", "tech.check_account", after=("b",)),
                                     Node("b", "tech.check_account", after=("a",)))),
        Workflow(name="orphan", nodes=(Node("retry", "payment.retry_payment", inputs={"payment_id": "x.payment_id"}),
                                       Node("c", "tech.check_account", after=("nowhere",)))),
        Workflow(name="unfed", nodes=(Node("check", "tech.check_account"),
                                      Node("retry", "payment.retry_payment", after=("check",),
                                           inputs={"payment_id": "check.payment_id"}),
                                      Node("look", "billing.lookup_invoice",
                                           after=(Edge("check", fact="colour", equals=("red",)),),
                                           inputs={"invoice_id": "favourite_colour"}))),
    )
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("- name: x\n  nodes: [{id: a, skill: tech.check_account, colour: red}]\n")
    with pytest.raises(DeskDefinitionError) as caught:
        validate(dataclasses.replace(BUILTIN, workflows=flows))
    problems = "\n".join(caught.value.problems)
    for expected in (
        "workflow 'ghost': node 'a' runs unknown skill 'tech.no_such_skill'",
        "workflow 'loop' has a cycle",
        "workflow 'orphan': node 'retry' reads 'x.payment_id', but 'x' is not upstream of it",
        "workflow 'orphan': node 'c' waits on unknown node 'nowhere'",
        "workflow 'unfed': node 'retry' reads 'check.payment_id', which 'tech.check_account' never returns",
        "workflow 'unfed': node 'look': edge from 'check' tests 'colour', which 'tech.check_account' never returns",
        "workflow 'unfed': node 'look' reads entity 'favourite_colour', which no entity type provides",
    ):
        assert expected in problems, problems
    with pytest.raises(DeskDefinitionError, match="unknown keys colour"):
        validate(dataclasses.replace(BUILTIN, workflows=(bad_yaml,)))


def test_a_question_does_not_start_a_workflow_that_acts() -> None:
    """"Did my failed payment get sorted out?" is answered, not acted on."""
    desk = memory_desk(Settings(default_customer="C-1002"))
    asyncio.run(desk.handle("q1", "why did you not sort out my failed payment PAY-3101?"))
    plan = next(x.event.plan for x in desk.store.load("q1") if isinstance(x.event, PlanMade))
    assert plan.workflow == ""
    assert desk.records.payment("C-1002", "PAY-3101").status == "failed"


def test_the_model_planner_chooses_a_workflow_in_its_one_call(tmp_path: Path) -> None:
    """The workflow is one more planner tool: one model call chooses it, and it runs like a local choice."""
    with FakeOpenAI() as server:
        server.script(Reply.tool_call("run_workflow__failed_payment", {"payment_id": "PAY-3101"}))
        path = models_file(tmp_path, server, writer=None)
        desk = memory_desk(Settings(models_path=path, abstain_threshold=0.99999, default_customer="C-1002"))
        r = asyncio.run(desk.handle("m1", "zorp flibber PAY-3101 quux"))
        assert server.count() == 1 and r.llm_calls == 1 and r.stage == "llm"
    from deskline.hierarchy.planner import LLMPlanner

    tool = next(t for t in LLMPlanner(BUILTIN).tools if t.name == "run_workflow__failed_payment")
    assert tool.parameters_json_schema["properties"].keys() == {"payment_id"}
    assert finished(desk, "m1").outcome == "completed"
    assert "I've resubmitted payment PAY-3101" in (r.reply or "")


def test_deskline_explain_prints_the_workflow_node_by_node(tmp_path: Path) -> None:
    """The `deskline explain` command shows each node of the run, the skipped one with its reason."""
    from typer.testing import CliRunner

    from deskline.cli import app
    from deskline.runtime import open_desk

    url = f"sqlite:///{tmp_path}/desk.db"
    asyncio.run(open_desk(Settings(database_url=url)).handle("x1", "please sort out my failed payment PAY-3002"))
    out = CliRunner().invoke(app, ["explain", "x1"], env={"DESKLINE_DATABASE_URL": url})
    assert out.exit_code == 0, out.output
    assert "workflow failed_payment: completed" in out.output
    assert ("node retry payment.retry_payment after payment if status = failed, account if account_status = active "
            "-> skipped: account: account_status is locked, not active") in out.output
