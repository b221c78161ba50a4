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

Reads are paged: a JSON answer holds at most ``limit`` events and says where to continue
(``next_after`` and a ``Link: <...>; rel="next"`` header), and a stream reads ``PAGE_DEFAULT``
events at a time, so neither holds a long conversation in memory at once.

A stream holds a slot of the open-stream quotas (``deskline.api.quotas``) from its start to its
end, and every ``stream_recheck_s`` it renews the slot and checks its credential again: a
conversation token that no longer opens the conversation, or an agent key that was removed, ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlencode

import structlog
from fastapi import Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from deskline.api.quotas import StreamSlot
from deskline.api.schemas import PAGE_DEFAULT
from deskline.eventlog.events import Recorded
from deskline.eventlog.store import EVENTS, EventStore, SqlEventStore, parse_row

if TYPE_CHECKING:
    from deskline.api.deps import Services

log = structlog.get_logger("deskline.api")

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


def load_page(store: EventStore, conversation_id: str, after: int, limit: int) -> tuple[list[Recorded], bool]:
    """Up to ``limit`` events after ``after``, and whether more follow.

    A SQL store is read with ``LIMIT`` (the event store's own ``load`` reads to the end); other
    stores hold the events in memory already and are sliced.
    """
    from deskline.api.bus import PublishingStore  # the bus imports this module

    inner = store.inner if isinstance(store, PublishingStore) else store
    if isinstance(inner, SqlEventStore):
        query = (select(EVENTS.c.seq, EVENTS.c.turn, EVENTS.c.data, EVENTS.c.created_at)
                 .where(EVENTS.c.conversation_id == conversation_id, EVENTS.c.seq > after)
                 .order_by(EVENTS.c.seq).limit(limit + 1))
        with inner.engine.connect() as conn:
            rows = conn.execute(query).all()
        records = [parse_row(conversation_id, seq, turn, data, at) for seq, turn, data, at in rows]
    else:
        records = inner.load(conversation_id, after)
    return records[:limit], len(records) > limit


async def event_stream(
    store: EventStore,
    notifier: Notifier,
    conversation_id: str,
    after: int,
    view: Callable[[Recorded], BaseModel | None],
    *,
    poll_interval_s: float,
    heartbeat_s: float,
    page_size: int = PAGE_DEFAULT,
    recheck_s: float | None = None,
    still_valid: Callable[[], bool] | None = None,
    slot: StreamSlot | None = None,
) -> AsyncIterator[str]:
    """SSE frames of the conversation's events after ``after``, until the client leaves or (checked
    every ``recheck_s``) ``still_valid()`` says the credential no longer holds."""
    last = after
    quiet_since = time.monotonic()
    checked = time.monotonic()
    waiters = notifier.subscribe(conversation_id)

    def recheck() -> bool:
        if slot is not None:
            slot.refresh()
        return still_valid is None or still_valid()

    try:
        yield f"retry: 1000\n: events of {json.dumps(conversation_id)} after {after}\n\n"
        while True:
            if recheck_s is not None and time.monotonic() - checked >= recheck_s:
                checked = time.monotonic()
                if not await run_in_threadpool(recheck):
                    log.info("api.stream_closed", conversation_id=conversation_id, reason="credential_revoked")
                    yield ": closed: the token or key is no longer valid\n\n"
                    return
            wake = waiters.event  # taken before reading, so an append during the read is not missed
            records, _more = await run_in_threadpool(load_page, store, conversation_id, last, page_size)
            for r in records:
                last = r.seq
                shown = view(r)
                if shown is not None:
                    yield frame(r.seq, r.event.type, shown)
                    quiet_since = time.monotonic()
            if time.monotonic() - quiet_since >= heartbeat_s:
                yield ": keep-alive\n\n"
                quiet_since = time.monotonic()
            if not records:  # else read on at once: the next page, or what came in meanwhile
                with contextlib.suppress(TimeoutError):
                    # the poll, the next heartbeat or the next re-check, whichever comes first
                    until_heartbeat = heartbeat_s - (time.monotonic() - quiet_since)
                    timeout = min(notifier.poll_s(poll_interval_s), max(until_heartbeat, 0.01))
                    if recheck_s is not None:
                        timeout = min(timeout, max(recheck_s - (time.monotonic() - checked), 0.01))
                    await asyncio.wait_for(wake.wait(), timeout=timeout)
    finally:
        notifier.unsubscribe(conversation_id)


class SlotStreamingResponse(StreamingResponse):
    """A stream that gives its quota slot back however it ends (done, revoked, client gone)."""

    def __init__(self, content: AsyncIterator[str], slot: StreamSlot | None, **kwargs: object) -> None:
        super().__init__(content, **kwargs)  # type: ignore[arg-type]
        self.slot = slot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            if self.slot is not None:
                # Not awaited: the task may be being cancelled, and a release to Redis is a round trip.
                asyncio.get_running_loop().run_in_executor(None, self.slot.release)


async def events_response(
    svc: Services,
    request: Request,
    response: Response,
    cid: str,
    after: int,
    last_event_id: int | None,
    view: Callable[[Recorded], BaseModel | None],
    page: Callable[..., Page],
    *,
    limit: int = PAGE_DEFAULT,
    still_valid: Callable[[], bool] | None = None,
    stream_claims: Sequence[tuple[str, str, int]] = (),
) -> Page | StreamingResponse:
    """A JSON page, or a live stream, of ``view(event)`` for the events after ``after``.

    A page reads at most ``limit`` events; when more follow it gives ``next_after`` and a ``Link``
    header to the next page. A stream first takes a slot in each of ``stream_claims`` (429 when one
    is full) and ends when ``still_valid`` turns false.
    """
    start = last_event_id if last_event_id is not None else after
    if SSE_MEDIA_TYPE in request.headers.get("accept", ""):
        slot = None
        if svc.quotas is not None and stream_claims:
            slot = await run_in_threadpool(svc.quotas.open_stream, stream_claims)
        stream = event_stream(
            svc.desk.store,
            svc.notifier,
            cid,
            start,
            view,
            poll_interval_s=svc.web.poll_interval_s,
            heartbeat_s=svc.web.heartbeat_s,
            recheck_s=svc.web.stream_recheck_s,
            still_valid=still_valid,
            slot=slot,
        )
        return SlotStreamingResponse(stream, slot, media_type=SSE_MEDIA_TYPE, headers=SSE_HEADERS)
    records, more = await run_in_threadpool(load_page, svc.desk.store, cid, start, limit)
    shown = [v for r in records if (v := view(r)) is not None]
    last = records[-1].seq if records else start
    if more:
        query = urlencode({"after": last, "limit": limit})
        response.headers["Link"] = f'<{request.url.path}?{query}>; rel="next"'
    return page(conversation_id=cid, events=shown, last_seq=last, next_after=last if more else None)
