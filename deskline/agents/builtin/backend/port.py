"""The port every system of record implements: what the agents' skills may read and change.

Skills depend on this protocol only; the desk injects an implementation (``MemoryBackend`` for
tests and benchmarks, ``SqlBackend`` beside the event log). Reads are scoped to one customer:
another customer's invoice is indistinguishable from one that does not exist.

Every change is an *action* taking an idempotency key. The first call with a key applies the
change and records ``(key, action, customer, target, facts)`` in the action ledger atomically;
any later call with that key returns the recorded facts and changes nothing. One key names one
action on one target: reusing it for anything else raises ``IdempotencyConflict``.

Errors (all ``SkillError``, so inside the ``DesklineError`` tree)::

    SkillError
    ├── RecordChanged
    │   └── ActionRejected   the record is not in a state the action applies to (re-read, not retried)
    ├── IdempotencyConflict  a key already recorded a different action or target (not transient)
    └── BackendUnavailable   the system of record cannot be reached (transient: retry the step)
"""

from __future__ import annotations

from typing import Protocol

from deskline.agents.builtin.backend.records import (
    ActionName,
    Charge,
    Component,
    Customer,
    Facts,
    Incident,
    Invoice,
    LedgerEntry,
    Payment,
)
from deskline.errors import RecordChanged, SkillError


class ActionRejected(RecordChanged):
    """The action does not apply to the record as it is now (e.g. the charge is refunded): the
    skill read it in another state, so it changed in between; the skill runs again on it."""

    code = "action_rejected"

    def __init__(self, message: str, *, action: ActionName, target: str) -> None:
        super().__init__(message, transient=False, action=action, target=target)
        self.action = action
        self.target = target


class IdempotencyConflict(SkillError):
    """An idempotency key was reused for a different action, customer or target."""

    code = "idempotency_conflict"

    def __init__(self, key: str, recorded: LedgerEntry, action: ActionName, target: str) -> None:
        super().__init__(
            f"idempotency key {key!r} already recorded {recorded.action} on {recorded.target}",
            transient=False,
            key=key,
            recorded_action=recorded.action,
            action=action,
            target=target,
        )


class BackendUnavailable(SkillError):
    """The system of record did not answer; the step may be retried with the same key."""

    code = "backend_unavailable"

    def __init__(self, message: str, **fields: object) -> None:
        super().__init__(message, transient=True, **fields)


class Backend(Protocol):
    """A system of record. Reads never raise for unknown ids: they return ``None`` or ``()``."""

    # -- reads ------------------------------------------------------------------------------

    def customer(self, customer_id: str) -> Customer | None: ...

    def invoices(self, customer_id: str) -> tuple[Invoice, ...]:
        """The customer's invoices, newest first."""
        ...

    def invoice(self, customer_id: str, invoice_id: str) -> Invoice | None: ...

    def charges(self, customer_id: str, invoice_id: str) -> tuple[Charge, ...]:
        """The charges against one of the customer's invoices, oldest first."""
        ...

    def charge(self, customer_id: str, charge_id: str) -> Charge | None: ...

    def payments(self, customer_id: str) -> tuple[Payment, ...]:
        """The customer's payments, newest first."""
        ...

    def payment(self, customer_id: str, payment_id: str) -> Payment | None: ...

    def incidents(
        self, component: Component | None = None, *, ongoing: bool | None = None
    ) -> tuple[Incident, ...]:
        """Service incidents (not customer-scoped), most recently started first."""
        ...

    def recorded(self, key: str) -> LedgerEntry | None:
        """The action already done under ``key``, if any."""
        ...

    # -- actions: exactly once per key ------------------------------------------------------

    def refund_charge(self, key: str, customer_id: str, charge_id: str) -> Facts:
        """Refund a captured charge. Facts: charge_id, invoice_id, amount, refund_id,
        refunded_on, expected_by."""
        ...

    def send_password_reset(self, key: str, customer_id: str) -> Facts:
        """Send a reset link to the email on file. Facts: masked_email, link_expires."""
        ...

    def unlock_account(self, key: str, customer_id: str) -> Facts:
        """Unlock a locked account. Facts: account_status, unlocked_at."""
        ...

    def retry_payment(self, key: str, customer_id: str, payment_id: str) -> Facts:
        """Resubmit a failed payment. Facts: payment_id, payee, amount, status,
        estimated_arrival, retried_on."""
        ...

    # -- compensations: the actions that undo an action when its plan fails -----------------
    # (a refund has none: charging the customer again is not an undo; a sent reset link cannot
    # be unsent.)

    def relock_account(self, key: str, customer_id: str) -> Facts:
        """Lock again an account that ``unlock_account`` unlocked (rejected unless it is active).
        Facts: account_status, relocked_at."""
        ...

    def cancel_payment_retry(self, key: str, customer_id: str, payment_id: str) -> Facts:
        """Cancel a scheduled retry of a payment: it is failed again (rejected unless it is pending
        after a retry). Facts: payment_id, status, retry_cancelled_on."""
        ...
