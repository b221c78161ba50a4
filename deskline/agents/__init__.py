"""The skill API: what a desk's agents are made of (``Skill``, ``SkillCall``, ``Registry``), and
remote agents (``RemoteAgent``: an agent served over HTTP, ``deskline.agents.server``).

The built-in desk's agents live in ``deskline.agents.builtin``, which this package never
imports: it is one desk built on this API, like any other.
"""

from deskline.agents.registry import (
    ActionLedger,
    ApprovalRequired,
    Facts,
    Reference,
    Registry,
    Skill,
    SkillCall,
    SkillFn,
)
from deskline.agents.remote import RemoteAgent, RemoteSkill, remote_only

__all__ = [
    "ActionLedger",
    "ApprovalRequired",
    "Facts",
    "Reference",
    "Registry",
    "RemoteAgent",
    "RemoteSkill",
    "Skill",
    "SkillCall",
    "SkillFn",
    "remote_only",
]
