"""Plan validation and ordering, and the tactical cascade's decisions (pure, no I/O)."""

import asyncio

import pytest

from deskline.config import Settings
from deskline.errors import PlanError
from deskline.eventlog.projections import ConversationState, PendingPlan
from deskline.handoffs.plan import Plan, PlanStep
from deskline.hierarchy.plan import order, validate
from deskline.hierarchy.strategy import decide
from deskline.hierarchy.tactical import Tactician
from deskline.routing.cache import RouteCache
from tests.fakes import KeywordClassifier, fake_desk

DESK = fake_desk()
REG = DESK.registry
extract = DESK.extractor


def plan(mode: str, *steps: PlanStep) -> Plan:
    return Plan(mode=mode, department="billing", intent="x", confidence=1, stage="llm", steps=steps)  # type: ignore[arg-type]


def step(i: str, skill: str = "billing.summary", agent: str = "billing", deps: tuple[str, ...] = ()) -> PlanStep:
    return PlanStep(step_id=i, agent=agent, skill=skill, depends_on=deps)  # type: ignore[arg-type]


def test_valid_sequential_plan_orders_in_waves() -> None:
    """A DAG runs in waves: each step after everything it depends on."""
    p = validate(plan("sequential", step("a"), step("b", deps=("a",)), step("c", "tech.status", "tech", ("a",))), REG)
    assert [[s.step_id for s in wave] for wave in order(p.steps)] == [["a"], ["b", "c"]]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (plan("single", step("a", "billing.nope")), "unknown skill"),
        (plan("single", step("a", "tech.status", "billing")), "does not belong"),
        (plan("sequential", step("a", deps=("z",))), "unknown steps"),
        (plan("sequential", step("a", deps=("b",)), step("b", deps=("a",))), "cycle"),
        (plan("parallel", step("a"), step("b", deps=("a",))), "cannot depend"),
        (plan("single", step("a"), step("b")), "exactly one step"),
        (plan("single", step("a"), step("a")), "repeats a step id"),
    ],
)
def test_invalid_plans_are_rejected(bad: Plan, message: str) -> None:
    """Unknown skills, wrong agents, missing dependencies and cycles are rejected with a reason."""
    with pytest.raises(PlanError, match=message):
        validate(bad, REG)


def tactician() -> Tactician:
    return Tactician(DESK, KeywordClassifier(), RouteCache())


def plan_for(text: str, state: ConversationState | None = None) -> Plan:
    state = state or ConversationState("c")
    entities = extract(text)
    return asyncio.run(tactician().plan(state, text, entities, decide(state, text, entities, Settings(), DESK)))[0]


def test_confident_classifier_makes_a_single_plan() -> None:
    """A confident route becomes one step of the matching skill, with the verdicts recorded."""
    p = plan_for("what about invoice INV-1001")
    assert (p.mode, p.stage, p.steps[0].skill) == ("single", "classifier", "billing.invoice")
    assert [v.stage for v in p.verdicts] == ["cache", "classifier"]
    assert p.verdicts[0].reason == "no cached plan for this text"


def test_abstention_becomes_a_clarifying_question() -> None:
    """Below the threshold and with no model, the cascade ends in a question."""
    p = plan_for("blorp")
    assert (p.mode, p.stage) == ("clarify", "fallback")
    assert [v.stage for v in p.verdicts] == ["cache", "classifier", "llm"]
    assert "below threshold" in p.verdicts[1].reason


def test_route_cache_answers_the_second_time() -> None:
    """The same normalised text is routed from the cache without the classifier."""
    t = tactician()
    state = ConversationState("c")
    strategy = decide(state, "", extract(""), Settings(), DESK)
    first, _ = asyncio.run(t.plan(state, "Is the service DOWN?", extract(""), strategy))
    calls = t.classifier.calls  # type: ignore[attr-defined]
    second, _ = asyncio.run(t.plan(state, "is the service down", extract(""), strategy))
    assert first.stage == "classifier" and second.stage == "cache"
    assert t.classifier.calls == calls  # type: ignore[attr-defined]


def test_two_independent_problems_make_a_parallel_plan() -> None:
    """Two problems for different agents run as a parallel plan."""
    p = plan_for("the site is down for me and also my transfer has not arrived")
    assert p.mode == "parallel"
    assert {s.agent for s in p.steps} == {"tech", "payment"}


def test_conditional_request_makes_a_sequential_plan() -> None:
    """'if X failed, do Y' runs Y after X, only when X shows it failed."""
    p = plan_for("if my transfer failed, send me the invoice")
    assert p.mode == "sequential"
    assert [s.agent for s in p.steps] == ["payment", "billing"]
    assert p.steps[1].depends_on == ("s1",) and p.steps[1].when == ("status", "failed")


def test_escalating_strategy_short_circuits_the_cascade() -> None:
    """When the strategy escalates, no classifier runs and the plan is an escalation."""
    p = plan_for("I want to talk to a real person")
    assert (p.mode, p.stage, p.department) == ("escalate", "rules", "human")


def test_pending_plan_resumes_when_the_missing_entity_arrives() -> None:
    """A plan that stopped for an invoice id resumes when the next message names one."""
    stopped = plan("single", step("s1", "billing.invoice"))
    state = ConversationState("c", pending=PendingPlan(stopped, extract(""), ("invoice_id",), 1))
    p = plan_for("it's INV-1001", state)
    assert p.stage == "resume" and p.steps == stopped.steps
    assert plan_for("no idea", state).stage != "resume"
