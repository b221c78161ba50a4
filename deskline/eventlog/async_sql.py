"""``AsyncSqlEventStore``: the event log over SQLAlchemy's asyncio engine.

Not the desk's default: on PostgreSQL the turns use ``PgEventStore`` (psycopg's asyncio
connections without SQLAlchemy's pool and greenlet bridge, which cost more CPU per call than the
statement), on SQLite the synchronous store in place. Kept for the contract suite's asyncio SQLite
face and the benchmark's comparison (``bench/pg_throughput.py --store async``).

PostgreSQL through psycopg 3's async connection, SQLite (a file) through aiosqlite, each on
SQLAlchemy's asyncio pool (``make_async_engine``: autocommit connections, same timeouts and pool
size as the synchronous engine). The hot path (load, append, lease) talks to the driver
connection directly, as ``SqlEventStore`` does; the rest uses SQLAlchemy Core.

Round trips per call on PostgreSQL: ``load`` one SELECT; ``append`` one statement whose CTEs
check the head, check the turn's lease (a locking read), insert the events, and open or close
the turn, so the append is atomic without BEGIN/COMMIT round trips; ``lease`` one UPDATE.
SQLite runs the synchronous store's transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``).

Every call is bounded: a free pooled connection within ``DESKLINE_DB_POOL_TIMEOUT_S``, and the
call's statements within the round-trip deadline (statement timeout + 1 s); a connection that
missed it, or whose call was cancelled mid-statement, is discarded rather than pooled.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, make_url, select
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.util import greenlet_spawn

from deskline.errors import ConcurrencyConflict, DesklineError, StoreUnavailable
from deskline.eventlog.database import DbTimeouts, make_async_engine
from deskline.eventlog.events import Event, Recorded
from deskline.eventlog.pg_append import APPEND, LEASE, LOAD, append_params, check_append
from deskline.eventlog.store import (
    EVENTS,
    OPEN_TURNS,
    _failed,
    _lease_lost,
    _message_key,
    _records,
    _turn_changes,
    parse_row,
)

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine



class AsyncSqlEventStore:
    """The event-store contract on the asyncio drivers (PostgreSQL or a SQLite file).

    The schema is the synchronous store's business (``SqlEventStore`` checks it, and creates it
    in a brand-new database): make one first, or use ``SqlEventStore(engine).nonblocking()``.
    An asyncio pool belongs to one event loop, so each loop that uses the store gets its own.
    """

    def __init__(self, url: str, timeouts: DbTimeouts | None = None) -> None:
        self.url = url
        self.timeouts = timeouts or DbTimeouts.from_env()
        self.dialect = "sqlite" if make_url(url).drivername.startswith("sqlite") else "postgresql"
        self._engines: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[AsyncEngine, asyncio.Semaphore]] = (
            weakref.WeakKeyDictionary())
        self._dbapi: Any = None

    def engine(self) -> AsyncEngine:
        """The asyncio engine of the running loop (made on first use)."""
        return self._pool()[0]

    def _pool(self) -> tuple[AsyncEngine, asyncio.Semaphore]:
        loop = asyncio.get_running_loop()
        found = self._engines.get(loop)
        if found is None:
            engine = make_async_engine(self.url, self.timeouts)
            self._dbapi = engine.dialect.loaded_dbapi
            # SQLAlchemy's asyncio pool is not fair: under load a caller that just arrived takes a
            # returned connection before one that has waited, which can wait past the pool timeout
            # while connections keep coming back. A FIFO gate sized to the pool goes first.
            limit = 1 if self.dialect == "sqlite" else self.timeouts.pool_size + self.timeouts.max_overflow
            found = self._engines[loop] = (engine, asyncio.Semaphore(limit))
        return found

    @asynccontextmanager
    async def _turn(self) -> AsyncIterator[AsyncEngine]:
        """The engine, once this caller's turn for a connection has come (``StoreUnavailable``
        after ``DESKLINE_DB_POOL_TIMEOUT_S``)."""
        engine, gate = self._pool()
        try:
            async with asyncio.timeout(self.timeouts.pool_s):
                await gate.acquire()
        except TimeoutError:
            raise _failed(PoolTimeout("no pooled connection came free in time")) from None
        try:
            yield engine
        finally:
            gate.release()

    async def dispose(self) -> None:
        """Close the running loop's pooled connections (at shutdown)."""
        found = self._engines.pop(asyncio.get_running_loop(), None)
        if found is not None:
            await found[0].dispose()

    # -- the hot path: driver SQL on pooled connections ----------------------------------------

    @asynccontextmanager
    async def _driver(self) -> AsyncIterator[Any]:
        """A pooled driver connection (psycopg ``AsyncConnection`` or aiosqlite ``Connection``)."""
        async with self._turn() as engine, self._checked_out(engine) as conn:
            yield conn

    @asynccontextmanager
    async def _checked_out(self, engine: AsyncEngine) -> AsyncIterator[Any]:
        try:
            async with asyncio.timeout(self.timeouts.pool_s + self.timeouts.connect_s):
                fairy = await engine.raw_connection()
        except (OperationalError, PoolTimeout, OSError, self._dbapi.OperationalError) as exc:
            raise _failed(exc) from exc
        except TimeoutError as exc:
            raise _failed(PoolTimeout(str(exc))) from exc
        healthy = True
        try:
            async with asyncio.timeout(self.timeouts.round_trip_s):
                yield fairy.driver_connection
        except TimeoutError as exc:
            healthy = False
            raise StoreUnavailable(f"no answer from the database within {self.timeouts.round_trip_s:.0f} s; "
                                   "connection dropped") from exc
        except self._dbapi.OperationalError as exc:
            healthy = False
            raise _failed(exc) from exc
        except BaseException as exc:
            # A refused statement or a decision (conflict, lost lease) leaves the connection idle;
            # anything else (cancelled mid-statement, a bug) leaves it in a state nobody knows.
            healthy = isinstance(exc, DesklineError | self._dbapi.IntegrityError)
            raise
        finally:
            await greenlet_spawn(fairy.close if healthy else fairy.invalidate)

    async def load(self, conversation_id: str, after: int = 0) -> list[Recorded]:
        async with self._driver() as conn:
            if self.dialect == "sqlite":
                cur = await conn.execute(LOAD.replace("%s", "?"), (conversation_id, after))
            else:
                cur = await conn.execute(LOAD, (conversation_id, after))
            rows = await cur.fetchall()
        return [parse_row(conversation_id, seq, turn, data, at) for seq, turn, data, at in rows]

    async def append(
        self, conversation_id: str, expected_seq: int, turn: int, events: Sequence[Event],
        *, holder: str | None = None, ttl_s: float = 0.0,
    ) -> list[Recorded]:
        now = time.time()
        recorded = _records(conversation_id, expected_seq, turn, events, now)
        opened, closed = _turn_changes(recorded)
        if closed:
            opened = []
        try:
            async with self._driver() as conn:
                if self.dialect == "sqlite":
                    await self._append_sqlite(conn, conversation_id, expected_seq, turn, recorded, opened, closed,
                                              holder, ttl_s, now)
                    return recorded
                cur = await conn.execute(APPEND, append_params(conversation_id, expected_seq, turn, recorded,
                                                               opened, closed, holder, ttl_s, now))
                row = await cur.fetchone()
        except self._dbapi.IntegrityError as exc:
            raise _conflict(conversation_id, expected_seq) from exc
        check_append(row, conversation_id, expected_seq, closed)
        return recorded

    async def _append_sqlite(self, conn: Any, cid: str, expected_seq: int, turn: int, recorded: list[Recorded],
                             opened: list[Recorded], closed: list[Recorded], holder: str | None, ttl_s: float,
                             now: float) -> None:
        await conn.execute("BEGIN IMMEDIATE")  # the write lock before reading the head
        try:
            if expected_seq > 0:
                cur = await conn.execute("SELECT seq FROM events WHERE conversation_id = ? AND seq = ?",
                                         (cid, expected_seq))
                if await cur.fetchone() is None:
                    raise ConcurrencyConflict(f"conversation {cid} has no event {expected_seq}",
                                              conversation_id=cid, expected_seq=expected_seq)
            if holder is not None and closed:
                cur = await conn.execute(LEASE.replace("%s", "?"),
                                         (holder, now + ttl_s, cid, closed[0].turn, holder, now))
                if cur.rowcount != 1:
                    raise _lease_lost(cid, closed[0].turn)
            await conn.executemany(
                "INSERT INTO events (conversation_id, seq, turn, type, v, data, message_key, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(cid, r.seq, turn, r.event.type, r.event.v, r.event.model_dump_json(), _message_key(r.event), now)
                 for r in recorded])
            if closed:
                await conn.executemany("DELETE FROM open_turns WHERE conversation_id = ? AND turn = ?",
                                       [(cid, r.turn) for r in closed])
            if opened:
                until = now + ttl_s if holder is not None else 0.0
                await conn.executemany(
                    "INSERT INTO open_turns (conversation_id, turn, message_seq, accepted_at, holder, lease_until) "
                    "VALUES (?, ?, ?, ?, ?, ?)", [(cid, r.turn, r.seq, now, holder, until) for r in opened])
            await conn.commit()
        except BaseException:
            await asyncio.shield(conn.rollback())
            raise

    async def lease(self, conversation_id: str, turn: int, holder: str, ttl_s: float) -> bool:
        now = time.time()
        sql = LEASE.replace("%s", "?") if self.dialect == "sqlite" else LEASE
        async with self._driver() as conn:
            cur = await conn.execute(sql, (holder, now + ttl_s, conversation_id, turn, holder, now))
            return bool(cur.rowcount == 1)

    # -- the rest: SQLAlchemy Core ----------------------------------------------------------------

    @asynccontextmanager
    async def _connect(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self._turn() as engine, asyncio.timeout(self.timeouts.round_trip_s), \
                    engine.connect() as conn:
                yield conn
        except (DBAPIError, PoolTimeout, OSError) as exc:
            raise _failed(exc) from exc
        except TimeoutError as exc:
            raise StoreUnavailable("no answer from the database in time") from exc

    async def unfinished(self, accepted_before: float | None = None) -> list[tuple[str, int]]:
        query = select(OPEN_TURNS.c.conversation_id, OPEN_TURNS.c.turn).order_by(OPEN_TURNS.c.accepted_at)
        if accepted_before is not None:
            query = query.where(OPEN_TURNS.c.accepted_at < accepted_before)
        async with self._connect() as conn:
            return [(cid, turn) for cid, turn in (await conn.execute(query)).all()]

    async def conversation_ids(self) -> list[str]:
        query = select(EVENTS.c.conversation_id).distinct().order_by(EVENTS.c.conversation_id)
        async with self._connect() as conn:
            return [r[0] for r in (await conn.execute(query)).all()]

    async def idle_since(self, before: float) -> list[str]:
        query = (select(EVENTS.c.conversation_id).group_by(EVENTS.c.conversation_id)
                 .having(func.max(EVENTS.c.created_at) < before).order_by(EVENTS.c.conversation_id))
        async with self._connect() as conn:
            return [r[0] for r in (await conn.execute(query)).all()]

    async def remove(self, conversation_ids: Sequence[str]) -> int:
        ids = list(conversation_ids)
        if not ids:
            return 0
        async with self._connect() as conn:
            await conn.exec_driver_sql("BEGIN IMMEDIATE" if self.dialect == "sqlite" else "BEGIN")
            try:
                await conn.execute(delete(OPEN_TURNS).where(OPEN_TURNS.c.conversation_id.in_(ids)))
                removed = (await conn.execute(delete(EVENTS).where(EVENTS.c.conversation_id.in_(ids)))).rowcount
                await conn.exec_driver_sql("COMMIT")
            except BaseException:
                await asyncio.shield(conn.exec_driver_sql("ROLLBACK"))
                raise
        return removed or 0

    async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[tuple[int, Recorded]]:
        query = (select(EVENTS.c.id, EVENTS.c.conversation_id, EVENTS.c.seq, EVENTS.c.turn, EVENTS.c.data,
                        EVENTS.c.created_at)
                 .where(EVENTS.c.id > after_position).order_by(EVENTS.c.id).limit(limit))
        async with self._connect() as conn:
            rows = (await conn.execute(query)).all()
        return [(pos, parse_row(cid, seq, turn, data, at)) for pos, cid, seq, turn, data, at in rows]


def _conflict(conversation_id: str, expected_seq: int) -> ConcurrencyConflict:
    return ConcurrencyConflict(f"conversation {conversation_id} moved past {expected_seq}",
                               conversation_id=conversation_id, expected_seq=expected_seq)


__all__ = ["AsyncSqlEventStore"]
