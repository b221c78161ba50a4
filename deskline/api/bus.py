"""Live events across API processes: a notification channel that wakes streams everywhere.

Each process wakes its own streams (``Notifier``) when it appends. With several processes behind a
load balancer, a customer's stream may be held by process A while process B takes the message or
the human reply; without a channel A only sees it on its next poll of the database. The bus
closes that gap:

* every append made through this app's store (the desk's turns, the console's commands, a new
  conversation) publishes ``<conversation_id>:<last seq>`` after it commits;
* one listening connection per process receives every process's publications and wakes the local
  streams of that conversation, which then read the store as before (the message only says
  *where* to look; the store stays the truth: a duplicated notification costs a read, a lost one
  delays the event to the stream's next poll, and neither loses or repeats an event).

Two transports: PostgreSQL ``LISTEN``/``NOTIFY`` on channel ``deskline_events`` (psycopg 3, async)
when the database is PostgreSQL, and Redis pub/sub on ``deskline:events`` when ``DESKLINE_REDIS_URL``
is set. ``DESKLINE_EVENT_CHANNEL`` picks one: ``auto`` (Redis if configured, else PostgreSQL if the
database is, else none), ``postgres``, ``redis`` or ``none``.

While the listener is connected, streams still poll, but only every
``DESKLINE_CHANNEL_POLL_INTERVAL_S`` (default 5 s): a safety net for appends made outside the API
(``deskline recover``, scripts) and for a notification lost in a reconnect. When the listener
drops, every stream is woken and goes back to the short poll until it reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from deskline.errors import ConfigError
from deskline.eventlog.events import Event, Recorded
from deskline.eventlog.nonblocking import AsyncEventStore, NotifyingEventStore, nonblocking
from deskline.eventlog.store import EventStore

if TYPE_CHECKING:
    from fastapi import FastAPI

    from deskline.api.settings import WebSettings
    from deskline.api.streams import Notifier
    from deskline.config import Settings

log = structlog.get_logger("deskline.api.bus")

PG_CHANNEL = "deskline_events"
REDIS_CHANNEL = "deskline:events"
CHANNELS = ("auto", "postgres", "redis", "none")
_RECONNECT_S = (0.2, 0.5, 1.0, 2.0, 5.0)  # back-off between listener reconnects, then every 5 s


class Transport(Protocol):
    """One way to fan a short text message out to every API process."""

    name: str

    def listen(self) -> contextlib.AbstractAsyncContextManager[AsyncIterator[str]]:
        """Subscribe; the iterator yields each payload published by any process (this one too)."""
        ...

    async def publish(self, payloads: Sequence[str]) -> None: ...

    async def close(self) -> None: ...


class PostgresTransport:
    """``LISTEN``/``NOTIFY`` on the desk's own PostgreSQL database; two connections per process."""

    name = "postgres"

    def __init__(self, database_url: str) -> None:
        from sqlalchemy.engine import make_url

        url = make_url(database_url)
        if not url.drivername.startswith("postgresql"):
            raise ConfigError("the postgres event channel needs a PostgreSQL database URL", url=database_url)
        self.conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._sender: Any = None

    async def _connect(self) -> Any:
        import psycopg

        # keepalives: a listener behind a dead network path must notice, not wait forever
        return await psycopg.AsyncConnection.connect(
            self.conninfo, autocommit=True, connect_timeout=5,
            keepalives=1, keepalives_idle=30, keepalives_interval=10, keepalives_count=3,
        )

    @asynccontextmanager
    async def listen(self) -> AsyncIterator[AsyncIterator[str]]:
        conn = await self._connect()
        try:
            await conn.execute(f"LISTEN {PG_CHANNEL}")

            async def payloads() -> AsyncIterator[str]:
                async for note in conn.notifies():
                    yield note.payload

            yield payloads()
        finally:
            with contextlib.suppress(Exception):
                await conn.close()

    async def publish(self, payloads: Sequence[str]) -> None:
        if self._sender is None or self._sender.closed:
            self._sender = await self._connect()
        try:
            await self._sender.execute(
                "SELECT pg_notify(%s, p) FROM unnest(%s::text[]) AS p", (PG_CHANNEL, list(payloads))
            )
        except Exception:
            with contextlib.suppress(Exception):
                await self._sender.close()
            self._sender = None
            raise

    async def close(self) -> None:
        if self._sender is not None:
            with contextlib.suppress(Exception):
                await self._sender.close()
            self._sender = None


