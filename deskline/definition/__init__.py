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
from deskline.definition.workflow import Edge, Node, Workflow, WorkflowFileError, load_workflows

__all__ = [
    "BUILTIN_DESK",
    "Agent",
    "Desk",
    "DeskDefinitionError",
    "Edge",
    "EscalationRule",
    "Node",
    "Policies",
    "RecordsContext",
    "Texts",
    "Workflow",
    "WorkflowFileError",
    "asks_for_person",
    "desk_spec",
    "load_desk",
    "load_workflows",
    "validate",
]
