"""The desk definition: the public object a team writes to make deskline its own desk."""

from deskline.definition.loading import BUILTIN_DESK, desk_spec, load_desk
from deskline.definition.model import (
    Agent,
    Desk,
    EscalationRule,
    Policies,
    RecordsContext,
    Texts,
    asks_for_person,
)
from deskline.definition.validate import DeskDefinitionError, validate

__all__ = [
    "BUILTIN_DESK",
    "Agent",
    "Desk",
    "DeskDefinitionError",
    "EscalationRule",
    "Policies",
    "RecordsContext",
    "Texts",
    "asks_for_person",
    "desk_spec",
    "load_desk",
    "validate",
]
