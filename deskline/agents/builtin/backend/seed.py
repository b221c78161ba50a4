"""The demo data both backends start from: two customers, their bills, payments and incidents.

Fixed dates only, and a fixed clock (``demo_clock``) by default, so every reply the demo gives
is the same on every run and can be recorded, replayed and compared in the eval suite.

``C-1001`` (Alex Morgan) carries the stories the desk must handle: invoice ``INV-1001`` charged
twice (``CH-2001``/``CH-2002``), a $750.00 invoice ``INV-1003`` charged twice (its refund is
above the default approval limit), a pending $1,200.00 transfer to the landlord (``PAY-3001``),
a failed payment to retry (``PAY-3002``), a completed one, and an account locked after failed
sign-ins. ``C-1002`` exists so tests can check one customer never sees another's records.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

from deskline.agents.builtin.backend.records import Charge, Customer, Incident, Invoice, Payment

DEMO_NOW = datetime(2025, 3, 14, 9, 0, tzinfo=UTC)
DEMO_CUSTOMER_ID = "C-1001"
OTHER_CUSTOMER_ID = "C-1002"


def demo_clock() -> datetime:
    """The demo's "now": fixed, so replies are deterministic."""
    return DEMO_NOW


def _usd(text: str) -> Decimal:
    return Decimal(text)


@dataclass(frozen=True, slots=True)
class Seed:
    customers: tuple[Customer, ...]
    invoices: tuple[Invoice, ...]
    charges: tuple[Charge, ...]
    payments: tuple[Payment, ...]
    incidents: tuple[Incident, ...]


DEMO_SEED = Seed(
    customers=(
        Customer(
            id="C-1001",
            name="Alex Morgan",
            email="alex.morgan@example.com",
            phone="+1 555 0100",
            plan="Pro",
            status="locked",
            last_login=datetime(2025, 3, 10, 8, 42, tzinfo=UTC),
            failed_logins=5,
        ),
        Customer(
            id="C-1002",
            name="Sam Rivera",
            email="sam.rivera@example.org",
            phone="+1 555 0199",
            plan="Basic",
            status="active",
            last_login=datetime(2025, 3, 13, 18, 5, tzinfo=UTC),
        ),
    ),
    invoices=(
        Invoice(
            "INV-1001", "C-1001", _usd("49.00"), "USD", date(2025, 3, 1), date(2025, 3, 15), "paid"
        ),
        Invoice(
            "INV-1002", "C-1001", _usd("49.00"), "USD", date(2025, 2, 1), date(2025, 2, 15), "paid"
        ),
        Invoice(
            "INV-1003", "C-1001", _usd("750.00"), "USD", date(2025, 3, 5), date(2025, 3, 19), "paid"
        ),
        Invoice(
            "INV-1004",
            "C-1001",
            _usd("120.00"),
            "USD",
            date(2025, 3, 12),
            date(2025, 4, 11),
            "open",
        ),
        Invoice(
            "INV-1101", "C-1002", _usd("19.00"), "USD", date(2025, 3, 3), date(2025, 3, 17), "paid"
        ),
    ),
    charges=(
        Charge("CH-2001", "C-1001", "INV-1001", _usd("49.00"), "USD", date(2025, 3, 1)),
        Charge("CH-2002", "C-1001", "INV-1001", _usd("49.00"), "USD", date(2025, 3, 1)),
        Charge("CH-2003", "C-1001", "INV-1002", _usd("49.00"), "USD", date(2025, 2, 1)),
        Charge("CH-2004", "C-1001", "INV-1003", _usd("750.00"), "USD", date(2025, 3, 5)),
        Charge("CH-2005", "C-1001", "INV-1003", _usd("750.00"), "USD", date(2025, 3, 5)),
        Charge("CH-2101", "C-1002", "INV-1101", _usd("19.00"), "USD", date(2025, 3, 3)),
    ),
    payments=(
        Payment(
            "PAY-3001",
            "C-1001",
            "Maple Court Apartments (landlord)",
            _usd("1200.00"),
            "USD",
            "pending",
            date(2025, 3, 12),
            estimated_arrival=date(2025, 3, 17),
        ),
        Payment(
            "PAY-3002",
            "C-1001",
            "Brightwater Utilities",
            _usd("86.40"),
            "USD",
            "failed",
            date(2025, 3, 11),
            failure_reason="the receiving bank declined it",
        ),
        Payment(
            "PAY-3003",
            "C-1001",
            "City Water Services",
            _usd("42.15"),
            "USD",
            "completed",
            date(2025, 3, 2),
            estimated_arrival=date(2025, 3, 4),
        ),
        Payment(
            "PAY-3101",
            "C-1002",
            "Northside Gym",
            _usd("35.00"),
            "USD",
            "failed",
            date(2025, 3, 9),
            failure_reason="the account details were rejected",
        ),
    ),
    incidents=(
        Incident(
            "INC-501",
            "login",
            "ongoing",
            datetime(2025, 3, 14, 7, 30, tzinfo=UTC),
            "Sign-in codes sent by text message are arriving late.",
        ),
        Incident(
            "INC-498",
            "payments",
            "resolved",
            datetime(2025, 3, 10, 13, 5, tzinfo=UTC),
            "Some card payments were declined in error.",
            resolved=datetime(2025, 3, 10, 13, 45, tzinfo=UTC),
        ),
    ),
)
