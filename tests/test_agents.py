"""The tech, billing and payment skills, run directly against the in-memory system of record."""

from __future__ import annotations

import asyncio
import dataclasses
import string
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

import pytest

import deskline.agents as agents
import deskline.agents.builtin.backend as backend_pkg
from deskline.agents import ApprovalRequired
from deskline.agents.builtin import desk as BUILTIN
from deskline.agents.builtin.backend import DEMO_SEED, MemoryBackend, Payment, Seed
from deskline.agents.registry import SkillCall
from deskline.handoffs import AgentResult, Case, Constraints, Handoff, HistoryItem

C1, C2, NOBODY = "C-1001", "C-1002", "C-9999"
REGISTRY = BUILTIN.registry


def call_for(
    skill: str,
    backend: MemoryBackend,
    *,
    customer: str = C1,
    intent: str = "",
    key: str = "conv-1:1:s1",
    constraints: Constraints | None = None,
    said: str = "",
    **params: object,
) -> SkillCall:
    """A hand-built handoff for one skill, as the operation layer would build it."""
    target = REGISTRY[skill]
    case = Case(
        conversation_id="conv-1",
        turn=1,
        customer_id=customer,
        intent=intent,
        department=target.agent,
        history=(HistoryItem(role="customer", text=said),) if said else (),
    )
    handoff = Handoff(
        step_id="s1",
        agent=target.agent,
        skill=skill,
        case=case,
        constraints=constraints or Constraints(),
        idempotency_key=key,
    )
    return SkillCall(handoff=handoff, params=target.params.model_validate(params), records=backend)


def run(skill: str, backend: MemoryBackend, **kwargs: object) -> AgentResult:
    return asyncio.run(REGISTRY[skill].run(call_for(skill, backend, **kwargs)))  # type: ignore[arg-type]


def render(result: AgentResult) -> str:
    return REGISTRY[result.skill].templates[result.template].format_map(result.facts)


@pytest.fixture
def backend() -> MemoryBackend:
    return MemoryBackend()


# -- billing ------------------------------------------------------------------------------------


def test_duplicate_charge_is_refunded_with_grounded_facts(backend: MemoryBackend) -> None:
    """INV-1001's repeat is refunded; the facts name invoice, amount, date and both charges."""
    result = run("billing.review_duplicate_charge", backend, invoice_id="INV-1001")
    assert (result.status, result.template, result.action_key) == ("ok", "refunded", "conv-1:1:s1")
    facts = result.facts
    assert facts["invoice_id"] == "INV-1001" and facts["amount"] == "$49.00"
    assert facts["issued"] == "March 1, 2025"
    assert (facts["original_charge_id"], facts["duplicate_charge_id"]) == ("CH-2001", "CH-2002")
    assert facts["refund_id"] == "RF-2002"
    assert "RF-2002" in render(result) and "$49.00" in render(result)
    assert backend.charge(C1, "CH-2002").status == "refunded"  # type: ignore[union-attr]
    assert backend.charge(C1, "CH-2001").status == "captured"  # type: ignore[union-attr]


def test_same_key_twice_refunds_once(backend: MemoryBackend) -> None:
    """Running the refund step again with the same key refunds once and says the same thing."""
    first = run("billing.review_duplicate_charge", backend, invoice_id="INV-1001")
    second = run("billing.review_duplicate_charge", backend, invoice_id="INV-1001")
    assert first == second
    assert backend.recorded("conv-1:1:s1") is not None
    later = run(
        "billing.review_duplicate_charge", backend, invoice_id="INV-1001", key="conv-1:2:s1"
    )
    assert later.template == "already_refunded" and later.action_key is None
    assert backend.recorded("conv-1:2:s1") is None


def test_refund_above_the_approval_limit_stops_at_the_gate(backend: MemoryBackend) -> None:
    """The $750.00 duplicate refund raises ApprovalRequired and refunds nothing."""
    with pytest.raises(ApprovalRequired) as gate:
        run("billing.review_duplicate_charge", backend, invoice_id="INV-1003")
    assert gate.value.action == "refund_charge"
    assert gate.value.amount is not None and gate.value.amount.amount == Decimal("750.00")
    with pytest.raises(ApprovalRequired):
        run("billing.refund_charge", backend, charge_id="CH-2005")
    assert backend.charge(C1, "CH-2005").status == "captured"  # type: ignore[union-attr]
    assert backend.recorded("conv-1:1:s1") is None


