"""The billing agent: invoices, duplicate charges, refunds and the balance.

Refunds move money, so they go through ``SkillCall.act``: above the turn's approval limit they
stop for a person. A refund is decided from the records, never from the customer's say-so: the
duplicate-charge skill refunds only a charge that really repeats an earlier one.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from deskline.agents.builtin.backend import Invoice, show_date, show_money
from deskline.agents.builtin.backend.rules import refund_facts
from deskline.agents.builtin.policy import SENSITIVE_S
from deskline.agents.registry import Reference, Skill, SkillCall
from deskline.handoffs import AgentResult
from deskline.handoffs.payload import Frozen

INVOICE_NOT_FOUND = (
    "I couldn't find invoice {invoice_id} on your account. Could you check the invoice number?"
)
# A refund has no compensation: charging the customer again is not an undo.
NOT_UNDONE = "a refund is not undone by charging the customer again"
CHARGE_NOT_FOUND = (
    "I couldn't find charge {charge_id} on your account. Could you check the charge reference?"
)


class NoParams(Frozen):
    """The skill needs nothing beyond the case's own customer."""


class InvoiceParams(Frozen):
    invoice_id: Reference


class ChargeParams(Frozen):
    charge_id: Reference


def _invoice_facts(invoice: Invoice) -> dict[str, str]:
    return {
        "invoice_id": invoice.id,
        "amount": show_money(invoice.amount, invoice.currency),
        "issued": show_date(invoice.issued),
        "due": show_date(invoice.due),
        "invoice_status": invoice.status,
    }


# -- billing.review_duplicate_charge ------------------------------------------------------------

DUPLICATE_TEMPLATES = {
    "refunded": (
        "You were charged twice for invoice {invoice_id} ({amount}, issued {issued}): "
        "{original_charge_id} and {duplicate_charge_id}. I've refunded the duplicate charge "
        "{duplicate_charge_id}; your refund reference is {refund_id}, and the money should be "
        "back by {expected_by}."
    ),
    "already_refunded": (
        "Invoice {invoice_id} ({amount}, issued {issued}) was charged twice, and the duplicate "
        "charge {duplicate_charge_id} was already refunded on {refunded_on} (reference "
        "{refund_id}); the money should be back by {expected_by}."
    ),
    "single_charge": (
        "Invoice {invoice_id} ({amount}, issued {issued}) was charged only once: {charge_id} "
        "on {charged_on}. I don't see a duplicate charge."
    ),
    "not_charged": (
        "Invoice {invoice_id} ({amount}, issued {issued}) hasn't been charged yet, so there is "
        "no duplicate charge."
    ),
    "not_found": INVOICE_NOT_FOUND,
}


async def review_duplicate_charge(call: SkillCall) -> AgentResult:
    """Check an invoice for a repeated charge and refund the repeat."""
    params = call.params_as(InvoiceParams)
    invoice = call.backend.invoice(call.customer_id, params.invoice_id)
    if invoice is None:
        return call.result(
            "needs_info", "not_found", missing=("invoice_id",), invoice_id=params.invoice_id
        )
    facts = _invoice_facts(invoice)
    charges = call.backend.charges(call.customer_id, invoice.id)
    if not charges:
        return call.result(template="not_charged", facts=facts)
    original = charges[0]
    if len(charges) == 1:
        return call.result(
            template="single_charge",
            charge_id=original.id,
            charged_on=show_date(original.charged_on),
            facts=facts,
        )
    repeats = charges[1:]
    captured = [c for c in repeats if c.status == "captured"]
    pair = {"original_charge_id": original.id}
    if not captured and call.recorded("refund_charge") is None:
        latest = repeats[-1]
        return call.result(
            template="already_refunded",
            facts={**facts, **pair, "duplicate_charge_id": latest.id, **refund_facts(latest)},
        )
    duplicate = captured[-1] if captured else repeats[-1]
    done = call.act(
        "refund_charge",
        duplicate.money,
        lambda key: call.backend.refund_charge(key, call.customer_id, duplicate.id),
        target=duplicate.id,
    )
    return call.result(
        template="refunded",
        action_key=call.key,
        facts={**facts, **pair, "duplicate_charge_id": duplicate.id, **done},
    )


# -- billing.lookup_invoice ---------------------------------------------------------------------

INVOICE_TEMPLATES = {
    "invoice": (
        "Invoice {invoice_id} for {amount} was issued on {issued} and is due on {due}; "
        "it is {invoice_status}."
    ),
    "charged_twice": (
        "Invoice {invoice_id} for {amount} (issued {issued}) was charged twice: "
        "{original_charge_id} and {duplicate_charge_id}. I can refund the duplicate if you'd "
        "like."
    ),
    "not_found": INVOICE_NOT_FOUND,
}


async def lookup_invoice(call: SkillCall) -> AgentResult:
    """One invoice: amount, dates, status, and whether it was charged twice."""
    params = call.params_as(InvoiceParams)
    invoice = call.backend.invoice(call.customer_id, params.invoice_id)
    if invoice is None:
        return call.result(
            "needs_info", "not_found", missing=("invoice_id",), invoice_id=params.invoice_id
        )
    facts = _invoice_facts(invoice)
    captured = [
        c for c in call.backend.charges(call.customer_id, invoice.id) if c.status == "captured"
    ]
    if len(captured) > 1:
        return call.result(
            template="charged_twice",
            original_charge_id=captured[0].id,
            duplicate_charge_id=captured[-1].id,
            facts=facts,
            offer=call.offer("billing.review_duplicate_charge", invoice_id=invoice.id),
        )
    return call.result(template="invoice", facts=facts)


# -- billing.refund_charge ----------------------------------------------------------------------

