"""The system of record in the desk's own database (SQLite file or memory, PostgreSQL).

Exactly once, even across processes: an action first inserts its ledger row (the idempotency
key is the primary key), then changes the record under a row lock, then writes the facts into
the ledger row, all in one transaction. A crash leaves both or neither. A concurrent caller with
the same key blocks on the key until the first commits, gets an ``IntegrityError`` and returns
the recorded facts instead. Two different keys on the same record serialise on the row lock
(``SELECT ... FOR UPDATE`` on PostgreSQL, the single writer on SQLite), so a charge is never
refunded twice.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, Row, Select, Table, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.pool import StaticPool
from sqlmodel import Session

from deskline.agents.builtin.backend import rules
from deskline.agents.builtin.backend.driver_reads import DriverReads
from deskline.agents.builtin.backend.port import ActionRejected, BackendUnavailable
from deskline.agents.builtin.backend.records import (
    ActionName,
    Charge,
    Clock,
    Component,
    Customer,
    Facts,
    Incident,
    Invoice,
    LedgerEntry,
    Payment,
)
from deskline.agents.builtin.backend.seed import DEMO_SEED, Seed, demo_clock
from deskline.agents.builtin.backend.tables import (
    ChargeRow,
    CustomerRow,
    IncidentRow,
    InvoiceRow,
    LedgerRow,
    PaymentRow,
    SeedRow,
    charge_record,
    charge_row,
    customer_record,
    customer_row,
    incident_record,
    incident_row,
    invoice_record,
    invoice_row,
    ledger_record,
    payment_record,
    payment_row,
)
from deskline.eventlog.database import make_engine

Change = Callable[[Connection, datetime], Facts]

_CUSTOMER: Table = CustomerRow.__table__  # type: ignore[attr-defined]
_INVOICE: Table = InvoiceRow.__table__  # type: ignore[attr-defined]
_CHARGE: Table = ChargeRow.__table__  # type: ignore[attr-defined]
_PAYMENT: Table = PaymentRow.__table__  # type: ignore[attr-defined]
_INCIDENT: Table = IncidentRow.__table__  # type: ignore[attr-defined]
_LEDGER: Table = LedgerRow.__table__  # type: ignore[attr-defined]
# Every read is one of these statements, built once (``DriverReads`` compiles each once).
_BY_KEY = {
    t.name: select(t).where(next(iter(t.primary_key.columns)) == bindparam("key"))
    for t in (_CUSTOMER, _INVOICE, _CHARGE, _PAYMENT, _INCIDENT, _LEDGER)
}
_INVOICES = (
    select(_INVOICE)
    .where(_INVOICE.c.customer_id == bindparam("customer"))
    .order_by(_INVOICE.c.issued.desc(), _INVOICE.c.id.desc())
)
_CHARGES = (
    select(_CHARGE)
    .where(_CHARGE.c.customer_id == bindparam("customer"), _CHARGE.c.invoice_id == bindparam("invoice"))
    .order_by(_CHARGE.c.charged_on, _CHARGE.c.id)
)
_PAYMENTS = (
    select(_PAYMENT)
    .where(_PAYMENT.c.customer_id == bindparam("customer"))
    .order_by(_PAYMENT.c.created.desc(), _PAYMENT.c.id.desc())
)


def _incidents(by_component: bool, by_status: bool) -> Select[Any]:
    query = select(_INCIDENT)
    if by_component:
        query = query.where(_INCIDENT.c.component == bindparam("component"))
    if by_status:
        query = query.where(_INCIDENT.c.status == bindparam("status"))
    return query.order_by(_INCIDENT.c.started.desc(), _INCIDENT.c.id.desc())


_INCIDENTS = {(c, s): _incidents(c, s) for c in (False, True) for s in (False, True)}


class SqlBackend:
    """A ``Backend`` over SQLModel tables; creates its ``sor_`` tables and seeds what is missing."""

    def __init__(
        self, engine: Engine, *, clock: Clock = demo_clock, seed: Seed | None = DEMO_SEED
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._dbapi: Any = engine.dialect.loaded_dbapi
        # ``sqlite://`` shares one connection between threads: transactions must not interleave.
        self._serial: threading.RLock | None = (
            threading.RLock() if isinstance(engine.pool, StaticPool) else None
        )
        self._driver = DriverReads(engine) if engine.dialect.name == "postgresql" else None
        self.create_tables()
        if seed is not None:
            self.seed(seed)

    @classmethod
    def from_url(
        cls, url: str, *, clock: Clock = demo_clock, seed: Seed | None = DEMO_SEED
    ) -> SqlBackend:
        return cls(make_engine(url), clock=clock, seed=seed)

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def blocking(self) -> bool:
        """A network database's round trips would stop the event loop: the desk runs this
        backend's skills on worker threads (``deskline.hierarchy.offloop``). SQLite answers in
        microseconds, less than the hop."""
        return self._engine.dialect.name != "sqlite"

    def create_tables(self) -> None:
        """A brand-new database gets every deskline table (the ``sor_`` ones included) at the newest
        revision; any other database must already be there (``deskline db upgrade``)."""
        from deskline.eventlog.schema import prepare

        with self._guard():
            prepare(self._engine)

    def seed(self, seed: Seed = DEMO_SEED) -> None:
        """Insert the seed records that are missing; rows already present are left as they are."""
        with self._guard():
            try:
                self._insert_missing(seed)
            except IntegrityError:
                self._insert_missing(seed)  # a concurrent seeder won the race for some rows

    def _insert_missing(self, seed: Seed) -> None:
        groups: list[list[SeedRow]] = [
            [customer_row(c) for c in seed.customers],
            [invoice_row(i) for i in seed.invoices],
            [charge_row(c) for c in seed.charges],
            [payment_row(p) for p in seed.payments],
            [incident_row(i) for i in seed.incidents],
        ]
        with Session(self._engine) as s, s.begin():
            for rows in groups:
                if not rows:
                    continue
                table = type(rows[0])
                present = set(s.scalars(select(table.__table__.c.id)).all())  # type: ignore[union-attr]
                s.add_all(row for row in rows if row.id not in present)

    # -- reads: SQLAlchemy Core, one statement each ---------------------------------------------

    def customer(self, customer_id: str) -> Customer | None:
        row = self._one(_CUSTOMER, customer_id)
        return None if row is None else customer_record(row)

    def invoices(self, customer_id: str) -> tuple[Invoice, ...]:
        return tuple(invoice_record(r) for r in self._rows(_INVOICES, {"customer": customer_id}))

    def invoice(self, customer_id: str, invoice_id: str) -> Invoice | None:
        row = self._one(_INVOICE, invoice_id)
        return invoice_record(row) if row is not None and row.customer_id == customer_id else None

    def charges(self, customer_id: str, invoice_id: str) -> tuple[Charge, ...]:
        rows = self._rows(_CHARGES, {"customer": customer_id, "invoice": invoice_id})
        return tuple(charge_record(r) for r in rows)

    def charge(self, customer_id: str, charge_id: str) -> Charge | None:
        row = self._one(_CHARGE, charge_id)
        return charge_record(row) if row is not None and row.customer_id == customer_id else None

    def payments(self, customer_id: str) -> tuple[Payment, ...]:
        return tuple(payment_record(r) for r in self._rows(_PAYMENTS, {"customer": customer_id}))

    def payment(self, customer_id: str, payment_id: str) -> Payment | None:
        row = self._one(_PAYMENT, payment_id)
        return payment_record(row) if row is not None and row.customer_id == customer_id else None

    def incidents(
        self, component: Component | None = None, *, ongoing: bool | None = None
    ) -> tuple[Incident, ...]:
        query = _INCIDENTS[component is not None, ongoing is not None]
        params = {"component": component, "status": "ongoing" if ongoing else "resolved"}
        return tuple(incident_record(r) for r in self._rows(query, params))

    def recorded(self, key: str) -> LedgerEntry | None:
        row = self._one(_LEDGER, key)
        return None if row is None else ledger_record(row)

    # -- actions ----------------------------------------------------------------------------

    def refund_charge(self, key: str, customer_id: str, charge_id: str) -> Facts:
        def change(conn: Connection, now: datetime) -> Facts:
            row = _locked(conn, _CHARGE, charge_id)
            if row is None or row.customer_id != customer_id:
                raise _missing("refund_charge", charge_id)
            done, facts = rules.refund(charge_record(row), now)
            _write(conn, _CHARGE, charge_row(done))
            return facts

        return self._perform(key, "refund_charge", customer_id, charge_id, change)

    def send_password_reset(self, key: str, customer_id: str) -> Facts:
        def change(conn: Connection, now: datetime) -> Facts:
            sent, facts = rules.send_password_reset(
                _locked_customer(conn, "send_password_reset", customer_id), now
            )
            _write(conn, _CUSTOMER, customer_row(sent))
            return facts

        return self._perform(key, "send_password_reset", customer_id, customer_id, change)

    def unlock_account(self, key: str, customer_id: str) -> Facts:
        def change(conn: Connection, now: datetime) -> Facts:
            unlocked, facts = rules.unlock(_locked_customer(conn, "unlock_account", customer_id), now)
            _write(conn, _CUSTOMER, customer_row(unlocked))
            return facts

        return self._perform(key, "unlock_account", customer_id, customer_id, change)

    def retry_payment(self, key: str, customer_id: str, payment_id: str) -> Facts:
        def change(conn: Connection, now: datetime) -> Facts:
            row = _locked(conn, _PAYMENT, payment_id)
            if row is None or row.customer_id != customer_id:
                raise _missing("retry_payment", payment_id)
            again, facts = rules.retry(payment_record(row), now)
            _write(conn, _PAYMENT, payment_row(again))
            return facts

        return self._perform(key, "retry_payment", customer_id, payment_id, change)

    def relock_account(self, key: str, customer_id: str) -> Facts:
        def change(conn: Connection, now: datetime) -> Facts:
            locked, facts = rules.relock(_locked_customer(conn, "relock_account", customer_id), now)
            _write(conn, _CUSTOMER, customer_row(locked))
            return facts

        return self._perform(key, "relock_account", customer_id, customer_id, change)

    def cancel_payment_retry(self, key: str, customer_id: str, payment_id: str) -> Facts:
        def change(conn: Connection, now: datetime) -> Facts:
            row = _locked(conn, _PAYMENT, payment_id)
            if row is None or row.customer_id != customer_id:
                raise _missing("cancel_payment_retry", payment_id)
            back, facts = rules.cancel_retry(payment_record(row), now)
            _write(conn, _PAYMENT, payment_row(back))
            return facts

        return self._perform(key, "cancel_payment_retry", customer_id, payment_id, change)

    # -- plumbing ---------------------------------------------------------------------------

    def _perform(
        self, key: str, action: ActionName, customer_id: str, target: str, change: Change
    ) -> Facts:
        now = self._clock()
        try:
            with self._guard(), self._engine.begin() as conn:
                # Claim the key before touching anything: same-key callers wait here, and a key
                # already recorded fails here (no read first: a repeat is the rare case).
                conn.execute(insert(_LEDGER).values(key=key, action=action, customer_id=customer_id,
                                                    target=target, facts="{}", recorded_at=now))
                facts = dict(change(conn, now))
                conn.execute(update(_LEDGER).where(_LEDGER.c.key == key)
                             .values(facts=json.dumps(facts, sort_keys=True)))
        except IntegrityError:
            done = self.recorded(key)
            if done is None:
                raise
            return rules.replay(key, done, action, customer_id, target)
        return facts

    def _rows(self, query: Select[Any], params: dict[str, Any] | None = None) -> Sequence[Any]:
        """A read's rows, of one of this module's prebuilt statements. On PostgreSQL straight on
        the driver in autocommit (``DriverReads``: a third of a Core read's CPU, no ROLLBACK round
        trip); on SQLite through SQLAlchemy Core (an ORM session read cost twice as much)."""
        with self._guard():
            if self._driver is not None:
                return self._driver.rows(query, params)
            with self._engine.connect() as conn:
                return conn.execute(query, params).all()

    def _one(self, table: Table, key: str) -> Row[Any] | None:
        """The row of ``table`` whose primary key is ``key``, if any."""
        rows = self._rows(_BY_KEY[table.name], {"key": key})
        return rows[0] if rows else None

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """Serialise on a shared in-memory connection; turn an unreachable database into a
        transient ``BackendUnavailable`` the operation layer may retry."""
        serial: AbstractContextManager[object] = (
            self._serial if self._serial is not None else nullcontext()
        )
        try:
            with serial:
                yield
        except (OperationalError, InterfaceError) as exc:
            raise BackendUnavailable(
                "the system of record is unavailable", backend="sql", cause=type(exc.orig).__name__
            ) from exc
        except (self._dbapi.OperationalError, self._dbapi.InterfaceError) as exc:  # a driver read
            raise BackendUnavailable(
                "the system of record is unavailable", backend="sql", cause=type(exc).__name__
            ) from exc


def _missing(action: ActionName, target: str) -> ActionRejected:
    return ActionRejected(f"{target} not found", action=action, target=target)


def _locked_customer(conn: Connection, action: ActionName, customer_id: str) -> Customer:
    row = _locked(conn, _CUSTOMER, customer_id)
    if row is None:
        raise _missing(action, customer_id)
    return customer_record(row)


def _locked(conn: Connection, table: Table, key: str) -> Row[Any] | None:
    """The row whose primary key is ``key``, locked until the transaction ends (``FOR UPDATE``
    on PostgreSQL; SQLite's single writer already holds the database)."""
    return conn.execute(_BY_KEY[table.name].with_for_update(), {"key": key}).first()


def _write(conn: Connection, table: Table, row: SeedRow) -> None:
    """Store every column of ``row`` over the row with its primary key."""
    (column,) = table.primary_key.columns
    values = row.model_dump()
    conn.execute(update(table).where(column == values.pop(column.name)).values(**values))