def test_approved_refund_runs_and_its_replay_is_not_gated_again(backend: MemoryBackend) -> None:
    """With a raised limit the $750.00 refund happens; replaying that step needs no new approval."""
    approved = Constraints(approval_limit=Decimal("1000"))
    done = run(
        "billing.review_duplicate_charge", backend, invoice_id="INV-1003", constraints=approved
    )
    assert done.template == "refunded" and done.facts["amount"] == "$750.00"
    replay = run("billing.review_duplicate_charge", backend, invoice_id="INV-1003")
    assert replay == done


def test_actions_disallowed_by_strategy_need_approval(backend: MemoryBackend) -> None:
    """When the strategy forbids actions, even a small refund or an unlock waits for a person."""
    closed = Constraints(allow_actions=False)
    with pytest.raises(ApprovalRequired):
        run("billing.refund_charge", backend, charge_id="CH-2003", constraints=closed)
    with pytest.raises(ApprovalRequired):
        run("tech.unlock_account", backend, constraints=closed)
    assert backend.customer(C1).status == "locked"  # type: ignore[union-attr]


def test_lookup_invoice_reports_the_double_charge(backend: MemoryBackend) -> None:
    """Looking up INV-1001 shows it was charged twice; INV-1002 shows its dates and status."""
    twice = run("billing.lookup_invoice", backend, invoice_id="inv-1001 ")
    assert twice.template == "charged_twice" and twice.facts["duplicate_charge_id"] == "CH-2002"
    once = run("billing.lookup_invoice", backend, invoice_id="INV-1002")
    assert once.template == "invoice"
    assert (once.facts["due"], once.facts["invoice_status"]) == ("February 15, 2025", "paid")


def test_billing_summary_shows_balance_and_latest_invoice(backend: MemoryBackend) -> None:
    """The summary gives the open balance, next due date and latest invoice."""
    result = run("billing.billing_summary", backend)
    assert result.template == "balance_due"
    assert result.facts["balance"] == "$120.00" and result.facts["next_due"] == "April 11, 2025"
    assert result.facts["latest_invoice_id"] == "INV-1004"
    assert run("billing.billing_summary", backend, customer=C2).template == "paid_up"


# -- payment ------------------------------------------------------------------------------------


def test_transfer_status_without_id_finds_the_pending_landlord_transfer(
    backend: MemoryBackend,
) -> None:
    """Without a payment id the latest pending transfer is reported with payee and arrival."""
    result = run("payment.transfer_status", backend, intent="pending_transfer")
    assert result.template == "pending"
    assert result.facts["payment_id"] == "PAY-3001" and result.facts["amount"] == "$1,200.00"
    assert "landlord" in result.facts["payee"]
    assert (result.facts["status"], result.facts["estimated_arrival"]) == (
        "pending",
        "March 17, 2025",
    )


def test_failed_transfer_intent_reports_the_failed_one(backend: MemoryBackend) -> None:
    """For a failed-transfer question the latest failed payment is reported with its reason."""
    result = run("payment.transfer_status", backend, intent="failed_transfer")
    assert (result.template, result.facts["payment_id"]) == ("failed", "PAY-3002")
    assert result.facts["failure_reason"] == "the receiving bank declined it"


def test_retry_payment_only_retries_failed_payments(backend: MemoryBackend) -> None:
    """A failed payment is resubmitted once; a pending one is left alone."""
    retried = run("payment.retry_payment", backend, payment_id="PAY-3002")
    assert (retried.template, retried.facts["status"]) == ("retried", "pending")
    assert run("payment.retry_payment", backend, payment_id="PAY-3002") == retried
    assert backend.payment(C1, "PAY-3002").retries == 1  # type: ignore[union-attr]
    pending = run("payment.retry_payment", backend, payment_id="PAY-3001", key="conv-1:2:s1")
    assert pending.template == "not_retryable" and pending.action_key is None


def test_list_payments_names_every_amount(backend: MemoryBackend) -> None:
    """The payments list carries each id and amount in its facts."""
    result = run("payment.list_payments", backend)
    assert result.facts["count"] == "3"
    for text in ("PAY-3001", "$1,200.00", "PAY-3002", "$86.40", "PAY-3003", "$42.15"):
        assert text in result.facts["payments"]


# -- tech ---------------------------------------------------------------------------------------


def test_reset_password_masks_the_email_on_file(backend: MemoryBackend) -> None:
    """A reset link goes to the email on file, shown masked, even if another address was typed."""
    result = run("tech.reset_password", backend, email="someone@elsewhere.net")
    assert result.template == "sent_on_file" and result.action_key == "conv-1:1:s1"
    assert result.facts["masked_email"] == "a***@example.com"
    assert "alex.morgan" not in render(result) and "elsewhere" not in render(result)


