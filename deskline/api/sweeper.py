"""The recovery sweep of a serving process: messages accepted but never answered get answered.

``deskline serve`` recovers unfinished turns once at start-up, and any turn is finished when its
conversation is next touched. A conversation nobody touches again, whose process died mid-turn
while the others kept running, would wait for the next restart. The sweep closes that gap: every
``interval_s`` each serving process looks for turns accepted longer than a lease ago and still
open, and finishes those whose lease has run out (their desk died). A turn a live desk holds is
left to it, so several processes can sweep the same database side by side.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog

from deskline.errors import DesklineError
from deskline.hierarchy.desk import SupportDesk

log = structlog.get_logger("deskline.sweep")


async def sweep_once(desk: SupportDesk) -> int:
    """Finish every turn accepted more than a lease ago whose desk no longer holds it."""
    done = await desk.recover_all(accepted_before=time.time() - desk.settings.turn_lease_s, wait=False)
    if done:
        log.warning("sweep.recovered", turns=len(done), conversations=sorted({r.conversation_id for r in done}))
    return len(done)


async def sweep_forever(desk: SupportDesk, interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        try:
            await sweep_once(desk)
        except DesklineError as exc:  # a database outage: try again next time
            log.warning("sweep.failed", error=exc.message)


@asynccontextmanager
async def sweeping(desk: SupportDesk, interval_s: float) -> AsyncIterator[None]:
    """Sweep in the background while the app serves (``interval_s`` <= 0: never)."""
    task: asyncio.Task[Any] | None = None
    if interval_s > 0:
        task = asyncio.create_task(sweep_forever(desk, interval_s), name="deskline-sweep")
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
