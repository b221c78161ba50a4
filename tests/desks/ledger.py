"""The built-in desk renamed ``ledger``, owning one table of its own (``ledger_notes``), made by
its own Alembic folder (``ledger_migrations``): for the per-desk migration tests. Importable by a
child process (``tests.desks.ledger:desk``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from deskline import Desk
from deskline.agents.builtin import desk as builtin

MIGRATIONS = Path(__file__).resolve().parent / "ledger_migrations"

desk: Desk = dataclasses.replace(builtin, name="ledger", migrations=MIGRATIONS)
