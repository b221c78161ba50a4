"""Engines for the one database that holds the event log and the demo system of record.

SQLite (a file, WAL, or ``sqlite://`` in memory) by default; PostgreSQL through
``postgresql+psycopg://``. No engine is created at import.

Every wait on the database is bounded, so a database that stops answering costs a request a
few seconds and a 503, never a thread forever:

| variable | default | meaning |
| --- | --- | --- |
| ``DESKLINE_DB_CONNECT_TIMEOUT_S`` | 3 | PostgreSQL: opening a connection (TCP, TLS, auth) |
| ``DESKLINE_DB_STATEMENT_TIMEOUT_S`` | 5 | PostgreSQL: the server cancels longer statements; the client drops a
  connection whose round trip got no answer for this + 1 s (a hung proxy the server never hears of) |
| ``DESKLINE_DB_POOL_TIMEOUT_S`` | 3 | waiting for a free pooled connection when all are in use |
| ``DESKLINE_DB_BUSY_TIMEOUT_S`` | 10 | SQLite: waiting for another process's write lock |
| ``DESKLINE_DB_POOL_SIZE`` / ``DESKLINE_DB_MAX_OVERFLOW`` | 5 / 10 | PostgreSQL connections kept / extra, per process |

A value in the URL (``?connect_timeout=2``, ``?options=-c statement_timeout=...``) wins over
the variable.

``make_async_engine`` makes the asyncio twin (psycopg 3 async, or aiosqlite) that the desk's turns
use, with the same settings and its own pool of the same size. A pooled PostgreSQL connection is
checked on checkout without a round trip (``_stale``: its socket must have nothing to read while
idle), instead of ``pool_pre_ping``'s extra query on every checkout.
"""

from __future__ import annotations

import os
import time
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.pool import StaticPool

from deskline.errors import ConfigError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine


@dataclass(frozen=True, slots=True)
class DbTimeouts:
    connect_s: float = 3.0
    statement_s: float = 5.0
    pool_s: float = 3.0
    busy_s: float = 10.0
    pool_size: int = 5
    max_overflow: int = 10

    @property
    def round_trip_s(self) -> float:
        """How long the client waits for any answer before dropping the connection."""
        return self.statement_s + 1.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DbTimeouts:
        env = os.environ if env is None else env
        base = cls()
        names = {"connect_s": "CONNECT_TIMEOUT_S", "statement_s": "STATEMENT_TIMEOUT_S", "pool_s": "POOL_TIMEOUT_S",
                 "busy_s": "BUSY_TIMEOUT_S", "pool_size": "POOL_SIZE", "max_overflow": "MAX_OVERFLOW"}
        values: dict[str, Any] = {}
        for field, suffix in names.items():
            raw = env.get(f"DESKLINE_DB_{suffix}", "").strip()
            if not raw:
                continue
            try:
                value = int(raw) if field in ("pool_size", "max_overflow") else float(raw)
            except ValueError as exc:
                raise ConfigError(f"DESKLINE_DB_{suffix} must be a number, not {raw!r}") from exc
            if value < 0 or (value == 0 and field != "max_overflow"):
                raise ConfigError(f"DESKLINE_DB_{suffix} must be > 0 (DESKLINE_DB_MAX_OVERFLOW: >= 0)")
            values[field] = value
        return cls(**{**{f: getattr(base, f) for f in names}, **values})


