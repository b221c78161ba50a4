"""Every table the migrations own: the framework's (the event log, open turns, conversation
tokens, agent keys) and the shipped built-in desk's system of record (``sor_*``).

The framework layers never import the built-in desk; this package, which migrates what deskline
ships, is where the two meet.
"""

from __future__ import annotations

from sqlalchemy import Table


def owned_tables() -> list[Table]:
    from deskline.agents.builtin.backend.tables import SOR_METADATA
    from deskline.api.auth import AGENTS, TOKENS
    from deskline.eventlog.store import TABLES

    return [*TABLES, TOKENS, AGENTS, *SOR_METADATA.sorted_tables]
