"""Event stores: where a conversation's events are appended and read back.

Appends are optimistic. A writer states the sequence number it expects the conversation to be
at; if another writer got there first the append raises ``ConcurrencyConflict`` and writes
nothing, and the caller reloads and decides again. ``(conversation_id, seq)`` is unique in every
store, and so is ``(conversation_id, client_message_id)``, so a resent message appends once.

An append can carry the turn lease (``holder``, ``ttl_s``): a message that opens a turn is
stored already leased to its holder, and events that close a turn are appended only while the
holder still has the lease (else ``LeaseLost``, nothing written), in the same transaction.

Two implementations share one contract (tests/test_store_contract.py): ``MemoryEventStore`` and
``SqlEventStore`` (SQLModel over SQLite or PostgreSQL).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

import structlog
from pydantic import ValidationError
from sqlalchemy import Connection, Engine, Index, UniqueConstraint, delete, func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlmodel import Field, SQLModel

from deskline.errors import ConcurrencyConflict, CorruptEvent, LeaseLost, StoreUnavailable
from deskline.eventlog.events import EVENT_ADAPTER, TURN_ENDS, CustomerMessaged, Event, Recorded

if TYPE_CHECKING:
    from deskline.eventlog.nonblocking import AsyncEventStore

log = structlog.get_logger("deskline.store")


class EventStore(Protocol):
    def load(self, conversation_id: str, after: int = 0) -> list[Recorded]: ...

    def append(
        self, conversation_id: str, expected_seq: int, turn: int, events: Sequence[Event],
        *, holder: str | None = None, ttl_s: float = 0.0,
    ) -> list[Recorded]: ...

    def conversation_ids(self) -> list[str]: ...

    def unfinished(self, accepted_before: float | None = None) -> list[tuple[str, int]]: ...

    def lease(self, conversation_id: str, turn: int, holder: str, ttl_s: float) -> bool: ...

    def idle_since(self, before: float) -> list[str]: ...

    def remove(self, conversation_ids: Sequence[str]) -> int: ...

    def read_all(self, after_position: int = 0, limit: int = 1000) -> list[tuple[int, Recorded]]: ...


class EventRow(SQLModel, table=True):
    """One stored event. ``data`` is the event's JSON; ``type`` and ``v`` are copied out of it
    so a row can be reported without parsing it."""

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("conversation_id", "seq", name="uq_events_conversation_seq"),
        UniqueConstraint("conversation_id", "message_key", name="uq_events_conversation_message"),
        Index("ix_events_type", "type"),
    )

    id: int | None = Field(default=None, primary_key=True)
    conversation_id: str = Field(max_length=64)
    seq: int
    turn: int
    type: str = Field(max_length=48)
    v: int = 1
    data: str
    message_key: str | None = Field(default=None, max_length=128)
    created_at: float


class OpenTurnRow(SQLModel, table=True):
    """Accepted messages not yet answered: kept in step with ``events`` in the same transaction,
    so recovery finds unfinished turns without scanning the log."""

    __tablename__ = "open_turns"

    conversation_id: str = Field(primary_key=True, max_length=64)
    turn: int = Field(primary_key=True)
    message_seq: int
    accepted_at: float
    holder: str | None = Field(default=None, max_length=64)  # the desk deciding this turn now
    lease_until: float = 0.0


EVENTS = EventRow.__table__  # type: ignore[attr-defined]
OPEN_TURNS = OpenTurnRow.__table__  # type: ignore[attr-defined]
TABLES = [EVENTS, OPEN_TURNS]


def _failed(exc: BaseException) -> StoreUnavailable:
    """A database failure as ``StoreUnavailable`` with a generic message: the driver's text names
    hosts and ports, so it goes to the log only, never into a response or a metric."""
    orig = getattr(exc, "orig", None) or exc
    if isinstance(exc, PoolTimeout):
        log.error("db.pool_exhausted", error=str(exc)[:200])
        return StoreUnavailable("every database connection is busy; try again shortly")
    log.error("db.failed", error=type(orig).__name__, detail=str(orig)[:300])
    return StoreUnavailable("cannot reach the database (the driver's error is in the log)")


def _records(conversation_id: str, expected_seq: int, turn: int, events: Sequence[Event], now: float) -> list[Recorded]:
    """The events as stored (every event is already a validated, frozen model)."""
    return [Recorded(conversation_id, expected_seq + i, turn, e, now) for i, e in enumerate(events, start=1)]


def _turn_changes(recorded: Sequence[Recorded]) -> tuple[list[Recorded], list[Recorded]]:
    """Messages that open a turn, and events that close one."""
    opened = [r for r in recorded if isinstance(r.event, CustomerMessaged)]
    closed = [r for r in recorded if r.event.type in TURN_ENDS]
    return opened, closed


def _lease_lost(conversation_id: str, turn: int) -> LeaseLost:
    return LeaseLost(f"turn {turn} of {conversation_id} is no longer leased to this desk",
                     conversation_id=conversation_id, turn=turn)


def _message_key(event: Event) -> str | None:
    return event.client_message_id if isinstance(event, CustomerMessaged) else None


def parse_row(conversation_id: str, seq: int, turn: int, data: str | bytes, at: float) -> Recorded:
    """A stored row as a ``Recorded`` event, or ``CorruptEvent`` naming where it sits."""
    try:
        event = EVENT_ADAPTER.validate_json(data)
    except (ValidationError, ValueError) as exc:
        raise CorruptEvent(
            f"event {seq} of conversation {conversation_id} cannot be read: {_first_error(exc)}",
            conversation_id=conversation_id,
            seq=seq,
        ) from exc
    return Recorded(conversation_id=conversation_id, seq=seq, turn=turn, event=event, at=at)


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        return f"{err['type']} at {'.'.join(map(str, err['loc']))}"
    return str(exc)


class SqlEventStore:
    """Events in one SQL table through SQLModel; SQLite or PostgreSQL."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # The hot path (load, append) runs driver SQL on pooled connections; the rest uses SQLAlchemy.
        self._sqlite = engine.dialect.name == "sqlite"
        self._dbapi: Any = engine.dialect.loaded_dbapi
        mark = "?" if engine.dialect.paramstyle == "qmark" else "%s"
        self._sql = {name: text.replace("?", mark) for name, text in {
            "load": "SELECT seq, turn, data, created_at FROM events WHERE conversation_id = ? AND seq > ? ORDER BY seq",
            "head": "SELECT seq FROM events WHERE conversation_id = ? AND seq = ?",
            "insert": "INSERT INTO events (conversation_id, seq, turn, type, v, data, message_key, created_at) "
                      "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            "close": "DELETE FROM open_turns WHERE conversation_id = ? AND turn = ?",
            "open": "INSERT INTO open_turns (conversation_id, turn, message_seq, accepted_at, holder, lease_until) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
            "lease": "UPDATE open_turns SET holder = ?, lease_until = ? WHERE conversation_id = ? AND turn = ? "
                     "AND (holder IS NULL OR holder = ? OR lease_until < ?)",
        }.items()}
        self._nonblocking: Any = None
        from deskline.eventlog.schema import prepare

        # A brand-new database gets every table at the newest revision; any other revision
        # raises SchemaOutOfDate, naming `deskline db upgrade`.
        prepare(engine)

    def nonblocking(self) -> AsyncEventStore:
        """This store's awaitable face for the desk's turns (one per store, made on first use).

        PostgreSQL: psycopg's asyncio connections (``PgEventStore``: autocommit, one round trip
        per call, no thread hop). Measured at a set load of 300 turns/s on one process
        (bench/pg_throughput.py), its turns took p50 4.3-5.4 ms and p99 26-54 ms, against
        6.5-16 ms and 64-127 ms with this store's calls on a bounded pool of threads
        (``ExecutorEventStore``), which ``DESKLINE_DB_EXECUTOR=1`` still picks; SQLAlchemy's
        asyncio engine (``AsyncSqlEventStore``) cost more CPU per call than either.
        SQLite: the calls themselves, on the loop. A SQLite call takes tens of microseconds,
        less than a hop to a worker thread and back (a one-worker executor made the embedded
        default's turn ~40 % slower, aiosqlite slower still); several processes on one database
        belong on PostgreSQL."""
        if self._nonblocking is None:
            from deskline.eventlog.nonblocking import ExecutorEventStore, InlineEventStore

            if self._sqlite:
                self._nonblocking = InlineEventStore(self)
            elif os.environ.get("DESKLINE_DB_EXECUTOR", "").strip().lower() in ("1", "true", "yes"):
                from deskline.eventlog.database import DbTimeouts

                limits = DbTimeouts.from_env()
                self._nonblocking = ExecutorEventStore(self, workers=limits.pool_size + limits.max_overflow,
                                                       wait_s=limits.pool_s)
            else:
                from deskline.eventlog.pg_async import PgEventStore

                self._nonblocking = PgEventStore(self.engine.url.render_as_string(hide_password=False))
        face: AsyncEventStore = self._nonblocking
        return face

    def load(self, conversation_id: str, after: int = 0) -> list[Recorded]:
        with self._raw(autocommit=True) as conn:
            cur = conn.cursor()
            cur.execute(self._sql["load"], (conversation_id, after))
            rows = cur.fetchall()
            conn.rollback()  # end SQLite's read transaction (a no-op outside one)
        return [parse_row(conversation_id, seq, turn, data, at) for seq, turn, data, at in rows]

    def append(
        self, conversation_id: str, expected_seq: int, turn: int, events: Sequence[Event],
        *, holder: str | None = None, ttl_s: float = 0.0,
    ) -> list[Recorded]:
        now = time.time()
        recorded = _records(conversation_id, expected_seq, turn, events, now)
        opened, closed = _turn_changes(recorded)
        if not self._sqlite:
            from deskline.eventlog.pg_append import APPEND, append_params, check_append

            # PostgreSQL: the whole append in one statement, its own transaction (one round trip).
            with self._writing(conversation_id, expected_seq, autocommit=True) as cur:
                cur.execute(APPEND, append_params(conversation_id, expected_seq, turn, recorded, opened, closed,
                                                  holder, ttl_s, now))
                row = cur.fetchone()
            check_append(row, conversation_id, expected_seq, closed)
            return recorded
        sql = self._sql
        with self._writing(conversation_id, expected_seq) as cur:
            cur.execute("BEGIN IMMEDIATE")  # take the write lock before reading the head
            if expected_seq > 0:
                # The head must exist: appending after a seq nobody wrote would leave a gap.
                cur.execute(sql["head"], (conversation_id, expected_seq))
                if cur.fetchone() is None:
                    raise ConcurrencyConflict(f"conversation {conversation_id} has no event {expected_seq}",
                                              conversation_id=conversation_id, expected_seq=expected_seq)
            if holder is not None and closed:
                cur.execute(sql["lease"], (holder, now + ttl_s, conversation_id, closed[0].turn, holder, now))
                if cur.rowcount != 1:
                    raise _lease_lost(conversation_id, closed[0].turn)
            cur.executemany(sql["insert"], [(conversation_id, r.seq, turn, r.event.type, r.event.v,
                                             r.event.model_dump_json(), _message_key(r.event), now)
                                            for r in recorded])
            for r in closed:
                cur.execute(sql["close"], (conversation_id, r.turn))
            if opened and not closed:
                lease_until = now + ttl_s if holder is not None else 0.0
                cur.executemany(sql["open"], [(conversation_id, r.turn, r.seq, now, holder, lease_until)
                                              for r in opened])
        return recorded

    @contextmanager
    def _writing(self, conversation_id: str, expected_seq: int, *, autocommit: bool = False) -> Iterator[Any]:
        """A cursor on a pooled connection, committed when the block ends; rolled back on any
        error, a unique-key violation raised as ``ConcurrencyConflict`` and a driver failure as
        ``StoreUnavailable``. ``autocommit``: see ``_raw``."""
        with self._raw(autocommit=autocommit) as conn:
            try:
                yield conn.cursor()
                conn.commit()
            except self._dbapi.IntegrityError as exc:
                conn.rollback()
                raise ConcurrencyConflict(f"conversation {conversation_id} moved past {expected_seq}",
                                          conversation_id=conversation_id, expected_seq=expected_seq) from exc
            except self._dbapi.OperationalError as exc:
                conn.rollback()
                raise _failed(exc) from exc
            except BaseException:
                conn.rollback()
                raise

    def lease(self, conversation_id: str, turn: int, holder: str, ttl_s: float) -> bool:
        """Take (or renew) the right to decide an open turn for ``ttl_s`` seconds.

        One desk decides a turn at a time: a second process touching the same conversation waits
        for the first to finish instead of running its own plan's actions beside it. A crashed
        holder's lease runs out, and the next desk to touch the conversation takes over. False
        when someone else holds it, or when the turn is no longer open.
        """
        now = time.time()
        with self._raw() as conn:
            cur = conn.cursor()
            try:
                cur.execute(self._sql["lease"], (holder, now + ttl_s, conversation_id, turn, holder, now))
                taken = bool(cur.rowcount == 1)
                conn.commit()
            except self._dbapi.OperationalError as exc:
                conn.rollback()
                raise _failed(exc) from exc
        return taken

    @contextmanager
    def _raw(self, *, autocommit: bool = False) -> Iterator[Any]:
        """A pooled driver connection: the hot path skips SQLAlchemy's statement machinery, which
        costs more per call than SQLite takes to run the statement.

        ``autocommit`` (PostgreSQL; SQLite ignores it): every statement is its own transaction,
        for a block of one statement, which then needs no COMMIT or ROLLBACK round trip. The
        connection goes back to the pool in SQLAlchemy's transactional mode."""
        try:
            conn = self.engine.raw_connection()
        except (OperationalError, PoolTimeout) as exc:
            raise _failed(exc) from exc
        driver = conn.driver_connection if autocommit and not self._sqlite else None
        try:
            if driver is not None:
                driver.autocommit = True  # a local setting: no round trip
            yield conn
        finally:
            if driver is not None:
                try:
                    driver.autocommit = False
                except self._dbapi.Error:  # broken or closed: the pool's checkout check replaces it
                    conn.invalidate()
            conn.close()  # back to the pool

    def unfinished(self, accepted_before: float | None = None) -> list[tuple[str, int]]:
        """(conversation, turn) of every accepted message with no ending yet, oldest first."""
        query = select(OPEN_TURNS.c.conversation_id, OPEN_TURNS.c.turn).order_by(OPEN_TURNS.c.accepted_at)
        if accepted_before is not None:
            query = query.where(OPEN_TURNS.c.accepted_at < accepted_before)
        with self._connect() as conn:
            return [(cid, turn) for cid, turn in conn.execute(query).all()]

    def conversation_ids(self) -> list[str]:
        with self._connect() as conn:
            rows = conn.execute(
                select(EVENTS.c.conversation_id).distinct().order_by(EVENTS.c.conversation_id)
            ).all()
        return [r[0] for r in rows]

    def idle_since(self, before: float) -> list[str]:
        """Conversations whose last event is older than ``before`` (epoch seconds)."""
        query = (
            select(EVENTS.c.conversation_id)
            .group_by(EVENTS.c.conversation_id)
            .having(func.max(EVENTS.c.created_at) < before)
            .order_by(EVENTS.c.conversation_id)
        )
        with self._connect() as conn:
            return [r[0] for r in conn.execute(query).all()]

    def remove(self, conversation_ids: Sequence[str]) -> int:
        """Delete these conversations' events (after they were archived); returns the rows removed."""
        ids = list(conversation_ids)
        if not ids:
            return 0
        with self.engine.begin() as conn:
            conn.execute(delete(OPEN_TURNS).where(OPEN_TURNS.c.conversation_id.in_(ids)))
            return conn.execute(delete(EVENTS).where(EVENTS.c.conversation_id.in_(ids))).rowcount or 0

    def read_all(self, after_position: int = 0, limit: int = 1000) -> list[tuple[int, Recorded]]:
        """Events of every conversation in append order, after a global position (the row id).

        Projections that span conversations keep the last position they folded and read only
        what came after it.
        """
        query = (
            select(EVENTS.c.id, EVENTS.c.conversation_id, EVENTS.c.seq, EVENTS.c.turn, EVENTS.c.data,
                   EVENTS.c.created_at)
            .where(EVENTS.c.id > after_position)
            .order_by(EVENTS.c.id)
            .limit(limit)
        )
        with self._connect() as conn:
            rows = conn.execute(query).all()
        return [(pos, parse_row(cid, seq, turn, data, at)) for pos, cid, seq, turn, data, at in rows]

    def _connect(self) -> Connection:
        try:
            return self.engine.connect()
        except (OperationalError, PoolTimeout) as exc:
            raise _failed(exc) from exc