class RedisTransport:
    """Redis pub/sub; one client (publishing) and one subscription per process."""

    name = "redis"

    def __init__(self, redis_url: str) -> None:
        try:
            import redis.asyncio  # noqa: F401
        except ImportError as exc:
            raise ConfigError("the redis event channel needs the redis package: pip install redis") from exc
        self.redis_url = redis_url
        self._client: Any = None

    def _redis(self) -> Any:
        if self._client is None:
            import redis.asyncio

            self._client = redis.asyncio.from_url(
                self.redis_url, socket_connect_timeout=5, socket_keepalive=True, health_check_interval=30
            )
        return self._client

    @asynccontextmanager
    async def listen(self) -> AsyncIterator[AsyncIterator[str]]:
        pubsub = self._redis().pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(REDIS_CHANNEL)

            async def payloads() -> AsyncIterator[str]:
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        data = message["data"]
                        yield data.decode() if isinstance(data, bytes) else str(data)

            yield payloads()
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    async def publish(self, payloads: Sequence[str]) -> None:
        async with self._redis().pipeline(transaction=False) as pipe:
            for payload in payloads:
                pipe.publish(REDIS_CHANNEL, payload)
            await pipe.execute()

    async def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.aclose()
            self._client = None


class EventBus:
    """Publishes this process's appends and wakes this process's streams on everyone's.

    ``publish`` may be called from any thread (console commands append in worker threads); it
    only hands the message to the event loop, where one task sends what piled up in one round
    trip. Before ``start`` (an app driven without its lifespan) it does nothing, and streams poll.
    """

    def __init__(self, transport: Transport, notifier: Notifier, *, channel_poll_s: float) -> None:
        self.transport = transport
        self.notifier = notifier
        self.channel_poll_s = channel_poll_s
        self.received = 0
        self.published = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: dict[str, int] = {}
        self._lock = threading.Lock()
        self._wake: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._listening = False

    @property
    def live(self) -> bool:
        """The listener is connected: cross-process appends wake this process's streams."""
        return self._listening

    # publishing ------------------------------------------------------------------------------
    def publish(self, conversation_id: str, seq: int) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with self._lock:
            self._pending[conversation_id] = max(seq, self._pending.get(conversation_id, 0))
        with contextlib.suppress(RuntimeError):  # the loop is shutting down
            loop.call_soon_threadsafe(self._kick)

    def _kick(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _publisher(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            with self._lock:
                batch, self._pending = self._pending, {}
            if not batch:
                continue
            try:
                await self.transport.publish([f"{cid}:{seq}" for cid, seq in batch.items()])
                self.published += len(batch)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # streams elsewhere fall back to their poll for these
                log.warning("bus.publish_failed", channel=self.transport.name, error=type(exc).__name__,
                            dropped=len(batch))

    # listening -------------------------------------------------------------------------------
    async def _listener(self) -> None:
        failures = 0
        while True:
            try:
                async with self.transport.listen() as payloads:
                    self._set_live(True)
                    failures = 0
                    log.info("bus.listening", channel=self.transport.name)
                    async for payload in payloads:
                        self.received += 1
                        conversation_id, _, _seq = payload.rpartition(":")
                        self.notifier.notify(conversation_id or payload)
                raise ConnectionError("the channel closed")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._set_live(False)
                wait = _RECONNECT_S[min(failures, len(_RECONNECT_S) - 1)]
                failures += 1
                log.warning("bus.listener_down", channel=self.transport.name, error=type(exc).__name__,
                            retry_in_s=wait)
                await asyncio.sleep(wait)

    def _set_live(self, live: bool) -> None:
        # Either way every stream re-reads: on connect, to catch what was sent while nobody
        # listened; on loss, to start polling at the short interval again.
        self._listening = live
        self.notifier.channel_poll_s = self.channel_poll_s if live else None
        self.notifier.wake_all()

    # lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._tasks = [asyncio.create_task(self._publisher(), name="deskline-bus-publish"),
                       asyncio.create_task(self._listener(), name="deskline-bus-listen")]

    async def stop(self) -> None:
        self._loop = None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        self._listening = False
        self.notifier.channel_poll_s = None
        await self.transport.close()

    @asynccontextmanager
    async def lifespan(self, _app: FastAPI) -> AsyncIterator[None]:
        await self.start()
        try:
            yield
        finally:
            await self.stop()


class PublishingStore:
    """The app's event store, publishing every append on the bus once it has committed.

    Wrapping the store (rather than observing the desk) catches every writer in the app: the
    desk's turns, the console's human steps (which append through the store directly) and the
    conversations the API opens.
    """

    def __init__(self, store: EventStore, bus: EventBus) -> None:
        self.inner = store
        self.bus = bus

    def append(self, conversation_id: str, expected_seq: int, turn: int, events: Sequence[Event],
               *, holder: str | None = None, ttl_s: float = 0.0) -> list[Recorded]:
        appended = self.inner.append(conversation_id, expected_seq, turn, events, holder=holder, ttl_s=ttl_s)
        if appended:
            self.bus.publish(conversation_id, appended[-1].seq)
        return appended

    def load(self, conversation_id: str, after: int = 0) -> list[Recorded]:
        return self.inner.load(conversation_id, after)

    def conversation_ids(self) -> list[str]:
        return self.inner.conversation_ids()

    def unfinished(self, accepted_before: float | None = None) -> list[tuple[str, int]]:
        return self.inner.unfinished(accepted_before)

    def idle_since(self, before: float) -> list[str]:
        return self.inner.idle_since(before)

    def remove(self, conversation_ids: Sequence[str]) -> int:
        return self.inner.remove(conversation_ids)

    def read_all(self, after_position: int = 0, limit: int = 1000) -> list[tuple[int, Recorded]]:
        return self.inner.read_all(after_position, limit)

    def nonblocking(self) -> AsyncEventStore:
        """The inner store's awaitable face, publishing the same way (the desk's turns)."""
        return NotifyingEventStore(nonblocking(self.inner), self.bus.publish)

    def __getattr__(self, name: str) -> Any:  # ``engine`` and anything else a store offers
        return getattr(self.inner, name)


def transport_for(settings: Settings, web: WebSettings) -> Transport | None:
    """The configured transport, or None for a single process (SQLite and no Redis)."""
    choice = web.event_channel
    if choice not in CHANNELS:
        raise ConfigError(f"DESKLINE_EVENT_CHANNEL must be one of {', '.join(CHANNELS)}, not {choice!r}")
    is_postgres = settings.database_url.startswith("postgresql")
    if choice == "none":
        return None
    if choice == "redis" or (choice == "auto" and web.redis_url):
        if not web.redis_url:
            raise ConfigError("DESKLINE_EVENT_CHANNEL=redis needs DESKLINE_REDIS_URL")
        return RedisTransport(web.redis_url)
    if choice == "postgres" or (choice == "auto" and is_postgres):
        return PostgresTransport(settings.database_url)
    return None


def open_bus(settings: Settings, web: WebSettings, desk: Any, notifier: Notifier) -> EventBus | None:
    """A bus for the configured channel, with ``desk.store`` wrapped to publish; None without one.

    Call before anything captures ``desk.store`` (``HumanConsole`` does), so every writer in the
    app publishes.
    """
    transport = transport_for(settings, web)
    if transport is None:
        return None
    bus = EventBus(transport, notifier, channel_poll_s=web.channel_poll_interval_s)
    desk.store = PublishingStore(desk.store, bus)
    return bus
