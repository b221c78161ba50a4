"""The desk's turns reach the store only through its awaitable face, never the blocking one."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from deskline.config import Settings
from deskline.eventlog.events import Event, Recorded
from deskline.eventlog.nonblocking import (
    AsyncEventStore,
    ExecutorEventStore,
    InlineEventStore,
    NotifyingEventStore,
    nonblocking,
)
from deskline.eventlog.pg_async import PgEventStore
from deskline.eventlog.store import MemoryEventStore
from deskline.runtime import memory_desk, open_desk


class Tripwire:
    """A synchronous store that fails any call: what a turn must never use."""

    def __init__(self, inner: MemoryEventStore) -> None:
        self.inner = inner
        self.face = InlineEventStore(inner)

    def nonblocking(self) -> AsyncEventStore:
        return self.face

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"a turn called the blocking store's {name}()")


def test_turns_and_recovery_use_only_the_awaitable_store() -> None:
    """handle, recover and recover_all run every store call through ``nonblocking(store)``."""
    desk = memory_desk(Settings())
    inner = desk.store
    assert isinstance(inner, MemoryEventStore)
    desk.store = Tripwire(inner)  # type: ignore[assignment]

    async def turns() -> None:
        first = await desk.handle("c1", "I forgot my password and can't log in")
        second = await desk.handle("c1", "is the service down?", client_message_id="m-2")
        again = await desk.handle("c1", "is the service down?", client_message_id="m-2")
        assert first.reply and second.reply and again.duplicate
        assert await desk.recover_all() == []

    asyncio.run(turns())
    assert [r.turn for r in inner.load("c1") if r.event.type == "reply_sent"] == [1, 2]


def test_a_sql_store_hands_out_a_nonblocking_face_per_database(database_url: str) -> None:
    """PostgreSQL turns go through psycopg's asyncio connections (measured: lower latency at a set
    load than the bounded executor), SQLite calls run in place (microseconds, less than a
    thread hop); a store without a face of its own gets the bounded executor."""
    desk = open_desk(Settings(database_url=database_url))
    face = desk.aio
    expected = InlineEventStore if database_url.startswith("sqlite") else PgEventStore
    assert isinstance(face, expected)
    assert desk.aio is face  # one per store

    class Plain:
        def load(self, conversation_id: str, after: int = 0) -> list[Recorded]:
            return []

    assert isinstance(nonblocking(Plain()), ExecutorEventStore)  # type: ignore[arg-type]

    async def turn() -> None:
        result = await desk.handle(None, "I was charged twice for invoice INV-1001")
        assert result.reply
        assert (await face.load(result.conversation_id))[-1].event.type == "reply_sent"
        if isinstance(face, PgEventStore):
            await face.dispose()

    asyncio.run(turn())


def test_the_bounded_executor_can_be_chosen(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """DESKLINE_DB_EXECUTOR=1 puts PostgreSQL turns on the synchronous driver in worker threads
    instead (SQLite still runs its calls in place)."""
    monkeypatch.setenv("DESKLINE_DB_EXECUTOR", "1")
    desk = open_desk(Settings(database_url=database_url))
    face = desk.aio
    if database_url.startswith("sqlite"):
        assert isinstance(face, InlineEventStore)
        return
    assert isinstance(face, ExecutorEventStore)

    async def turn() -> None:
        result = await desk.handle(None, "I was charged twice for invoice INV-1001")
        assert result.reply

    asyncio.run(turn())
    face.close()


def test_a_wrapping_store_publishes_the_awaitable_appends() -> None:
    """NotifyingEventStore tells its listener the conversation and last seq after each append."""
    heard: list[tuple[str, int]] = []
    store = NotifyingEventStore(InlineEventStore(MemoryEventStore()), lambda cid, seq: heard.append((cid, seq)))

    async def write(events: Sequence[Event]) -> None:
        await store.append("c1", 0, 1, events)

    from deskline.eventlog.events import CustomerMessaged

    asyncio.run(write([CustomerMessaged(text="a"), CustomerMessaged(text="b")]))
    assert heard == [("c1", 2)]


def test_the_api_store_wrapper_keeps_publishing_through_the_desk() -> None:
    """The API's PublishingStore hands the desk a face that still publishes every append: the
    accepted message and the turn's decisions."""
    from deskline.api.bus import PublishingStore

    published: list[tuple[str, int]] = []

    class Bus:
        def publish(self, conversation_id: str, seq: int) -> None:
            published.append((conversation_id, seq))

    desk = memory_desk(Settings())
    inner = desk.store
    desk.store = PublishingStore(inner, Bus())  # type: ignore[arg-type]
    asyncio.run(desk.handle("c1", "what is my balance"))
    assert len(published) == 2
    assert published[-1] == ("c1", inner.load("c1")[-1].seq)
