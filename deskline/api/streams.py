"""Live event streams (Server-Sent Events) for the chat window and the console.

A stream reads the conversation from the store after the last sequence number it sent, sends
what it found, then waits. It wakes early when this process appended to the conversation (the
routes call ``Notifier.notify`` after each command) or, through the event bus
(``deskline.api.bus``), when another API process appended to it; and otherwise every
``poll_interval_s`` (longer while the bus is live), so events appended by another API process or
by ``deskline`` on the command line still arrive. The
store is read in a worker thread: a slow database delays a stream, never the event loop.

Frames are ``id: <seq>``, ``event: <type>``, ``data: <json>``; a browser (or our fetch-based
reader) resumes after a drop by sending the last id back as ``Last-Event-ID``. An idle stream
sends a comment every ``heartbeat_s`` so proxies keep it open.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from fastapi import Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from deskline.eventlog.events import Recorded
from deskline.eventlog.store import EventStore

if TYPE_CHECKING:
    from deskline.api.deps import Services

SSE_MEDIA_TYPE = "text/event-stream"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
Page = TypeVar("Page", bound=BaseModel)


@dataclass(slots=True)
class _Waiters:
    event: asyncio.Event = field(default_factory=asyncio.Event)
    count: int = 0


class Notifier:
    """Wakes this process's streams on one conversation; used on the event loop's thread only."""

    def __init__(self) -> None:
        self._by_conversation: dict[str, _Waiters] = {}
        # Set by the event bus (deskline.api.bus) while a cross-process channel is live: streams
        # then poll the store only this often, as a safety net.
        self.channel_poll_s: float | None = None

    def notify(self, conversation_id: str) -> None:
        waiters = self._by_conversation.get(conversation_id)
        if waiters is not None:
            waiters.event.set()
            waiters.event = asyncio.Event()

    def wake_all(self) -> None:
        for conversation_id in list(self._by_conversation):
            self.notify(conversation_id)

    def poll_s(self, poll_interval_s: float) -> float:
        """How long a stream waits between reads when nothing wakes it."""
        return poll_interval_s if self.channel_poll_s is None else max(poll_interval_s, self.channel_poll_s)

    def subscribe(self, conversation_id: str) -> _Waiters:
        waiters = self._by_conversation.setdefault(conversation_id, _Waiters())
        waiters.count += 1
        return waiters

    def unsubscribe(self, conversation_id: str) -> None:
        waiters = self._by_conversation.get(conversation_id)
        if waiters is not None:
            waiters.count -= 1
            if waiters.count <= 0:
                del self._by_conversation[conversation_id]

    def __len__(self) -> int:
        return sum(w.count for w in self._by_conversation.values())


def frame(seq: int, kind: str, data: BaseModel) -> str:
    return f"id: {seq}\nevent: {kind}\ndata: {data.model_dump_json()}\n\n"


async def event_stream(
    store: EventStore,
    notifier: Notifier,
    conversation_id: str,
    after: int,
    view: Callable[[Recorded], BaseModel | None],
    *,
    poll_interval_s: float,
    heartbeat_s: float,
) -> AsyncIterator[str]:
    """SSE frames of the conversation's events after ``after``, until the client leaves."""
    last = after
    quiet_since = time.monotonic()
    waiters = notifier.subscribe(conversation_id)
    try:
        yield f"retry: 1000\n: events of {json.dumps(conversation_id)} after {after}\n\n"
        while True:
            wake = waiters.event  # taken before reading, so an append during the read is not missed
            records = await run_in_threadpool(store.load, conversation_id, last)
            for r in records:
                last = r.seq
                shown = view(r)
                if shown is not None:
                    yield frame(r.seq, r.event.type, shown)
                    quiet_since = time.monotonic()
            if time.monotonic() - quiet_since >= heartbeat_s:
                yield ": keep-alive\n\n"
                quiet_since = time.monotonic()
            if not records:
                with contextlib.suppress(TimeoutError):
                    # the poll, or the next heartbeat if that comes first
                    until_heartbeat = heartbeat_s - (time.monotonic() - quiet_since)
                    timeout = min(notifier.poll_s(poll_interval_s), max(until_heartbeat, 0.01))
                    await asyncio.wait_for(wake.wait(), timeout=timeout)
    finally:
        notifier.unsubscribe(conversation_id)


async def events_response(
    svc: Services,
    request: Request,
    cid: str,
    after: int,
    last_event_id: int | None,
    view: Callable[[Recorded], BaseModel | None],
    page: Callable[..., Page],
) -> Page | StreamingResponse:
    """A JSON page, or a live stream, of ``view(event)`` for the events after ``after``."""
    start = last_event_id if last_event_id is not None else after
    if SSE_MEDIA_TYPE in request.headers.get("accept", ""):
        stream = event_stream(
            svc.desk.store,
            svc.notifier,
            cid,
            start,
            view,
            poll_interval_s=svc.web.poll_interval_s,
            heartbeat_s=svc.web.heartbeat_s,
        )
        return StreamingResponse(stream, media_type=SSE_MEDIA_TYPE, headers=SSE_HEADERS)
    records = await run_in_threadpool(svc.desk.store.load, cid, start)
    shown = [v for r in records if (v := view(r)) is not None]
    return page(conversation_id=cid, events=shown, last_seq=records[-1].seq if records else start)
