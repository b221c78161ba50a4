"""The demo systems of record the agents' skills read and change, behind one port.

``MemoryBackend`` for tests and benchmarks, ``SqlBackend`` in the desk's database; both start
from ``DEMO_SEED`` and both pass the same contract test.
"""

from deskline.agents.builtin.backend.memory import MemoryBackend
from deskline.agents.builtin.backend.port import (
    ActionRejected,
    Backend,
    BackendUnavailable,
    IdempotencyConflict,
)
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
    mask_email,
    show_date,
    show_money,
    show_time,
)
from deskline.agents.builtin.backend.seed import (
    DEMO_CUSTOMER_ID,
    DEMO_NOW,
    DEMO_SEED,
    OTHER_CUSTOMER_ID,
    Seed,
    demo_clock,
)
from deskline.agents.builtin.backend.sql import SqlBackend

__all__ = [
    "DEMO_CUSTOMER_ID",
    "DEMO_NOW",
    "DEMO_SEED",
    "OTHER_CUSTOMER_ID",
    "ActionName",
    "ActionRejected",
    "Backend",
    "BackendUnavailable",
    "Charge",
    "Clock",
    "Component",
    "Customer",
    "Facts",
    "IdempotencyConflict",
    "Incident",
    "Invoice",
    "LedgerEntry",
    "MemoryBackend",
    "Payment",
    "Seed",
    "SqlBackend",
    "demo_clock",
    "mask_email",
    "show_date",
    "show_money",
    "show_time",
]
