"""One contract for every system of record: memory, SQLite (file and memory) and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from datetime import date, datetime
from decimal import Decimal

import pytest
from sqlmodel import SQLModel

from deskline.agents.builtin.backend import (
    DEMO_NOW,
    ActionRejected,
    Backend,
    IdempotencyConflict,
    MemoryBackend,
    SqlBackend,
    demo_clock,
)
from deskline.agents.builtin.backend.records import Clock, Facts
from deskline.agents.builtin.backend.tables import SOR_METADATA

MakeBackend = Callable[..., Backend]
C1, C2 = "C-1001", "C-1002"


class BackendContract:
    """The behaviour every ``Backend`` implementation must show; subclasses supply the backend."""

    #: Whether the backend's clock is read while it holds its own lock (then it cannot block).
    clock_under_lock = False

    @pytest.fixture
    def make_backend(self) -> Iterator[MakeBackend]:
        raise NotImplementedError
        yield  # pragma: no cover

    @pytest.fixture
    def backend(self, make_backend: MakeBackend) -> Backend:
        return make_backend()

    # -- lookups ----------------------------------------------------------------------------

    def test_customer_lookup(self, backend: Backend) -> None:
        """The demo customer is seeded locked, with failed sign-ins; an unknown id is None."""
        alex = backend.customer(C1)
        assert alex is not None
        assert (alex.name, alex.status, alex.failed_logins) == ("Alex Morgan", "locked", 5)
        assert alex.email == "alex.morgan@example.com"
        assert backend.customer("C-9999") is None

    def test_invoices_are_the_customers_own_newest_first(self, backend: Backend) -> None:
        """Each customer lists only their own invoices, newest issued first."""
        assert [i.id for i in backend.invoices(C1)] == [
            "INV-1004",
            "INV-1003",
            "INV-1001",
            "INV-1002",
        ]
        assert [i.id for i in backend.invoices(C2)] == ["INV-1101"]
        assert backend.invoices("C-9999") == ()

    def test_invoice_with_exact_amount_and_dates(self, backend: Backend) -> None:
        """Amounts come back as exact decimals and dates as dates, on every store."""
        invoice = backend.invoice(C1, "INV-1003")
        assert invoice is not None
        assert (invoice.amount, invoice.currency) == (Decimal("750.00"), "USD")
        assert (invoice.issued, invoice.due, invoice.status) == (
            date(2025, 3, 5),
            date(2025, 3, 19),
            "paid",
        )

    def test_duplicate_charges_are_seeded(self, backend: Backend) -> None:
        """INV-1001 and INV-1003 were each charged twice, both charges captured."""
        small = backend.charges(C1, "INV-1001")
        assert [(c.id, c.amount, c.status) for c in small] == [
            ("CH-2001", Decimal("49.00"), "captured"),
            ("CH-2002", Decimal("49.00"), "captured"),
        ]
        big = backend.charges(C1, "INV-1003")
        assert [(c.id, c.amount) for c in big] == [
            ("CH-2004", Decimal("750.00")),
            ("CH-2005", Decimal("750.00")),
        ]

    def test_payments_newest_first_with_states(self, backend: Backend) -> None:
        """The landlord transfer is pending with an arrival date; one failed, one completed."""
        payments = backend.payments(C1)
        assert [(p.id, p.status) for p in payments] == [
            ("PAY-3001", "pending"),
            ("PAY-3002", "failed"),
            ("PAY-3003", "completed"),
        ]
        landlord = backend.payment(C1, "PAY-3001")
        assert landlord is not None
        assert landlord.amount == Decimal("1200.00") and "landlord" in landlord.payee
        assert landlord.estimated_arrival == date(2025, 3, 17)

    def test_incidents_filter_by_component_and_state(self, backend: Backend) -> None:
        """One ongoing sign-in incident and one resolved payments incident, with aware times."""
        assert [i.id for i in backend.incidents()] == ["INC-501", "INC-498"]
        ongoing = backend.incidents(ongoing=True)
        assert [(i.id, i.component) for i in ongoing] == [("INC-501", "login")]
        assert ongoing[0].started == datetime(2025, 3, 14, 7, 30, tzinfo=DEMO_NOW.tzinfo)
        assert [i.id for i in backend.incidents("payments", ongoing=False)] == ["INC-498"]
        assert backend.incidents("app") == ()

    def test_unknown_ids_are_not_found(self, backend: Backend) -> None:
        """Lookups of ids that do not exist return None or nothing, never raise."""
        assert backend.invoice(C1, "INV-9999") is None
        assert backend.charge(C1, "CH-9999") is None
        assert backend.payment(C1, "PAY-9999") is None
        assert backend.charges(C1, "INV-9999") == ()
        assert backend.recorded("no-such-key") is None

    def test_another_customers_records_are_not_found(self, backend: Backend) -> None:
        """A customer asking for another customer's ids gets exactly what an unknown id gets."""
        assert backend.invoice(C2, "INV-1001") is None
        assert backend.charges(C2, "INV-1001") == ()
        assert backend.charge(C2, "CH-2001") is None
        assert backend.payment(C2, "PAY-3001") is None
        assert backend.invoice(C1, "INV-1101") is None

    # -- actions ----------------------------------------------------------------------------

    def test_refund_charge(self, backend: Backend) -> None:
        """A refund marks the charge refunded and reports a reference and an expected date."""
        facts = backend.refund_charge("k-1", C1, "CH-2002")
        assert facts == {
            "charge_id": "CH-2002",
            "invoice_id": "INV-1001",
            "amount": "$49.00",
            "refund_id": "RF-2002",
            "refunded_on": "March 14, 2025",
            "expected_by": "March 24, 2025",
        }
        charge = backend.charge(C1, "CH-2002")
        assert charge is not None and charge.status == "refunded" and charge.refund_id == "RF-2002"
        assert backend.charge(C1, "CH-2001").status == "captured"  # type: ignore[union-attr]
        entry = backend.recorded("k-1")
        assert entry is not None
        assert (entry.action, entry.customer_id, entry.target) == ("refund_charge", C1, "CH-2002")
        assert dict(entry.facts) == facts

    def test_same_key_twice_applies_once(self, backend: Backend) -> None:
        """A second call with the same key returns the recorded facts and changes nothing."""
        first = backend.retry_payment("k-1", C1, "PAY-3002")
        second = backend.retry_payment("k-1", C1, "PAY-3002")
        assert first == second
        payment = backend.payment(C1, "PAY-3002")
        assert payment is not None and payment.retries == 1 and payment.status == "pending"

    def test_a_new_key_on_a_done_action_is_rejected(self, backend: Backend) -> None:
        """Refunding an already refunded charge under a new key is rejected, not repeated."""
        backend.refund_charge("k-1", C1, "CH-2002")
        with pytest.raises(ActionRejected):
            backend.refund_charge("k-2", C1, "CH-2002")
        assert backend.recorded("k-2") is None

    def test_rejected_action_leaves_no_ledger_entry(self, backend: Backend) -> None:
        """A rejected action rolls back its ledger claim, so the key stays free."""
        with pytest.raises(ActionRejected):
            backend.retry_payment("k-1", C1, "PAY-3001")  # pending: nothing to retry
        assert backend.recorded("k-1") is None
        backend.retry_payment("k-1", C1, "PAY-3002")
        assert backend.recorded("k-1") is not None

    def test_actions_on_another_customers_records_are_rejected(self, backend: Backend) -> None:
        """A customer cannot refund or retry another customer's charge or payment."""
        with pytest.raises(ActionRejected):
            backend.refund_charge("k-1", C2, "CH-2001")
        with pytest.raises(ActionRejected):
            backend.retry_payment("k-2", C1, "PAY-3101")
        assert backend.charge(C1, "CH-2001").status == "captured"  # type: ignore[union-attr]
        assert backend.payment(C2, "PAY-3101").status == "failed"  # type: ignore[union-attr]

    def test_key_reused_for_another_action_conflicts(self, backend: Backend) -> None:
        """One key names one action on one target: reusing it for another is an error."""
        backend.refund_charge("k-1", C1, "CH-2002")
        with pytest.raises(IdempotencyConflict):
            backend.refund_charge("k-1", C1, "CH-2005")
        with pytest.raises(IdempotencyConflict):
            backend.unlock_account("k-1", C1)
        assert backend.charge(C1, "CH-2005").status == "captured"  # type: ignore[union-attr]

    def test_password_reset_goes_to_the_masked_email_on_file(self, backend: Backend) -> None:
        """A reset link is sent to the email on file, shown masked, with an expiry time."""
        facts = backend.send_password_reset("k-1", C1)
        assert facts == {
            "masked_email": "a***@example.com",
            "link_expires": "March 14, 2025 at 09:30 UTC",
        }
        alex = backend.customer(C1)
        assert alex is not None and alex.reset_sent_at == DEMO_NOW

    def test_unlock_account(self, backend: Backend) -> None:
        """Unlocking makes the account active and clears failed sign-ins; twice is rejected."""
        facts = backend.unlock_account("k-1", C1)
        assert facts == {"account_status": "active", "unlocked_at": "March 14, 2025 at 09:00 UTC"}
        alex = backend.customer(C1)
        assert alex is not None and (alex.status, alex.failed_logins) == ("active", 0)
        with pytest.raises(ActionRejected):
            backend.unlock_account("k-2", C1)

    def test_retry_failed_payment(self, backend: Backend) -> None:
        """A failed payment is resubmitted as pending with a new arrival date."""
        facts = backend.retry_payment("k-1", C1, "PAY-3002")
        assert facts == {
            "payment_id": "PAY-3002",
            "payee": "Brightwater Utilities",
            "amount": "$86.40",
            "status": "pending",
            "estimated_arrival": "March 16, 2025",
            "retried_on": "March 14, 2025",
        }

    def test_relock_account_undoes_an_unlock_once(self, backend: Backend) -> None:
        """The unlock's compensation locks the account again, once per key; a locked account is rejected."""
        with pytest.raises(ActionRejected):
            backend.relock_account("k-0", C1)  # seeded locked: nothing to undo
        assert backend.recorded("k-0") is None
        backend.unlock_account("k-1", C1)
        facts = backend.relock_account("k-1:undo", C1)
        assert facts == {"account_status": "locked", "relocked_at": "March 14, 2025 at 09:00 UTC"}
        assert backend.relock_account("k-1:undo", C1) == facts
        alex = backend.customer(C1)
        assert alex is not None and alex.status == "locked"
        entry = backend.recorded("k-1:undo")
        assert entry is not None and entry.action == "relock_account"

    def test_cancel_payment_retry_undoes_a_retry_once(self, backend: Backend) -> None:
        """The retry's compensation makes the payment failed again, once per key; only a retried pending one."""
        with pytest.raises(ActionRejected):
            backend.cancel_payment_retry("k-0", C1, "PAY-3002")  # failed: no retry to cancel
        with pytest.raises(ActionRejected):
            backend.cancel_payment_retry("k-0", C1, "PAY-3001")  # pending, but never retried
        with pytest.raises(ActionRejected):
            backend.cancel_payment_retry("k-0", C1, "PAY-3101")  # another customer's
        backend.retry_payment("k-1", C1, "PAY-3002")
        facts = backend.cancel_payment_retry("k-1:undo", C1, "PAY-3002")
        assert facts == {"payment_id": "PAY-3002", "status": "failed", "retry_cancelled_on": "March 14, 2025"}
        assert backend.cancel_payment_retry("k-1:undo", C1, "PAY-3002") == facts
        payment = backend.payment(C1, "PAY-3002")
        assert payment is not None
        assert (payment.status, payment.estimated_arrival, payment.failure_reason) == (
            "failed", None, "its retry was cancelled")
        with pytest.raises(IdempotencyConflict):
            backend.cancel_payment_retry("k-1", C1, "PAY-3002")  # the retry's own key

    def test_seeding_again_changes_nothing(
        self, make_backend: MakeBackend, backend: Backend
    ) -> None:
        """Seeding an existing store again keeps every record, including changed ones."""
        backend.refund_charge("k-1", C1, "CH-2002")
        before = (backend.invoices(C1), backend.payments(C1), backend.incidents())
        backend.seed()  # type: ignore[attr-defined]
        again = make_backend() if not isinstance(backend, MemoryBackend) else backend
        assert (again.invoices(C1), again.payments(C1), again.incidents()) == before
        assert again.charge(C1, "CH-2002").status == "refunded"  # type: ignore[union-attr]

    # -- concurrency ------------------------------------------------------------------------

    def _racing_clock(self) -> Clock:
        """A clock that holds each caller until two arrive, so both race past the ledger check."""
        if self.clock_under_lock:
            return demo_clock
        gate = threading.Barrier(2, timeout=10)

        def clock() -> datetime:
            with suppress(threading.BrokenBarrierError):
                gate.wait()
            return DEMO_NOW

        return clock

    @pytest.mark.parametrize("action", ["refund", "retry"])
    def test_concurrent_same_key_applies_once(self, make_backend: MakeBackend, action: str) -> None:
        """Two threads with the same key: the change happens once and both get the same facts."""
        backend = make_backend(clock=self._racing_clock())

        def run(_: int) -> Facts:
            if action == "refund":
                return backend.refund_charge("same-key", C1, "CH-2002")
            return backend.retry_payment("same-key", C1, "PAY-3002")

        with ThreadPoolExecutor(max_workers=2) as pool:
            first, second = pool.map(run, range(2))
        assert first == second
        if action == "refund":
            assert backend.charge(C1, "CH-2002").status == "refunded"  # type: ignore[union-attr]
        else:
            assert backend.payment(C1, "PAY-3002").retries == 1  # type: ignore[union-attr]

    def test_concurrent_different_keys_on_one_charge_refund_once(
        self, make_backend: MakeBackend
    ) -> None:
        """Two keys refunding the same charge at once: one succeeds, the other is rejected."""
        backend = make_backend(clock=self._racing_clock())

        def run(n: int) -> str:
            try:
                backend.refund_charge(f"key-{n}", C1, "CH-2005")
            except ActionRejected:
                return "rejected"
            return "refunded"

        with ThreadPoolExecutor(max_workers=2) as pool:
            outcomes = sorted(pool.map(run, range(2)))
        assert outcomes == ["refunded", "rejected"]
        assert sum(backend.recorded(f"key-{n}") is not None for n in range(2)) == 1