def make_engine(url: str, timeouts: DbTimeouts | None = None) -> Engine:
    """An engine for ``url`` with the settings the desk relies on."""
    timeouts = timeouts or DbTimeouts.from_env()
    if url.startswith("sqlite"):
        memory = url in ("sqlite://", "sqlite:///:memory:")
        kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False, "timeout": timeouts.busy_s}}
        if memory:
            kwargs["poolclass"] = StaticPool
        else:
            kwargs["pool_timeout"] = timeouts.pool_s
        engine = create_engine(url, **kwargs)
        busy_ms = int(timeouts.busy_s * 1000)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            if not memory:
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute(f"PRAGMA busy_timeout={busy_ms}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    if url.startswith("postgresql"):
        return _postgres(url, timeouts)
    raise ConfigError(
        f"unsupported database URL {url!r}: use sqlite:///FILE or postgresql+psycopg://...",
        url=url,
    )


def _pg_connect_args(url: str, timeouts: DbTimeouts) -> dict[str, Any]:
    query = make_url(url).query
    connect_args: dict[str, Any] = {}
    if "connect_timeout" not in query:
        connect_args["connect_timeout"] = max(1, round(timeouts.connect_s))  # libpq takes whole seconds
    options = query.get("options", "")
    options = options if isinstance(options, str) else " ".join(options)
    if "statement_timeout" not in options:
        connect_args["options"] = f"{options} -c statement_timeout={int(timeouts.statement_s * 1000)}".strip()
    return connect_args


def _stale(dbapi_conn: Any) -> bool:
    """A pooled PostgreSQL connection the server has closed (restart, idle timeout, failover).

    An idle connection has nothing to read: a readable socket means the server hung up (or sent
    a notice), so the connection is replaced. No round trip, unlike ``pool_pre_ping``, which
    costs one query on every checkout, a third of a turn's database time.
    """
    import select

    driver = getattr(dbapi_conn, "driver_connection", dbapi_conn)
    pgconn = getattr(driver, "pgconn", None)
    if pgconn is None:
        return False
    if driver.closed or pgconn.status != 0:  # 0: CONNECTION_OK
        return True
    try:
        readable, _, _ = select.select([pgconn.socket], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _check_out(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
    if _stale(dbapi_conn):
        raise DisconnectionError("the pooled connection was closed by the server")  # the pool reconnects


def _postgres(url: str, timeouts: DbTimeouts) -> Engine:
    engine = create_engine(url, pool_size=timeouts.pool_size, max_overflow=timeouts.max_overflow,
                           pool_timeout=timeouts.pool_s, connect_args=_pg_connect_args(url, timeouts))
    event.listen(engine, "checkout", _check_out)
    if engine.dialect.driver == "psycopg":
        deadline_cls = _deadline_connection(timeouts.round_trip_s)

        @event.listens_for(engine, "do_connect")
        def _connect(_dialect: Any, _record: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
            return deadline_cls.connect(*cargs, **cparams)

    return engine


def make_async_engine(url: str, timeouts: DbTimeouts | None = None) -> AsyncEngine:
    """The asyncio engine for ``url``: psycopg 3 async for PostgreSQL, aiosqlite for a SQLite file.

    Connections are in autocommit mode: a read is one round trip, and the store's writes are
    single statements (PostgreSQL) or explicit transactions (SQLite). Every round trip is bounded
    by the caller (``asyncio.timeout``), on top of the server's ``statement_timeout``.
    """
    from sqlalchemy.ext.asyncio import create_async_engine

    timeouts = timeouts or DbTimeouts.from_env()
    parsed = make_url(url)
    if parsed.drivername.startswith("sqlite"):
        if parsed.database in (None, "", ":memory:"):
            raise ConfigError("the asyncio store needs a SQLite file, not an in-memory database", url=url)
        engine = create_async_engine(parsed.set(drivername="sqlite+aiosqlite"), pool_timeout=timeouts.pool_s,
                                     connect_args={"timeout": timeouts.busy_s})
        busy_ms = int(timeouts.busy_s * 1000)

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # autocommit: the store opens its own transactions
            cur = dbapi_conn.cursor()
            for pragma in ("journal_mode=WAL", "synchronous=NORMAL", f"busy_timeout={busy_ms}", "foreign_keys=ON"):
                cur.execute(f"PRAGMA {pragma}")
            cur.close()

        return engine
    if parsed.drivername.startswith("postgresql"):
        engine = create_async_engine(parsed.set(drivername="postgresql+psycopg"), pool_size=timeouts.pool_size,
                                     max_overflow=timeouts.max_overflow, pool_timeout=timeouts.pool_s,
                                     connect_args=_pg_connect_args(url, timeouts), isolation_level="AUTOCOMMIT")
        event.listen(engine.sync_engine, "checkout", _check_out)
        return engine
    raise ConfigError(f"unsupported database URL {url!r}: use sqlite:///FILE or postgresql+psycopg://...", url=url)


_DEADLINE_CLASSES: dict[float, Any] = {}


def _deadline_connection(round_trip_s: float) -> Any:
    """A psycopg connection whose every round trip gives up after ``round_trip_s``.

    The server's ``statement_timeout`` cannot help when the server never receives the statement
    (a proxy or network that accepts bytes and forwards nothing): then only the client can stop
    waiting. The connection is closed on the spot (its protocol state is unknown), so the pool
    discards it, and the caller sees ``OperationalError``, which the store turns into a 503.
    """
    if round_trip_s in _DEADLINE_CLASSES:
        return _DEADLINE_CLASSES[round_trip_s]
    import psycopg
    from psycopg import errors as pg_errors

    class DeadlineConnection(psycopg.Connection[Any]):
        def wait(self, gen: Generator[Any, Any, Any], interval: float = 0.1, timeout: float | None = None) -> Any:
            started = time.monotonic()
            try:
                return super().wait(gen, interval=interval, timeout=timeout or round_trip_s)
            except pg_errors._WaitTimeout:
                self.pgconn.finish()
                raise psycopg.OperationalError(
                    f"no answer from the database within {time.monotonic() - started:.1f} s; connection dropped"
                ) from None

    _DEADLINE_CLASSES[round_trip_s] = DeadlineConnection
    return DeadlineConnection