def test_unlock_then_check_account(backend: MemoryBackend) -> None:
    """A locked account is unlocked; the account check then shows it active."""
    assert run("tech.check_account", backend).template == "locked"
    assert run("tech.unlock_account", backend).template == "unlocked"
    after = run("tech.check_account", backend, key="conv-1:2:s1")
    assert after.facts["account_status"] == "active"


def test_service_status_follows_the_customers_component(backend: MemoryBackend) -> None:
    """A sign-in problem finds the ongoing incident; a payments question finds none."""
    login = run("tech.check_service_status", backend, intent="login_problem")
    assert (login.template, login.facts["incident_id"]) == ("ongoing", "INC-501")
    cards = run("tech.check_service_status", backend, said="is card payment down?")
    assert (cards.template, cards.facts["scope"]) == ("all_clear", "payments")


def test_unknown_customer_is_escalated(backend: MemoryBackend) -> None:
    """A case whose customer has no record goes to a person instead of guessing."""
    result = run("tech.reset_password", backend, customer=NOBODY)
    assert result.status == "escalate" and result.template == "no_account"


# -- isolation ----------------------------------------------------------------------------------


def test_another_customers_ids_are_not_found(backend: MemoryBackend) -> None:
    """C-1002 naming C-1001's invoice, charge or payment gets "not found" and changes nothing."""
    invoice = run("billing.review_duplicate_charge", backend, customer=C2, invoice_id="INV-1001")
    assert (invoice.status, invoice.template, invoice.missing) == (
        "needs_info",
        "not_found",
        ("invoice_id",),
    )
    charge = run("billing.refund_charge", backend, customer=C2, charge_id="CH-2001")
    assert charge.template == "not_found"
    payment = run("payment.retry_payment", backend, customer=C2, payment_id="PAY-3002")
    assert payment.template == "not_found"
    transfer = run("payment.transfer_status", backend, customer=C2, payment_id="PAY-3001")
    assert transfer.template == "not_found" and "$1,200.00" not in render(transfer)
    assert backend.charge(C1, "CH-2001").status == "captured"  # type: ignore[union-attr]
    assert backend.recorded("conv-1:1:s1") is None


# -- templates ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    skill: str
    params: dict[str, object] = field(default_factory=dict)
    customer: str = C1
    intent: str = ""
    key: str = "k"
    seed: Seed | None = None


_QUIET = dataclasses.replace(DEMO_SEED, incidents=())
_UNSCHEDULED = dataclasses.replace(
    DEMO_SEED,
    payments=(
        Payment(
            "PAY-3901", C1, "Harbor Storage", Decimal("60.00"), "USD", "pending", date(2025, 3, 13)
        ),
    ),
)

# Run in order on one backend (unless a seed is given): together they reach every template.
SCENARIOS = (
    Scenario("tech.reset_password"),
    Scenario("tech.reset_password", {"email": "x@elsewhere.net"}, key="k2"),
    Scenario("tech.reset_password", customer=NOBODY),
    Scenario("tech.check_account"),
    Scenario("tech.check_account", customer=C2),
    Scenario("tech.check_account", customer=C2, seed=_QUIET),
    Scenario("tech.check_account", customer=NOBODY),
    Scenario("tech.unlock_account", key="k-unlock"),
    Scenario("tech.unlock_account", customer=C2),
    Scenario("tech.unlock_account", customer=NOBODY),
    Scenario("tech.check_service_status", intent="service_outage"),
    Scenario("tech.check_service_status", intent="app_crash"),
    Scenario("billing.review_duplicate_charge", {"invoice_id": "INV-1001"}, key="k-dup"),
    Scenario("billing.review_duplicate_charge", {"invoice_id": "INV-1001"}, key="k-dup-2"),
    Scenario("billing.review_duplicate_charge", {"invoice_id": "INV-1002"}),
    Scenario("billing.review_duplicate_charge", {"invoice_id": "INV-1004"}),
    Scenario("billing.review_duplicate_charge", {"invoice_id": "INV-9999"}),
    Scenario("billing.lookup_invoice", {"invoice_id": "INV-1003"}),
    Scenario("billing.lookup_invoice", {"invoice_id": "INV-1004"}),
    Scenario("billing.lookup_invoice", {"invoice_id": "INV-9999"}),
    Scenario("billing.refund_charge", {"charge_id": "CH-2003"}, key="k-refund"),
    Scenario("billing.refund_charge", {"charge_id": "CH-2003"}, key="k-refund-2"),
    Scenario("billing.refund_charge", {"charge_id": "CH-9999"}),
    Scenario("billing.billing_summary"),
    Scenario("billing.billing_summary", customer=C2),
    Scenario("billing.billing_summary", customer=NOBODY),
    Scenario("payment.transfer_status"),
    Scenario("payment.transfer_status", {"payment_id": "PAY-3003"}),
    Scenario("payment.transfer_status", {"payment_id": "PAY-3002"}),
    Scenario("payment.transfer_status", {"payment_id": "PAY-9999"}),
    Scenario("payment.transfer_status", customer=C2),
    Scenario("payment.transfer_status", customer=NOBODY, intent="failed_transfer"),
    Scenario("payment.transfer_status", seed=_UNSCHEDULED),
    Scenario("payment.retry_payment", {"payment_id": "PAY-3002"}, key="k-retry"),
    Scenario("payment.retry_payment", {"payment_id": "PAY-3003"}),
    Scenario("payment.retry_payment", {"payment_id": "PAY-9999"}),
    Scenario("payment.list_payments"),
    Scenario("payment.list_payments", customer=NOBODY),
)


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def test_every_template_is_reachable_and_renders_from_facts() -> None:
    """Every template of every skill is reached, and all its fields are in the facts."""
    shared = MemoryBackend()
    seen: set[tuple[str, str]] = set()
    for s in SCENARIOS:
        backend = shared if s.seed is None else MemoryBackend(s.seed)
        result = run(s.skill, backend, customer=s.customer, intent=s.intent, key=s.key, **s.params)
        templates = REGISTRY[s.skill].templates
        assert result.template in templates, (s, result)
        missing = _fields(templates[result.template]) - set(result.facts)
        assert not missing, (s, result.template, missing)
        seen.add((s.skill, result.template))
    declared = {(name, t) for name, skill in REGISTRY.skills.items() for t in skill.templates}
    assert declared - seen == set()


