"""deskline: customer support run by a strategy -> tactical -> operation hierarchy of agents.

The public API is re-exported here; everything else is reachable by its module path. A team
defines its own desk with ``Desk`` (agents, skills, entities, system of record, router,
policies, texts, workflows; remote agents with ``RemoteAgent``) and runs it with ``open_desk`` / ``memory_desk`` or ``deskline --desk``.
"""

from deskline.agents.registry import ActionLedger, ApprovalRequired, Reference, Skill, SkillCall
from deskline.agents.remote import RemoteAgent
from deskline.config import Settings
from deskline.definition import (
    Agent,
    Desk,
    DeskDefinitionError,
    Edge,
    EscalationRule,
    Node,
    Policies,
    RecordsContext,
    Texts,
    Workflow,
    asks_for_person,
    load_desk,
    load_workflows,
    validate,
)
from deskline.errors import DesklineError, SkillError
from deskline.handoffs.entities import EntityType, email_entity, id_entity, money_entity, pattern_entity
from deskline.hierarchy.desk import SupportDesk
from deskline.hierarchy.turn import TurnResult
from deskline.runtime import memory_desk, open_desk

__version__ = "0.1.0"

__all__ = [
    "ActionLedger",
    "Agent",
    "ApprovalRequired",
    "Desk",
    "DeskDefinitionError",
    "DesklineError",
    "Edge",
    "EntityType",
    "EscalationRule",
    "Node",
    "Policies",
    "RecordsContext",
    "Reference",
    "RemoteAgent",
    "Settings",
    "Skill",
    "SkillCall",
    "SkillError",
    "SupportDesk",
    "Texts",
    "TurnResult",
    "Workflow",
    "__version__",
    "asks_for_person",
    "email_entity",
    "id_entity",
    "load_desk",
    "load_workflows",
    "memory_desk",
    "money_entity",
    "open_desk",
    "pattern_entity",
    "validate",
]
