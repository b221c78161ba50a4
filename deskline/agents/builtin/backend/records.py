"""The records of the demo system of record, and the one way each value is shown to a customer.

Plain frozen dataclasses shared by the seed data, both backends and the skills, so a refund
looks the same whether it came from memory, SQLite or PostgreSQL. Every value a skill puts in
its facts goes through the formatters here (money through ``format_money``), so the writer's
grounding check can find it in the reply character for character.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Literal

from deskline.handoffs import Money, format_money

AccountStatus = Literal["active", "locked"]
InvoiceStatus = Literal["paid", "open"]
ChargeStatus = Literal["captured", "refunded"]
PaymentStatus = Literal["pending", "completed", "failed"]
Component = Literal["login", "app", "payments"]
IncidentStatus = Literal["ongoing", "resolved"]
ActionName = Literal[
    "refund_charge",
    "send_password_reset",
    "unlock_account",
    "retry_payment",
    "relock_account",  # undoes unlock_account
    "cancel_payment_retry",  # undoes retry_payment
]

Facts = Mapping[str, str]
Clock = Callable[[], datetime]


@dataclass(frozen=True, slots=True)
class Customer:
    id: str
    name: str
    email: str
    phone: str
    plan: str
    status: AccountStatus
    last_login: datetime
    failed_logins: int = 0
    reset_sent_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Invoice:
    id: str
    customer_id: str
    amount: Decimal
    currency: str
    issued: date
    due: date
    status: InvoiceStatus

    @property
    def money(self) -> Money:
        return Money(amount=self.amount, currency=self.currency)


@dataclass(frozen=True, slots=True)
class Charge:
    id: str
    customer_id: str
    invoice_id: str
    amount: Decimal
    currency: str
    charged_on: date
    status: ChargeStatus = "captured"
    refund_id: str | None = None
    refunded_on: date | None = None

    @property
    def money(self) -> Money:
        return Money(amount=self.amount, currency=self.currency)


@dataclass(frozen=True, slots=True)
class Payment:
    """A transfer the customer sent; ``estimated_arrival`` is the arrival date once completed."""

    id: str
    customer_id: str
    payee: str
    amount: Decimal
    currency: str
    status: PaymentStatus
    created: date
    estimated_arrival: date | None = None
    failure_reason: str = ""
    retries: int = 0

    @property
    def money(self) -> Money:
        return Money(amount=self.amount, currency=self.currency)


@dataclass(frozen=True, slots=True)
class Incident:
    id: str
    component: Component
    status: IncidentStatus
    started: datetime
    summary: str
    resolved: datetime | None = None


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One action done under an idempotency key, with the facts it produced."""

    key: str
    action: ActionName
    customer_id: str
    target: str
    facts: Mapping[str, str]
    recorded_at: datetime


# -- how values are shown -------------------------------------------------------------------


def show_money(amount: Decimal, currency: str) -> str:
    return format_money(amount, currency)


def show_date(day: date) -> str:
    """``March 1, 2025``: unambiguous in every locale the demo serves."""
    return f"{day:%B} {day.day}, {day.year}"


def show_time(moment: datetime) -> str:
    """``March 14, 2025 at 07:30 UTC``."""
    utc = as_utc(moment)
    return f"{show_date(utc.date())} at {utc:%H:%M} UTC"


def mask_email(email: str) -> str:
    """``a***@example.com``: enough for the customer to recognise it, useless to anyone else."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}" if domain else "***"


def as_utc(moment: datetime) -> datetime:
    """Databases that drop the zone (SQLite) hand back naive UTC; make it aware again."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
