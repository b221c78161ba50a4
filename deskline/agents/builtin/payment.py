"""The payment agent: where a transfer is, retrying a failed one, recent payments.

Retrying resubmits money, so it goes through ``SkillCall.act`` and needs the payment named
explicitly: "my transfer failed" gets the transfer's status and an offer to retry, and only
"retry PAY-3002" retries it.
"""

from __future__ import annotations

from deskline.agents.builtin.backend import Payment, show_date, show_money
from deskline.agents.builtin.policy import SENSITIVE_S
from deskline.agents.registry import Reference, Skill, SkillCall
from deskline.handoffs import AgentResult
from deskline.handoffs.payload import Frozen

PAYMENT_NOT_FOUND = (
    "I couldn't find payment {payment_id} on your account. Could you check the reference?"
)
RECENT_LIMIT = 5
DEFAULT_FAILURE = "it was declined"


class NoParams(Frozen):
    """The skill needs nothing beyond the case's own customer."""


class TransferParams(Frozen):
    payment_id: Reference | None = None


class PaymentParams(Frozen):
    payment_id: Reference


def _payment_facts(payment: Payment) -> dict[str, str]:
    facts = {
        "payment_id": payment.id,
        "payee": payment.payee,
        "amount": show_money(payment.amount, payment.currency),
        "status": payment.status,
        "created": show_date(payment.created),
    }
    if payment.status == "failed":
        facts["failure_reason"] = payment.failure_reason or DEFAULT_FAILURE
    elif payment.estimated_arrival is not None:
        key = "arrived_on" if payment.status == "completed" else "estimated_arrival"
        facts[key] = show_date(payment.estimated_arrival)
    return facts


def _not_found(call: SkillCall, payment_id: str) -> AgentResult:
    return call.result("needs_info", "not_found", missing=("payment_id",), payment_id=payment_id)


# -- payment.transfer_status --------------------------------------------------------------------

TRANSFER_TEMPLATES = {
    "pending": (
        "Your transfer {payment_id} of {amount} to {payee} is on its way: it was sent on "
        "{created} and should arrive by {estimated_arrival}."
    ),
    "pending_unscheduled": (
        "Your transfer {payment_id} of {amount} to {payee} is on its way: it was sent on {created}."
    ),
    "completed": (
        "Your transfer {payment_id} of {amount} to {payee} was completed; it arrived on "
        "{arrived_on}."
    ),
    "failed": (
        "Your transfer {payment_id} of {amount} to {payee}, sent on {created}, failed because "
        "{failure_reason}. I can retry it for you."
    ),
    "no_pending": "You have no transfers in progress right now.",
    "no_failed": "None of your recent transfers failed.",
    "not_found": PAYMENT_NOT_FOUND,
}

_FAILED_INTENTS = frozenset({"failed_transfer", "declined_transfer"})


def _template(payment: Payment) -> str:
    if payment.status == "pending" and payment.estimated_arrival is None:
        return "pending_unscheduled"
    return payment.status


async def transfer_status(call: SkillCall) -> AgentResult:
    """Where a transfer is: the one named, else the latest pending (or failed) one."""
    params = call.params_as(TransferParams)
    if params.payment_id is not None:
        payment = call.backend.payment(call.customer_id, params.payment_id)
        if payment is None:
            return _not_found(call, params.payment_id)
    else:
        wanted = "failed" if call.handoff.case.intent in _FAILED_INTENTS else "pending"
        found = [p for p in call.backend.payments(call.customer_id) if p.status == wanted]
        if not found:
            return call.result(template="no_failed" if wanted == "failed" else "no_pending")
        payment = found[0]
    offer = call.offer("payment.retry_payment", payment_id=payment.id) if payment.status == "failed" else None
    return call.result(template=_template(payment), facts=_payment_facts(payment), offer=offer)


# -- payment.retry_payment ----------------------------------------------------------------------

