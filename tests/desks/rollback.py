"""The built-in desk with a procedure that fails after its actions: for the compensation tests.

``unlock_and_sync`` ("please unlock my account and sync my devices"): unlock the account and send
a reset link together, then sync the customer's devices, a step that always fails for good. The
unlock has a compensation (lock the account again); the reset link is irreversible. Importable by
a child process (``tests.desks.rollback:desk``), which the kill -9 test needs.
"""

from __future__ import annotations

import dataclasses

from pydantic import BaseModel

from deskline import Desk, Node, Skill, SkillCall, SkillError, Workflow
from deskline.agents.builtin import desk as builtin
from deskline.handoffs import AgentResult

SYNC_ERROR = "the device registry refused the sync"


class NoParams(BaseModel):
    pass


async def sync_devices(call: SkillCall) -> AgentResult:
    raise SkillError(SYNC_ERROR, transient=False)


SYNC = Skill(name="tech.sync_devices", agent="tech", description="Sync the customer's devices after an account change.",
             params=NoParams, run=sync_devices, templates={"default": "Your devices are in sync."})

UNLOCK_AND_SYNC = Workflow(
    name="unlock_and_sync",
    description="Unlock the account and send a reset link, then sync the customer's devices.",
    keywords=("sync my devices",),
    nodes=(
        Node("unlock", "tech.unlock_account"),
        Node("reset", "tech.reset_password"),
        Node("sync", "tech.sync_devices", after=("unlock", "reset")),
    ),
)


def with_sync(sync: Skill = SYNC, **changes: object) -> Desk:
    """The desk with ``sync`` as its failing step (tests swap in their own)."""
    return dataclasses.replace(builtin, skills=(*builtin.skills, sync), workflows=(UNLOCK_AND_SYNC,), **changes)  # type: ignore[arg-type]


desk = with_sync()
