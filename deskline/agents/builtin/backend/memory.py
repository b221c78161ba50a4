"""The system of record in process memory: the default for unit tests and benchmarks.

Dicts of frozen records behind one lock, so an action's check, change and ledger entry happen
as one step even when the operation layer runs skills on several threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from deskline.agents.builtin.backend import rules
from deskline.agents.builtin.backend.port import ActionRejected
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


class MemoryBackend:
    """A seeded, in-memory ``Backend``; each instance has its own copy of the data."""

    def __init__(self, seed: Seed = DEMO_SEED, *, clock: Clock = demo_clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._customers: dict[str, Customer] = {}
        self._invoices: dict[str, Invoice] = {}
        self._charges: dict[str, Charge] = {}
        self._payments: dict[str, Payment] = {}
        self._incidents: dict[str, Incident] = {}
        self._ledger: dict[str, LedgerEntry] = {}
        self.seed(seed)

    def seed(self, seed: Seed = DEMO_SEED) -> None:
        """Add the seed records that are missing; records already present are left as they are."""
        with self._lock:
            for customer in seed.customers:
                self._customers.setdefault(customer.id, customer)
            for invoice in seed.invoices:
                self._invoices.setdefault(invoice.id, invoice)
            for charge in seed.charges:
                self._charges.setdefault(charge.id, charge)
            for payment in seed.payments:
                self._payments.setdefault(payment.id, payment)
            for incident in seed.incidents:
                self._incidents.setdefault(incident.id, incident)

    # -- reads ------------------------------------------------------------------------------

    def customer(self, customer_id: str) -> Customer | None:
        return self._customers.get(customer_id)

    def invoices(self, customer_id: str) -> tuple[Invoice, ...]:
        mine = [i for i in self._invoices.values() if i.customer_id == customer_id]
        return tuple(sorted(mine, key=lambda i: (i.issued, i.id), reverse=True))

    def invoice(self, customer_id: str, invoice_id: str) -> Invoice | None:
        found = self._invoices.get(invoice_id)
        return found if found is not None and found.customer_id == customer_id else None

    def charges(self, customer_id: str, invoice_id: str) -> tuple[Charge, ...]:
        mine = [
            c
            for c in self._charges.values()
            if c.customer_id == customer_id and c.invoice_id == invoice_id
        ]
        return tuple(sorted(mine, key=lambda c: (c.charged_on, c.id)))

    def charge(self, customer_id: str, charge_id: str) -> Charge | None:
        found = self._charges.get(charge_id)
        return found if found is not None and found.customer_id == customer_id else None

    def payments(self, customer_id: str) -> tuple[Payment, ...]:
        mine = [p for p in self._payments.values() if p.customer_id == customer_id]
        return tuple(sorted(mine, key=lambda p: (p.created, p.id), reverse=True))

    def payment(self, customer_id: str, payment_id: str) -> Payment | None:
        found = self._payments.get(payment_id)
        return found if found is not None and found.customer_id == customer_id else None

    def incidents(
        self, component: Component | None = None, *, ongoing: bool | None = None
    ) -> tuple[Incident, ...]:
        found = [
            i
            for i in self._incidents.values()
            if (component is None or i.component == component)
            and (ongoing is None or (i.status == "ongoing") == ongoing)
        ]
        return tuple(sorted(found, key=lambda i: (i.started, i.id), reverse=True))

    def recorded(self, key: str) -> LedgerEntry | None:
        return self._ledger.get(key)

    # -- actions ----------------------------------------------------------------------------

    def refund_charge(self, key: str, customer_id: str, charge_id: str) -> Facts:
        def apply() -> Facts:
            charge = self.charge(customer_id, charge_id)
            if charge is None:
                raise _missing("refund_charge", charge_id)
            done, facts = rules.refund(charge, self._clock())
            self._charges[done.id] = done
            return facts

        return self._perform(key, "refund_charge", customer_id, charge_id, apply)

    def send_password_reset(self, key: str, customer_id: str) -> Facts:
        def apply() -> Facts:
            customer = self._owned_customer("send_password_reset", customer_id)
            sent, facts = rules.send_password_reset(customer, self._clock())
            self._customers[sent.id] = sent
            return facts

        return self._perform(key, "send_password_reset", customer_id, customer_id, apply)

    def unlock_account(self, key: str, customer_id: str) -> Facts:
        def apply() -> Facts:
            customer = self._owned_customer("unlock_account", customer_id)
            unlocked, facts = rules.unlock(customer, self._clock())
            self._customers[unlocked.id] = unlocked
            return facts

        return self._perform(key, "unlock_account", customer_id, customer_id, apply)

    def retry_payment(self, key: str, customer_id: str, payment_id: str) -> Facts:
        def apply() -> Facts:
            payment = self.payment(customer_id, payment_id)
            if payment is None:
                raise _missing("retry_payment", payment_id)
            again, facts = rules.retry(payment, self._clock())
            self._payments[again.id] = again
            return facts

        return self._perform(key, "retry_payment", customer_id, payment_id, apply)

    def relock_account(self, key: str, customer_id: str) -> Facts:
        def apply() -> Facts:
            customer = self._owned_customer("relock_account", customer_id)
            locked, facts = rules.relock(customer, self._clock())
            self._customers[locked.id] = locked
            return facts

        return self._perform(key, "relock_account", customer_id, customer_id, apply)

    def cancel_payment_retry(self, key: str, customer_id: str, payment_id: str) -> Facts:
        def apply() -> Facts:
            payment = self.payment(customer_id, payment_id)
            if payment is None:
                raise _missing("cancel_payment_retry", payment_id)
            back, facts = rules.cancel_retry(payment, self._clock())
            self._payments[back.id] = back
            return facts

        return self._perform(key, "cancel_payment_retry", customer_id, payment_id, apply)

    def _owned_customer(self, action: ActionName, customer_id: str) -> Customer:
        customer = self._customers.get(customer_id)
        if customer is None:
            raise _missing(action, customer_id)
        return customer

    def _perform(
        self,
        key: str,
        action: ActionName,
        customer_id: str,
        target: str,
        apply: Callable[[], Facts],
    ) -> Facts:
        with self._lock:
            done = self._ledger.get(key)
            if done is not None:
                return rules.replay(key, done, action, customer_id, target)
            facts = dict(apply())
            self._ledger[key] = LedgerEntry(key, action, customer_id, target, facts, self._clock())
            return dict(facts)


def _missing(action: ActionName, target: str) -> ActionRejected:
    return ActionRejected(f"{target} not found", action=action, target=target)