class MemoryEventStore:
    """The same contract in process memory: for tests and benchmarks."""

    def nonblocking(self) -> AsyncEventStore:
        """Calls that never wait on I/O: made in place, on the loop."""
        from deskline.eventlog.nonblocking import InlineEventStore

        return InlineEventStore(self)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._streams: dict[str, list[Recorded]] = {}
        self._keys: set[tuple[str, str]] = set()
        self._all: list[Recorded] = []
        self._open: dict[tuple[str, int], float] = {}
        self._leases: dict[tuple[str, int], tuple[str, float]] = {}

    def load(self, conversation_id: str, after: int = 0) -> list[Recorded]:
        with self._lock:
            return [r for r in self._streams.get(conversation_id, ()) if r.seq > after]

    def append(
        self, conversation_id: str, expected_seq: int, turn: int, events: Sequence[Event],
        *, holder: str | None = None, ttl_s: float = 0.0,
    ) -> list[Recorded]:
        now = time.time()
        with self._lock:
            stream = self._streams.setdefault(conversation_id, [])
            keys = [(conversation_id, k) for e in events if (k := _message_key(e)) is not None]
            if len(stream) != expected_seq or any(k in self._keys for k in keys):
                raise ConcurrencyConflict(
                    f"conversation {conversation_id} moved past {expected_seq}",
                    conversation_id=conversation_id,
                    expected_seq=expected_seq,
                )
            recorded = _records(conversation_id, expected_seq, turn, events, now)
            opened, closed = _turn_changes(recorded)
            if holder is not None and closed and not self._take(conversation_id, closed[0].turn, holder, ttl_s, now):
                raise _lease_lost(conversation_id, closed[0].turn)
            stream.extend(recorded)
            self._keys.update(keys)
            for r in closed:
                self._open.pop((conversation_id, r.turn), None)
                self._leases.pop((conversation_id, r.turn), None)
            if opened and not closed:
                self._open.update({(conversation_id, r.turn): now for r in opened})
                if holder is not None:
                    self._leases.update({(conversation_id, r.turn): (holder, now + ttl_s) for r in opened})
            self._all.extend(recorded)
            return recorded

    def lease(self, conversation_id: str, turn: int, holder: str, ttl_s: float) -> bool:
        with self._lock:
            return self._take(conversation_id, turn, holder, ttl_s, time.time())

    def _take(self, conversation_id: str, turn: int, holder: str, ttl_s: float, now: float) -> bool:
        key = (conversation_id, turn)
        if key not in self._open:
            return False
        current = self._leases.get(key)
        if current is not None and current[0] != holder and current[1] >= now:
            return False
        self._leases[key] = (holder, now + ttl_s)
        return True

    def unfinished(self, accepted_before: float | None = None) -> list[tuple[str, int]]:
        with self._lock:
            items = sorted(self._open.items(), key=lambda kv: kv[1])
        return [key for key, at in items if accepted_before is None or at < accepted_before]

    def conversation_ids(self) -> list[str]:
        with self._lock:
            return sorted(self._streams)

    def idle_since(self, before: float) -> list[str]:
        with self._lock:
            return sorted(cid for cid, stream in self._streams.items() if stream and stream[-1].at < before)

    def remove(self, conversation_ids: Sequence[str]) -> int:
        with self._lock:
            removed = 0
            for cid in conversation_ids:
                removed += len(self._streams.pop(cid, []))
                self._keys = {k for k in self._keys if k[0] != cid}
                self._open = {k: v for k, v in self._open.items() if k[0] != cid}
            # positions in read_all stay stable: removed events are blanked, not shifted
            return removed

    def read_all(self, after_position: int = 0, limit: int = 1000) -> list[tuple[int, Recorded]]:
        with self._lock:
            chunk = self._all[after_position : after_position + limit]
        return list(enumerate(chunk, start=after_position + 1))


def dumps(records: Iterable[Recorded]) -> str:
    """Records as JSON lines (for export and debugging)."""
    return "\n".join(json.dumps(r.to_json()) for r in records)
