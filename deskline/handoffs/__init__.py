"""Pure payload types shared by every layer: the bottom of the import graph."""

from deskline.handoffs.payload import (
    AGENTS,
    DEPARTMENTS,
    AgentName,
    AgentResult,
    Case,
    Constraints,
    Department,
    Entities,
    EntityName,
    Handoff,
    HistoryItem,
    Mode,
    Money,
    ResultStatus,
    format_money,
)

__all__ = [
    "AGENTS",
    "DEPARTMENTS",
    "AgentName",
    "AgentResult",
    "Case",
    "Constraints",
    "Department",
    "Entities",
    "EntityName",
    "Handoff",
    "HistoryItem",
    "Mode",
    "Money",
    "ResultStatus",
    "format_money",
]