REFUND_TEMPLATES = {
    "refunded": (
        "I've refunded charge {charge_id} ({amount}) on invoice {invoice_id}; your refund "
        "reference is {refund_id}, and the money should be back by {expected_by}."
    ),
    "already_refunded": (
        "Charge {charge_id} ({amount}) on invoice {invoice_id} was already refunded on "
        "{refunded_on} (reference {refund_id}); the money should be back by {expected_by}."
    ),
    "not_found": CHARGE_NOT_FOUND,
}


async def refund_charge(call: SkillCall) -> AgentResult:
    """Refund one charge the customer names."""
    params = call.params_as(ChargeParams)
    charge = call.backend.charge(call.customer_id, params.charge_id)
    if charge is None:
        return call.result(
            "needs_info", "not_found", missing=("charge_id",), charge_id=params.charge_id
        )
    if charge.status == "refunded" and call.recorded("refund_charge") is None:
        return call.result(template="already_refunded", facts=refund_facts(charge))
    done = call.act(
        "refund_charge",
        charge.money,
        lambda key: call.backend.refund_charge(key, call.customer_id, charge.id),
        target=charge.id,
    )
    return call.result(template="refunded", action_key=call.key, facts=done)


# -- billing.billing_summary --------------------------------------------------------------------

SUMMARY_TEMPLATES = {
    "balance_due": (
        "Your open balance is {balance}, next due on {next_due}. Your latest invoice is "
        "{latest_invoice_id} for {latest_amount}, issued on {latest_issued}."
    ),
    "paid_up": (
        "You're all paid up: your open balance is {balance}. Your latest invoice is "
        "{latest_invoice_id} for {latest_amount}, issued on {latest_issued}."
    ),
    "no_invoices": "There are no invoices on your account yet.",
}


def _balance(open_invoices: list[Invoice], currency: str) -> str:
    """The open balance, one amount per currency (``$120.00 + €15.00``)."""
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for invoice in open_invoices:
        totals[invoice.currency] += invoice.amount
    if not totals:
        return show_money(Decimal("0.00"), currency)
    return " + ".join(show_money(amount, cur) for cur, amount in sorted(totals.items()))


async def billing_summary(call: SkillCall) -> AgentResult:
    """The latest invoice and the open balance."""
    invoices = call.backend.invoices(call.customer_id)
    if not invoices:
        return call.result(template="no_invoices")
    latest = invoices[0]
    open_invoices = [i for i in invoices if i.status == "open"]
    facts = {
        "latest_invoice_id": latest.id,
        "latest_amount": show_money(latest.amount, latest.currency),
        "latest_issued": show_date(latest.issued),
        "latest_status": latest.status,
        "balance": _balance(open_invoices, latest.currency),
        "open_count": str(len(open_invoices)),
    }
    if not open_invoices:
        return call.result(template="paid_up", facts=facts)
    next_due = min(i.due for i in open_invoices)
    return call.result(template="balance_due", next_due=show_date(next_due), facts=facts)


SKILLS: tuple[Skill, ...] = (
    Skill(
        name="billing.review_duplicate_charge",
        agent="billing",
        description="Check an invoice for a duplicate charge and refund the duplicate.",
        params=InvoiceParams,
        run=review_duplicate_charge,
        requires=("invoice_id",),
        intents=frozenset(
            {"transaction_charged_twice", "duplicate_charge", "extra_charge_on_statement"}
        ),
        keywords=("twice", "double", "duplicate", "two charges"),
        action=True,
        irreversible=NOT_UNDONE,
        verification_s=SENSITIVE_S,
        templates=DUPLICATE_TEMPLATES,
        facts=('invoice_id', 'amount', 'issued', 'due', 'invoice_status', 'charge_id', 'charged_on', 'original_charge_id', 'duplicate_charge_id', 'refund_id', 'refunded_on', 'expected_by'),
    ),
    Skill(
        name="billing.refund_charge",
        agent="billing",
        description="Refund one charge on the customer's account, by charge id.",
        params=ChargeParams,
        run=refund_charge,
        requires=("charge_id",),
        intents=frozenset({"request_refund", "refund_charge"}),
        keywords=("refund",),
        action=True,
        irreversible=NOT_UNDONE,
        verification_s=SENSITIVE_S,
        templates=REFUND_TEMPLATES,
        facts=('charge_id', 'invoice_id', 'amount', 'refund_id', 'refunded_on', 'expected_by'),
    ),
    Skill(
        name="billing.lookup_invoice",
        agent="billing",
        description="Look up one invoice: amount, issue and due dates, status, charges.",
        params=InvoiceParams,
        run=lookup_invoice,
        requires=("invoice_id",),
        intents=frozenset({"invoice_question"}),
        keywords=("invoice",),
        templates=INVOICE_TEMPLATES,
        offers=("billing.review_duplicate_charge",),
        facts=('invoice_id', 'amount', 'issued', 'due', 'invoice_status', 'original_charge_id', 'duplicate_charge_id'),
    ),
    Skill(
        name="billing.billing_summary",
        agent="billing",
        description="Summarise the customer's bills: latest invoice, open balance, next due date.",
        params=NoParams,
        run=billing_summary,
        intents=frozenset(
            {
                "bill_balance",
                "balance",
                "bill_due",
                "min_payment",
                "spending_history",
                "transactions",
                "billing_summary",
            }
        ),
        keywords=("balance", "statement", "owe", "bill", "due"),
        templates=SUMMARY_TEMPLATES,
        facts=('latest_invoice_id', 'latest_amount', 'latest_issued', 'latest_status', 'balance', 'open_count', 'next_due'),
    ),
)
