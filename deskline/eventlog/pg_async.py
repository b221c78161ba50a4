"""``PgEventStore``: the event log on PostgreSQL through psycopg 3's own asyncio connections.

The desk's turns on PostgreSQL: no thread hop and no SQLAlchemy between a turn and the driver.
Connections come from a small pool per event loop (``_Pool``), in autocommit mode, so every
call is one statement and one round trip: ``load`` a SELECT,
``append`` the one-statement append of ``pg_append`` (head check, lease check, insert, open or
close the turn), ``lease`` an UPDATE. Measured on one process (bench/pg_throughput.py), a query
this way costs ~50 us of CPU, against ~65 us for the synchronous driver on a worker thread
(``ExecutorEventStore``) and more for SQLAlchemy's asyncio engine, whose pool and greenlet
bridge cost more than the statement. The pool is not ``psycopg_pool``: its connections are
opened by background tasks that outlive the loop that made them (the CLI and the tests run a
loop per call, and a closing loop then waits on them forever); this one opens a connection in
the caller's task, when no idle one is left, and costs less per checkout.

Bounded like the synchronous store (``DbTimeouts``): a free connection within
``DESKLINE_DB_POOL_TIMEOUT_S`` (then ``StoreUnavailable``), opening one within the connect
timeout, the server's ``statement_timeout``, and the client's own deadline on every round trip
(statement timeout + 1 s) for a database that never answers; a connection that missed it, or
whose call was cancelled mid-statement, is closed, so the pool replaces it. A pooled connection
is checked on checkout without a round trip (``_stale``).
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import make_url

from deskline.errors import ConcurrencyConflict, DesklineError, StoreUnavailable
from deskline.eventlog.database import DbTimeouts, _pg_connect_args, _stale
from deskline.eventlog.events import Event, Recorded
from deskline.eventlog.pg_append import APPEND, LEASE, LOAD, append_params, check_append
from deskline.eventlog.store import _failed, _records, _turn_changes, parse_row


class PgEventStore:
    """The event-store contract, awaitable, on PostgreSQL (``postgresql+psycopg://`` URLs).

    The schema is the synchronous store's business (``SqlEventStore`` checks it and creates it in
    a brand-new database): make one first, or use ``SqlEventStore(engine).nonblocking()``. A
    pool belongs to one event loop, so each loop that uses the store gets its own.
    """

    def __init__(self, url: str, timeouts: DbTimeouts | None = None) -> None:
        self.timeouts = timeouts or DbTimeouts.from_env()
        parsed = make_url(url)
        if not parsed.drivername.startswith("postgresql"):
            raise ValueError(f"PgEventStore needs a PostgreSQL URL, not {parsed.drivername}")
        self._conninfo = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
        self._connect_args = {"autocommit": True, **_pg_connect_args(url, self.timeouts)}
        self._pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Pool] = weakref.WeakKeyDictionary()

    def _pool(self) -> _Pool:
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is None:
            pool = self._pools[loop] = _Pool(self._conninfo, self._connect_args, self.timeouts)
        return pool

    async def dispose(self) -> None:
        """Close the running loop's pooled connections (at shutdown)."""
        pool = self._pools.pop(asyncio.get_running_loop(), None)
        if pool is not None:
            await pool.close()

    @asynccontextmanager
    async def _conn(self) -> AsyncIterator[Any]:
        """A pooled connection for one call, every round trip of it within the deadline."""
        import psycopg

        pool = self._pool()
        conn = await pool.get()
        try:
            async with asyncio.timeout(self.timeouts.round_trip_s):
                yield conn
        except TimeoutError as exc:
            await conn.close()  # its protocol state is unknown: not pooled again
            raise StoreUnavailable(f"no answer from the database within {self.timeouts.round_trip_s:.0f} s; "
                                   "connection dropped") from exc
        except psycopg.OperationalError as exc:
            await conn.close()
            raise _failed(exc) from exc
        except BaseException as exc:
            # A refused statement or a decision (conflict, lost lease) leaves the connection idle;
            # anything else (cancelled mid-statement, a bug) leaves it in a state nobody knows.
            if not isinstance(exc, DesklineError | psycopg.IntegrityError):
                await conn.close()
            raise
        finally:
            await pool.put(conn)

    async def load(self, conversation_id: str, after: int = 0) -> list[Recorded]:
        async with self._conn() as conn:
            rows = await (await conn.execute(LOAD, (conversation_id, after))).fetchall()
        return [parse_row(conversation_id, seq, turn, data, at) for seq, turn, data, at in rows]

    async def append(
        self, conversation_id: str, expected_seq: int, turn: int, events: Sequence[Event],
        *, holder: str | None = None, ttl_s: float = 0.0,
    ) -> list[Recorded]:
        import psycopg

        now = time.time()
        recorded = _records(conversation_id, expected_seq, turn, events, now)
        opened, closed = _turn_changes(recorded)
        params = append_params(conversation_id, expected_seq, turn, recorded, opened, closed, holder, ttl_s, now)
        try:
            async with self._conn() as conn:
                row = await (await conn.execute(APPEND, params)).fetchone()
        except psycopg.IntegrityError as exc:
            raise ConcurrencyConflict(f"conversation {conversation_id} moved past {expected_seq}",
                                      conversation_id=conversation_id, expected_seq=expected_seq) from exc
        check_append(row, conversation_id, expected_seq, closed)
        return recorded

    async def lease(self, conversation_id: str, turn: int, holder: str, ttl_s: float) -> bool:
        now = time.time()
        async with self._conn() as conn:
            cur = await conn.execute(LEASE, (holder, now + ttl_s, conversation_id, turn, holder, now))
            return bool(cur.rowcount == 1)

    async def unfinished(self, accepted_before: float | None = None) -> list[tuple[str, int]]:
        where = "" if accepted_before is None else " WHERE accepted_at < %s"
        params = () if accepted_before is None else (accepted_before,)
        return [(cid, turn) for cid, turn in
                await self._all(f"SELECT conversation_id, turn FROM open_turns{where} ORDER BY accepted_at", params)]

    async def conversation_ids(self) -> list[str]:
        return [r[0] for r in await self._all("SELECT DISTINCT conversation_id FROM events ORDER BY conversation_id")]

    async def idle_since(self, before: float) -> list[str]:
        return [r[0] for r in await self._all(
            "SELECT conversation_id FROM events GROUP BY conversation_id HAVING max(created_at) < %s "
            "ORDER BY conversation_id", (before,))]

    async def remove(self, conversation_ids: Sequence[str]) -> int:
        ids = list(conversation_ids)
        if not ids:
            return 0
        async with self._conn() as conn, conn.transaction():
            await conn.execute("DELETE FROM open_turns WHERE conversation_id = ANY(%s)", (ids,))
            cur = await conn.execute("DELETE FROM events WHERE conversation_id = ANY(%s)", (ids,))
            removed: int = max(cur.rowcount, 0)
            return removed

    async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[tuple[int, Recorded]]:
        rows = await self._all("SELECT id, conversation_id, seq, turn, data, created_at FROM events "
                               "WHERE id > %s ORDER BY id LIMIT %s", (after_position, limit))
        return [(pos, parse_row(cid, seq, turn, data, at)) for pos, cid, seq, turn, data, at in rows]

    async def _all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        async with self._conn() as conn:
            return list(await (await conn.execute(sql, params)).fetchall())


