"""The event store as the desk's turns use it: awaitable, never blocking the event loop.

``AsyncEventStore`` is ``EventStore`` with every method a coroutine, and the same contract
(tests/test_store_contract.py runs on every implementation):

- ``PgEventStore`` (``deskline.eventlog.pg_async``): psycopg 3's asyncio connections on
  PostgreSQL, one statement and one round trip per call (the desk's turns on PostgreSQL);
- ``AsyncSqlEventStore`` (``deskline.eventlog.async_sql``): SQLAlchemy's asyncio engine, psycopg 3
  for PostgreSQL and aiosqlite for a SQLite file (measured slower than either of the others);
- ``ExecutorEventStore``: any synchronous store on a bounded pool of threads, with backpressure
  (at most ``workers + queue`` calls in flight; past that a call waits ``wait_s`` for a slot,
  then ``StoreUnavailable``), so a slow database makes turns wait instead of piling up threads;
- ``InlineEventStore``: a store that never waits on I/O (``MemoryEventStore``) called in place.

``nonblocking(store)`` picks one for a synchronous store: the store's own ``nonblocking()``
when its class has one (``SqlEventStore``: ``PgEventStore``, or in place on SQLite), else the
executor. The
synchronous stores stay for the CLI, the human console's worker threads and migrations.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from deskline.errors import StoreUnavailable
from deskline.eventlog.events import Event, Recorded
from deskline.eventlog.store import EventStore

T = TypeVar("T")


class AsyncEventStore(Protocol):
    async def load(self, conversation_id: str, after: int = 0) -> list[Recorded]: ...

    async def append(
        self, conversation_id: str, expected_seq: int, turn: int, events: Sequence[Event],
        *, holder: str | None = None, ttl_s: float = 0.0,
    ) -> list[Recorded]: ...

    async def lease(self, conversation_id: str, turn: int, holder: str, ttl_s: float) -> bool: ...

    async def unfinished(self, accepted_before: float | None = None) -> list[tuple[str, int]]: ...

    async def conversation_ids(self) -> list[str]: ...

    async def idle_since(self, before: float) -> list[str]: ...

    async def remove(self, conversation_ids: Sequence[str]) -> int: ...

    async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[tuple[int, Recorded]]: ...


def nonblocking(store: EventStore) -> AsyncEventStore:
    """The awaitable face of ``store`` (looked up on its class, so a wrapper that forwards
    attributes to an inner store never hands out the inner store's face, skipping its own work)."""
    own = getattr(type(store), "nonblocking", None)
    if own is not None:
        face: AsyncEventStore = own(store)
        return face
    return ExecutorEventStore(store)


class _Delegating(ABC):
    """The async methods of ``EventStore``, each running the synchronous call through ``_call``."""

    store: EventStore

    @abstractmethod
    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """How a subclass runs one synchronous store call (in place, or on its executor)."""

    async def load(self, conversation_id: str, after: int = 0) -> list[Recorded]:
        return await self._call(self.store.load, conversation_id, after)

    async def append(
        self, conversation_id: str, expected_seq: int, turn: int, events: Sequence[Event],
        *, holder: str | None = None, ttl_s: float = 0.0,
    ) -> list[Recorded]:
        return await self._call(self.store.append, conversation_id, expected_seq, turn, events,
                                holder=holder, ttl_s=ttl_s)

    async def lease(self, conversation_id: str, turn: int, holder: str, ttl_s: float) -> bool:
        return await self._call(self.store.lease, conversation_id, turn, holder, ttl_s)

    async def unfinished(self, accepted_before: float | None = None) -> list[tuple[str, int]]:
        return await self._call(self.store.unfinished, accepted_before)

    async def conversation_ids(self) -> list[str]:
        return await self._call(self.store.conversation_ids)

    async def idle_since(self, before: float) -> list[str]:
        return await self._call(self.store.idle_since, before)

    async def remove(self, conversation_ids: Sequence[str]) -> int:
        return await self._call(self.store.remove, conversation_ids)

    async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[tuple[int, Recorded]]:
        return await self._call(self.store.read_all, after_position, limit)


class InlineEventStore(_Delegating):
    """A store whose calls never wait on I/O (process memory), called on the loop itself."""

    def __init__(self, store: EventStore) -> None:
        self.store = store

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return fn(*args, **kwargs)


class ExecutorEventStore(_Delegating):
    """A synchronous store on ``workers`` threads of its own, at most ``workers + queue`` calls
    at once; a call that finds no slot for ``wait_s`` raises ``StoreUnavailable``."""

    def __init__(self, store: EventStore, workers: int = 8, queue: int = 64, wait_s: float = 3.0) -> None:
        self.store = store
        self.workers, self.limit, self.wait_s = workers, workers + queue, wait_s
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="deskline-store")
        self._slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary())

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        slots = self._slots.get(loop)
        if slots is None:
            slots = self._slots[loop] = asyncio.Semaphore(self.limit)
        try:
            async with asyncio.timeout(self.wait_s):
                await slots.acquire()
        except TimeoutError:
            raise StoreUnavailable("every database connection is busy; try again shortly") from None
        try:
            context = contextvars.copy_context()  # the turn's log context goes along
            return await loop.run_in_executor(self._pool, functools.partial(context.run, fn, *args, **kwargs))
        finally:
            slots.release()

    def close(self) -> None:
        self._pool.shutdown(wait=False)


class NotifyingEventStore:
    """An async store that calls ``published(conversation_id, last_seq)`` after each append
    commits (the API's event bus: every writer's appends wake the conversation's streams)."""

    def __init__(self, inner: AsyncEventStore, published: Callable[[str, int], None]) -> None:
        self.inner = inner
        self.published = published

    async def append(
        self, conversation_id: str, expected_seq: int, turn: int, events: Sequence[Event],
        *, holder: str | None = None, ttl_s: float = 0.0,
    ) -> list[Recorded]:
        appended = await self.inner.append(conversation_id, expected_seq, turn, events, holder=holder, ttl_s=ttl_s)
        if appended:
            self.published(conversation_id, appended[-1].seq)
        return appended

    async def load(self, conversation_id: str, after: int = 0) -> list[Recorded]:
        return await self.inner.load(conversation_id, after)

    async def lease(self, conversation_id: str, turn: int, holder: str, ttl_s: float) -> bool:
        return await self.inner.lease(conversation_id, turn, holder, ttl_s)

    async def unfinished(self, accepted_before: float | None = None) -> list[tuple[str, int]]:
        return await self.inner.unfinished(accepted_before)

    async def conversation_ids(self) -> list[str]:
        return await self.inner.conversation_ids()

    async def idle_since(self, before: float) -> list[str]:
        return await self.inner.idle_since(before)

    async def remove(self, conversation_ids: Sequence[str]) -> int:
        return await self.inner.remove(conversation_ids)

    async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[tuple[int, Recorded]]:
        return await self.inner.read_all(after_position, limit)


__all__ = ["AsyncEventStore", "ExecutorEventStore", "InlineEventStore", "NotifyingEventStore", "nonblocking"]
