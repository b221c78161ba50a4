"""What each action does to a record, as pure functions shared by every backend.

A backend loads the record, calls the rule, stores the new record and the facts together: so
the memory and SQL backends cannot drift apart on what a refund means or what it reports.
A rule raises ``ActionRejected`` when the record is not in a state the action applies to.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta

from deskline.agents.builtin.backend.port import ActionRejected, IdempotencyConflict
from deskline.agents.builtin.backend.records import (
    ActionName,
    Charge,
    Customer,
    Facts,
    LedgerEntry,
    Payment,
    as_utc,
    mask_email,
    show_date,
    show_money,
    show_time,
)

REFUND_DAYS = timedelta(days=10)
RESET_LINK_LIFETIME = timedelta(minutes=30)
TRANSFER_DAYS = timedelta(days=2)


def refund_reference(charge_id: str) -> str:
    """A charge is refunded at most once, so its refund reference derives from its id."""
    return "RF-" + charge_id.removeprefix("CH-")


def refund_expected_by(refunded_on: date) -> date:
    return refunded_on + REFUND_DAYS


def refund_facts(charge: Charge) -> dict[str, str]:
    """What a customer is told about a refunded charge (also when it was refunded earlier)."""
    assert charge.refund_id is not None and charge.refunded_on is not None
    return {
        "charge_id": charge.id,
        "invoice_id": charge.invoice_id,
        "amount": show_money(charge.amount, charge.currency),
        "refund_id": charge.refund_id,
        "refunded_on": show_date(charge.refunded_on),
        "expected_by": show_date(refund_expected_by(charge.refunded_on)),
    }


def refund(charge: Charge, now: datetime) -> tuple[Charge, Facts]:
    if charge.status != "captured":
        raise ActionRejected(
            f"charge {charge.id} is {charge.status}", action="refund_charge", target=charge.id
        )
    done = replace(
        charge,
        status="refunded",
        refund_id=refund_reference(charge.id),
        refunded_on=as_utc(now).date(),
    )
    return done, refund_facts(done)


def send_password_reset(customer: Customer, now: datetime) -> tuple[Customer, Facts]:
    sent = replace(customer, reset_sent_at=as_utc(now))
    return sent, {
        "masked_email": mask_email(customer.email),
        "link_expires": show_time(as_utc(now) + RESET_LINK_LIFETIME),
    }


def unlock(customer: Customer, now: datetime) -> tuple[Customer, Facts]:
    if customer.status != "locked":
        raise ActionRejected(
            f"account {customer.id} is {customer.status}",
            action="unlock_account",
            target=customer.id,
        )
    unlocked = replace(customer, status="active", failed_logins=0)
    return unlocked, {"account_status": unlocked.status, "unlocked_at": show_time(now)}


def retry(payment: Payment, now: datetime) -> tuple[Payment, Facts]:
    if payment.status != "failed":
        raise ActionRejected(
            f"payment {payment.id} is {payment.status}", action="retry_payment", target=payment.id
        )
    today = as_utc(now).date()
    again = replace(
        payment,
        status="pending",
        estimated_arrival=today + TRANSFER_DAYS,
        failure_reason="",
        retries=payment.retries + 1,
    )
    assert again.estimated_arrival is not None
    return again, {
        "payment_id": again.id,
        "payee": again.payee,
        "amount": show_money(again.amount, again.currency),
        "status": again.status,
        "estimated_arrival": show_date(again.estimated_arrival),
        "retried_on": show_date(today),
    }


def relock(customer: Customer, now: datetime) -> tuple[Customer, Facts]:
    """Undo an unlock: the account is locked again (its failed sign-ins stay cleared)."""
    if customer.status != "active":
        raise ActionRejected(
            f"account {customer.id} is {customer.status}", action="relock_account", target=customer.id
        )
    locked = replace(customer, status="locked")
    return locked, {"account_status": locked.status, "relocked_at": show_time(now)}


RETRY_CANCELLED = "its retry was cancelled"


def cancel_retry(payment: Payment, now: datetime) -> tuple[Payment, Facts]:
    """Undo a retry that has not gone through yet: the payment is failed again."""
    if payment.status != "pending" or payment.retries == 0:
        raise ActionRejected(
            f"payment {payment.id} is {payment.status} with no retry to cancel",
            action="cancel_payment_retry",
            target=payment.id,
        )
    back = replace(payment, status="failed", estimated_arrival=None, failure_reason=RETRY_CANCELLED)
    return back, {
        "payment_id": back.id,
        "status": back.status,
        "retry_cancelled_on": show_date(as_utc(now).date()),
    }


def replay(
    key: str, entry: LedgerEntry, action: ActionName, customer_id: str, target: str
) -> Facts:
    """The facts recorded under ``key``, provided it recorded this same action on this target."""
    if (entry.action, entry.customer_id, entry.target) != (action, customer_id, target):
        raise IdempotencyConflict(key, entry, action, target)
    return dict(entry.facts)