class _Pool:
    """At most pool size + overflow connections of one event loop, kept open once opened (closing
    the ones past the pool size on their return, as SQLAlchemy's pool does, reopened hundreds
    a second under load: returns come in bursts, before the callers waiting for them run).

    A caller waits its turn first-come first-served (``DESKLINE_DB_POOL_TIMEOUT_S``, then
    ``StoreUnavailable``: every connection is busy), takes an idle connection (one the server
    closed is dropped, checked without a round trip: ``_stale``) or opens one within the connect
    timeout. A connection comes back only idle and open; any other is closed."""

    def __init__(self, conninfo: str, connect_args: dict[str, Any], timeouts: DbTimeouts) -> None:
        self.conninfo, self.connect_args, self.timeouts = conninfo, connect_args, timeouts
        self._idle: list[Any] = []
        self._slots = asyncio.Semaphore(timeouts.pool_size + timeouts.max_overflow)

    async def get(self) -> Any:
        import psycopg

        if self._slots.locked():  # none free: wait in line, for a bounded time
            try:
                async with asyncio.timeout(self.timeouts.pool_s):
                    await self._slots.acquire()
            except TimeoutError:
                raise StoreUnavailable("every database connection is busy; try again shortly") from None
        else:
            await self._slots.acquire()  # free: returns at once
        try:
            while self._idle:
                conn = self._idle.pop()
                if not _stale(conn):
                    return conn
                await conn.close()
            async with asyncio.timeout(self.timeouts.connect_s + 1.0):
                return await psycopg.AsyncConnection.connect(self.conninfo, **self.connect_args)
        except (psycopg.OperationalError, OSError, TimeoutError) as exc:
            self._slots.release()
            raise _failed(exc) from exc
        except BaseException:
            self._slots.release()
            raise

    async def put(self, conn: Any) -> None:
        from psycopg.pq import TransactionStatus

        try:
            reusable = not conn.closed and conn.pgconn.transaction_status == TransactionStatus.IDLE
            if reusable:
                self._idle.append(conn)
            else:
                await conn.close()
        finally:
            self._slots.release()

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.close()


__all__ = ["PgEventStore"]