class TestMemoryBackend(BackendContract):
    clock_under_lock = True

    @pytest.fixture
    def make_backend(self) -> Iterator[MakeBackend]:
        def make(clock: Clock = demo_clock) -> Backend:
            return MemoryBackend(clock=clock)

        yield make


class TestSqlBackend(BackendContract):
    """SQLite file and PostgreSQL (the ``database_url`` fixture runs both)."""

    @pytest.fixture
    def make_backend(self, database_url: str) -> Iterator[MakeBackend]:
        made: list[SqlBackend] = []

        def make(clock: Clock = demo_clock) -> Backend:
            made.append(SqlBackend.from_url(database_url, clock=clock))
            return made[-1]

        yield make
        for backend in made:
            backend.engine.dispose()


class TestSqliteMemoryBackend(BackendContract):
    """``sqlite://``: one shared connection, so the backend serialises its own transactions."""

    @pytest.fixture
    def make_backend(self) -> Iterator[MakeBackend]:
        shared: list[SqlBackend] = []

        def make(clock: Clock = demo_clock) -> Backend:
            if not shared:
                shared.append(SqlBackend.from_url("sqlite://", clock=clock))
                return shared[0]
            return SqlBackend(shared[0].engine, clock=clock)

        yield make
        for backend in shared:
            backend.engine.dispose()


def test_sor_tables_stay_out_of_the_default_metadata() -> None:
    """The system-of-record tables have their own metadata and a ``sor_`` prefix."""
    names = set(SOR_METADATA.tables)
    assert names and all(name.startswith("sor_") for name in names)
    assert not names & set(SQLModel.metadata.tables)