def test_templates_hold_no_numbers_of_their_own() -> None:
    """Template text has no digits of its own: every number in a reply comes from facts."""
    for skill in REGISTRY.skills.values():
        for key, template in skill.templates.items():
            literal = "".join(text for text, _, _, _ in string.Formatter().parse(template))
            assert not any(ch.isdigit() for ch in literal), (skill.name, key)


# -- registry -----------------------------------------------------------------------------------


def test_builtin_registry_is_built_once_with_three_agents() -> None:
    """The built-in desk's registry is cached; each agent has at least three skills, one an action."""
    assert BUILTIN.registry is REGISTRY
    for agent in ("tech", "billing", "payment"):
        skills = REGISTRY.for_agent(agent)
        assert len(skills) >= 3 and any(s.action for s in skills)
        assert REGISTRY.defaults[agent] in {s.name for s in skills}


def test_params_are_entity_names_and_requires_are_params() -> None:
    """Every skill parameter is an entity name, and every required entity is a parameter."""
    entity_names = {e.name for e in BUILTIN.entities}
    for skill in REGISTRY.skills.values():
        fields = set(skill.params.model_fields)
        assert fields <= entity_names, skill.name
        assert set(skill.requires) <= fields, skill.name
        assert skill.templates, skill.name


def test_intents_route_to_one_skill_each() -> None:
    """No intent label is claimed by two skills, and the headline intents land where they should."""
    claimed = [intent for skill in REGISTRY.skills.values() for intent in skill.intents]
    assert len(claimed) == len(set(claimed))
    expected = {
        ("billing", "transaction_charged_twice"): "billing.review_duplicate_charge",
        ("billing", "request_refund"): "billing.refund_charge",
        ("billing", "bill_balance"): "billing.billing_summary",
        ("tech", "passcode_forgotten"): "tech.reset_password",
        ("tech", "account_blocked"): "tech.unlock_account",
        ("tech", "service_outage"): "tech.check_service_status",
        ("payment", "pending_transfer"): "payment.transfer_status",
        ("payment", "transfer_not_received_by_recipient"): "payment.transfer_status",
        ("payment", "payment_retry"): "payment.retry_payment",
    }
    for (agent, intent), name in expected.items():
        assert REGISTRY.choose(agent, intent, "").name == name  # type: ignore[arg-type]


def test_keywords_then_defaults_choose_a_skill() -> None:
    """Without a known intent, keywords pick the skill, else the agent's default."""
    assert REGISTRY.choose("payment", "", "please retry PAY-3002").name == "payment.retry_payment"
    assert (
        REGISTRY.choose("billing", "", "I was charged twice").name
        == "billing.review_duplicate_charge"
    )
    assert REGISTRY.choose("tech", "", "I forgot my password").name == "tech.reset_password"
    assert REGISTRY.choose("tech", "", "hello").name == "tech.check_service_status"


def test_public_names_are_exported() -> None:
    """Every name in the packages' ``__all__`` exists."""
    for module in (agents, backend_pkg):
        for name in module.__all__:
            assert hasattr(module, name), (module.__name__, name)
