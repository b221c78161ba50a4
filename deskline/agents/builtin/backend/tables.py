"""The SQL tables of the demo system of record, and their mapping to and from the records.

The tables live in a registry and ``MetaData`` of their own (``SOR_METADATA``) and every name
starts with ``sor_``, so creating them never touches the event log's tables in the same database.
Amounts are stored as integer minor units (cents): exact on SQLite, which has no decimal type.
Times are stored as UTC; SQLite hands them back naive and ``as_utc`` restores the zone.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import DateTime, MetaData, Row
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from deskline.agents.builtin.backend.records import (
    AccountStatus,
    ActionName,
    Charge,
    ChargeStatus,
    Component,
    Customer,
    Incident,
    IncidentStatus,
    Invoice,
    InvoiceStatus,
    LedgerEntry,
    Payment,
    PaymentStatus,
    as_utc,
)

SOR_METADATA = MetaData()
_REGISTRY = registry(metadata=SOR_METADATA)


class SorModel(SQLModel, registry=_REGISTRY):
    """Base of the system-of-record tables: kept out of ``SQLModel.metadata`` on purpose."""


def _utc_column() -> DateTime:
    return DateTime(timezone=True)


class CustomerRow(SorModel, table=True):
    __tablename__ = "sor_customer"

    id: str = Field(primary_key=True, max_length=32)
    name: str = Field(max_length=200)
    email: str = Field(max_length=320)
    phone: str = Field(max_length=40)
    plan: str = Field(max_length=40)
    status: str = Field(max_length=16)
    last_login: datetime = Field(sa_type=_utc_column())
    failed_logins: int = 0
    reset_sent_at: datetime | None = Field(default=None, sa_type=_utc_column())


class InvoiceRow(SorModel, table=True):
    __tablename__ = "sor_invoice"

    id: str = Field(primary_key=True, max_length=32)
    customer_id: str = Field(index=True, max_length=32)
    amount_cents: int
    currency: str = Field(max_length=3)
    issued: date
    due: date
    status: str = Field(max_length=16)


class ChargeRow(SorModel, table=True):
    __tablename__ = "sor_charge"

    id: str = Field(primary_key=True, max_length=32)
    customer_id: str = Field(index=True, max_length=32)
    invoice_id: str = Field(index=True, max_length=32)
    amount_cents: int
    currency: str = Field(max_length=3)
    charged_on: date
    status: str = Field(max_length=16)
    refund_id: str | None = Field(default=None, max_length=32)
    refunded_on: date | None = None


class PaymentRow(SorModel, table=True):
    __tablename__ = "sor_payment"

    id: str = Field(primary_key=True, max_length=32)
    customer_id: str = Field(index=True, max_length=32)
    payee: str = Field(max_length=200)
    amount_cents: int
    currency: str = Field(max_length=3)
    status: str = Field(max_length=16)
    created: date
    estimated_arrival: date | None = None
    failure_reason: str = Field(default="", max_length=400)
    retries: int = 0


class IncidentRow(SorModel, table=True):
    __tablename__ = "sor_incident"

    id: str = Field(primary_key=True, max_length=32)
    component: str = Field(index=True, max_length=32)
    status: str = Field(max_length=16)
    started: datetime = Field(sa_type=_utc_column())
    summary: str = Field(max_length=1000)
    resolved: datetime | None = Field(default=None, sa_type=_utc_column())


class LedgerRow(SorModel, table=True):
    """One row per idempotency key: the primary key is what makes an action happen once."""

    __tablename__ = "sor_action_ledger"

    key: str = Field(primary_key=True, max_length=200)
    action: str = Field(max_length=40)
    customer_id: str = Field(index=True, max_length=32)
    target: str = Field(max_length=64)
    facts: str
    recorded_at: datetime = Field(sa_type=_utc_column())


SeedRow = CustomerRow | InvoiceRow | ChargeRow | PaymentRow | IncidentRow


def cents(amount: Decimal) -> int:
    return int((amount * 100).to_integral_value())


def from_cents(value: int) -> Decimal:
    return Decimal(value).scaleb(-2)


def _utc(moment: datetime | None) -> datetime | None:
    return None if moment is None else as_utc(moment)


def customer_row(c: Customer) -> CustomerRow:
    return CustomerRow(
        id=c.id,
        name=c.name,
        email=c.email,
        phone=c.phone,
        plan=c.plan,
        status=c.status,
        last_login=as_utc(c.last_login),
        failed_logins=c.failed_logins,
        reset_sent_at=_utc(c.reset_sent_at),
    )


def customer_record(r: CustomerRow | Row[Any]) -> Customer:
    return Customer(
        id=r.id,
        name=r.name,
        email=r.email,
        phone=r.phone,
        plan=r.plan,
        status=cast(AccountStatus, r.status),
        last_login=as_utc(r.last_login),
        failed_logins=r.failed_logins,
        reset_sent_at=_utc(r.reset_sent_at),
    )


def invoice_row(i: Invoice) -> InvoiceRow:
    return InvoiceRow(
        id=i.id,
        customer_id=i.customer_id,
        amount_cents=cents(i.amount),
        currency=i.currency,
        issued=i.issued,
        due=i.due,
        status=i.status,
    )


def invoice_record(r: InvoiceRow | Row[Any]) -> Invoice:
    return Invoice(
        id=r.id,
        customer_id=r.customer_id,
        amount=from_cents(r.amount_cents),
        currency=r.currency,
        issued=r.issued,
        due=r.due,
        status=cast(InvoiceStatus, r.status),
    )


def charge_row(c: Charge) -> ChargeRow:
    return ChargeRow(
        id=c.id,
        customer_id=c.customer_id,
        invoice_id=c.invoice_id,
        amount_cents=cents(c.amount),
        currency=c.currency,
        charged_on=c.charged_on,
        status=c.status,
        refund_id=c.refund_id,
        refunded_on=c.refunded_on,
    )


def charge_record(r: ChargeRow | Row[Any]) -> Charge:
    return Charge(
        id=r.id,
        customer_id=r.customer_id,
        invoice_id=r.invoice_id,
        amount=from_cents(r.amount_cents),
        currency=r.currency,
        charged_on=r.charged_on,
        status=cast(ChargeStatus, r.status),
        refund_id=r.refund_id,
        refunded_on=r.refunded_on,
    )


def payment_row(p: Payment) -> PaymentRow:
    return PaymentRow(
        id=p.id,
        customer_id=p.customer_id,
        payee=p.payee,
        amount_cents=cents(p.amount),
        currency=p.currency,
        status=p.status,
        created=p.created,
        estimated_arrival=p.estimated_arrival,
        failure_reason=p.failure_reason,
        retries=p.retries,
    )


def payment_record(r: PaymentRow | Row[Any]) -> Payment:
    return Payment(
        id=r.id,
        customer_id=r.customer_id,
        payee=r.payee,
        amount=from_cents(r.amount_cents),
        currency=r.currency,
        status=cast(PaymentStatus, r.status),
        created=r.created,
        estimated_arrival=r.estimated_arrival,
        failure_reason=r.failure_reason,
        retries=r.retries,
    )


def incident_row(i: Incident) -> IncidentRow:
    return IncidentRow(
        id=i.id,
        component=i.component,
        status=i.status,
        started=as_utc(i.started),
        summary=i.summary,
        resolved=_utc(i.resolved),
    )


def incident_record(r: IncidentRow | Row[Any]) -> Incident:
    return Incident(
        id=r.id,
        component=cast(Component, r.component),
        status=cast(IncidentStatus, r.status),
        started=as_utc(r.started),
        summary=r.summary,
        resolved=_utc(r.resolved),
    )


def ledger_record(r: LedgerRow | Row[Any]) -> LedgerEntry:
    facts = json.loads(r.facts)
    return LedgerEntry(
        key=r.key,
        action=cast(ActionName, r.action),
        customer_id=r.customer_id,
        target=r.target,
        facts={str(k): str(v) for k, v in facts.items()},
        recorded_at=as_utc(r.recorded_at),
    )