RETRY_TEMPLATES = {
    "retried": (
        "I've resubmitted payment {payment_id} of {amount} to {payee}; it is {status} now and "
        "should arrive by {estimated_arrival}."
    ),
    "not_retryable": (
        "Payment {payment_id} of {amount} to {payee} is {status}, so there is nothing to retry."
    ),
    "not_found": PAYMENT_NOT_FOUND,
}


async def retry_payment(call: SkillCall) -> AgentResult:
    """Resubmit a failed payment; any other payment is left alone."""
    params = call.params_as(PaymentParams)
    payment = call.backend.payment(call.customer_id, params.payment_id)
    if payment is None:
        return _not_found(call, params.payment_id)
    if payment.status != "failed" and call.recorded("retry_payment") is None:
        return call.result(template="not_retryable", facts=_payment_facts(payment))
    done = call.act(
        "retry_payment",
        payment.money,
        lambda key: call.backend.retry_payment(key, call.customer_id, payment.id),
    )
    return call.result(template="retried", action_key=call.key, facts=done)


async def cancel_retry(call: SkillCall) -> AgentResult:
    """The compensation of ``retry_payment`` when its plan fails later: cancel the scheduled
    retry, so the payment is failed again (under the key ``<retry's key>:undo``, so once)."""
    params = call.params_as(PaymentParams)
    done = call.act(
        "cancel_payment_retry",
        None,
        lambda key: call.backend.cancel_payment_retry(key, call.customer_id, params.payment_id),
    )
    return call.result(template="retry_cancelled", action_key=call.key, facts=done)


# -- payment.list_payments ----------------------------------------------------------------------

LIST_TEMPLATES = {
    "recent": "Your most recent payments: {payments}.",
    "none": "You haven't made any payments yet.",
}


def _line(payment: Payment) -> str:
    amount = show_money(payment.amount, payment.currency)
    return f"{payment.id} to {payment.payee}, {amount}, {payment.status}"


async def list_payments(call: SkillCall) -> AgentResult:
    """The customer's most recent payments, newest first."""
    recent = call.backend.payments(call.customer_id)[:RECENT_LIMIT]
    if not recent:
        return call.result(template="none")
    return call.result(
        template="recent",
        payments="; ".join(_line(p) for p in recent),
        count=len(recent),
        payment_ids=", ".join(p.id for p in recent),
    )


SKILLS: tuple[Skill, ...] = (
    Skill(
        name="payment.retry_payment",
        agent="payment",
        description="Retry a failed payment or transfer, by payment id.",
        params=PaymentParams,
        run=retry_payment,
        requires=("payment_id",),
        intents=frozenset({"payment_retry", "retry_payment"}),
        keywords=("retry", "try again", "resend", "resubmit"),
        action=True,
        compensate=cancel_retry,
        verification_s=SENSITIVE_S,
        templates=RETRY_TEMPLATES,
        facts=('payment_id', 'payee', 'amount', 'status', 'created', 'failure_reason', 'estimated_arrival', 'retried_on'),
    ),
    Skill(
        name="payment.transfer_status",
        agent="payment",
        description="Status and expected arrival of a transfer (unnamed: the latest pending one).",
        params=TransferParams,
        run=transfer_status,
        intents=frozenset(
            {
                "pending_transfer",
                "transfer_not_received_by_recipient",
                "transfer_timing",
                "balance_not_updated_after_bank_transfer",
                "failed_transfer",
                "declined_transfer",
                "transfer_status",
            }
        ),
        keywords=("transfer", "arrive", "landlord", "sent money", "wire", "received"),
        templates=TRANSFER_TEMPLATES,
        offers=("payment.retry_payment",),
        facts=('payment_id', 'payee', 'amount', 'status', 'created', 'arrived_on', 'estimated_arrival', 'failure_reason'),
    ),
    Skill(
        name="payment.list_payments",
        agent="payment",
        description="List the customer's most recent payments and their status.",
        params=NoParams,
        run=list_payments,
        intents=frozenset({"payment_history", "list_payments"}),
        keywords=("payments", "history"),
        templates=LIST_TEMPLATES,
        facts=('payments', 'count', 'payment_ids'),
    ),
)
