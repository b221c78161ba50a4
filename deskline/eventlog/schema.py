"""Which schema revision a database is at, and bringing it to the one this code expects.

The tables deskline owns (the event log, open turns, conversation tokens, agent keys and the
built-in desk's ``sor_*`` system of record) are versioned by Alembic (``deskline/migrations``),
with the revision in ``alembic_version``. Start-up (``prepare``) never migrates a database that
already has data:

- a brand-new database (none of the tables, no revision) is created at ``HEAD`` and stamped;
- a database at ``HEAD`` is used as it is;
- anything else (an older revision, or tables made by 0.1.0 with no revision at all) raises
  ``SchemaOutOfDate``, whose message says to run ``deskline db upgrade``.

``upgrade`` (``deskline db upgrade``) runs the migrations under a lock (a PostgreSQL advisory
lock, or a lock file beside a SQLite file), so two processes never migrate at once. Importing
this module does not import Alembic: only ``upgrade`` and ``alembic_config`` do.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
from sqlalchemy import Column, Connection, Engine, MetaData, String, Table, inspect, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, ProgrammingError

from deskline.errors import DesklineError, StoreUnavailable

if TYPE_CHECKING:
    from alembic.config import Config

log = structlog.get_logger("deskline.schema")

HEAD = "0001"  # the newest revision in deskline/migrations/versions (tests/test_migrations.py checks)
VERSION_TABLE = "alembic_version"
MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
_LOCK_KEY = 0x6465736B6C696E  # "deskline": the PostgreSQL advisory lock of migrations
UPGRADE_HINT = "run `deskline db upgrade` (with the same DESKLINE_DATABASE_URL), then start again"


class SchemaOutOfDate(DesklineError):
    """The database's schema is not the one this code was written for."""

    code = "schema_out_of_date"


@dataclass(frozen=True, slots=True)
class SchemaState:
    revision: str | None  # what alembic_version says, None without one
    tables: frozenset[str]  # which of deskline's tables exist

    @property
    def empty(self) -> bool:
        return self.revision is None and not self.tables

    @property
    def current(self) -> bool:
        return self.revision == HEAD

    def describe(self) -> str:
        if self.current:
            return f"at revision {HEAD} (head)"
        if self.empty:
            return "empty: no deskline tables yet"
        if self.revision is None:
            return "made by deskline 0.1.0 (tables without a revision): it needs `deskline db upgrade`"
        if self.revision in known_revisions():
            return f"at revision {self.revision}, older than this code's {HEAD}: it needs `deskline db upgrade`"
        return f"at revision {self.revision}, which this code does not know (a newer deskline migrated it)"


def owned_tables() -> list[Table]:
    """The tables of the current models that the migrations create (``deskline.migrations.tables``:
    the framework's own and the shipped desk's system of record)."""
    from deskline.migrations.tables import owned_tables as tables

    return tables()


def target_metadata() -> MetaData:
    """One ``MetaData`` holding every owned table (for autogenerate and comparisons)."""
    md = MetaData()
    for table in owned_tables():
        table.to_metadata(md)
    return md


def known_revisions() -> set[str]:
    return {p.name.split("_", 1)[0] for p in (MIGRATIONS / "versions").glob("[0-9]*_*.py")}


def database_url() -> str:
    from deskline.config import Settings

    return Settings.from_env().database_url


_VERSION = Table(VERSION_TABLE, MetaData(), Column("version_num", String(32), primary_key=True))
_ready: weakref.WeakSet[Engine] = weakref.WeakSet()  # engines whose database was found at HEAD
_ready_lock = threading.Lock()


def read_state(conn: Connection) -> SchemaState:
    names = set(inspect(conn).get_table_names())
    revision = None
    if VERSION_TABLE in names:
        rows = conn.execute(select(_VERSION.c.version_num)).scalars().all()
        revision = rows[0] if len(rows) == 1 else (",".join(sorted(rows)) or None)
    owned = {t.name for t in owned_tables()}
    return SchemaState(revision, frozenset(names & owned))


def state(engine: Engine) -> SchemaState:
    try:
        with engine.connect() as conn:
            return read_state(conn)
    except DBAPIError as exc:
        raise _unavailable(engine, exc) from exc


def _unavailable(engine: Engine, exc: DBAPIError) -> StoreUnavailable:
    # The driver's text names hosts and ports: it goes to the log, never into a message.
    log.error("db.unavailable", url=engine.url.render_as_string(hide_password=True),
              error=type(exc.orig or exc).__name__, detail=str(exc.orig or exc)[:300])
    return StoreUnavailable("cannot reach the database (the driver's error is in the log)")


def prepare(engine: Engine) -> SchemaState | None:
    """Make sure ``engine``'s database has the schema of this code: create it when the database
    is brand-new, else ``SchemaOutOfDate``. Checked once per engine."""
    if engine in _ready:
        return None
    found = state(engine)
    if found.empty:
        with migration_lock(engine) as conn:
            found = read_state(conn)  # another process may have created it while we waited
            if found.empty:
                _create_fresh(conn)
                found = SchemaState(HEAD, frozenset(t.name for t in owned_tables()))
    check(found)
    with _ready_lock:
        _ready.add(engine)
    return found


def check(found: SchemaState) -> None:
    if not found.current:
        raise SchemaOutOfDate(f"the database is {found.describe()}; {UPGRADE_HINT}",
                              revision=found.revision, head=HEAD)


def _create_fresh(conn: Connection) -> None:
    """A new database: the current models' tables, stamped at HEAD (what the migrations make)."""
    for attempt in range(3):
        try:
            for table in owned_tables():
                table.create(conn, checkfirst=True)
            _VERSION.create(conn, checkfirst=True)
            conn.execute(_VERSION.insert().values(version_num=HEAD))
            conn.commit()
            return
        except (OperationalError, ProgrammingError, IntegrityError) as exc:
            conn.rollback()
            if ("already exists" not in str(exc) and "duplicate" not in str(exc).lower()) or attempt == 2:
                raise
            # In-memory or lock-less SQLite racing another connection: look again.
            if read_state(conn).current:
                return


@contextlib.contextmanager
def migration_lock(engine: Engine) -> Iterator[Connection]:
    """A connection that alone may change the schema until the block ends."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _LOCK_KEY})
            conn.commit()
            try:
                yield conn
            finally:
                conn.rollback()
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _LOCK_KEY})
                conn.commit()
        return
    path = engine.url.database
    if engine.dialect.name != "sqlite" or not path or path == ":memory:":
        with engine.connect() as conn:
            yield conn
        return
    import fcntl

    with open(f"{path}.migrate-lock", "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            with engine.connect() as conn:
                yield conn
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def alembic_config(url: str | None = None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("version_locations", str(MIGRATIONS / "versions"))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> tuple[SchemaState, SchemaState]:
    """Run the migrations up to ``revision``; the state before and after."""
    from alembic import command

    try:
        with migration_lock(engine) as conn:
            before = read_state(conn)
            if before.revision is not None and before.revision not in known_revisions():
                raise SchemaOutOfDate(f"the database is {before.describe()}: upgrade deskline instead")
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
            conn.commit()
            after = read_state(conn)
    except DBAPIError as exc:
        raise _unavailable(engine, exc) from exc
    with _ready_lock:
        _ready.discard(engine)
    return before, after


def _reset_cache() -> None:  # tests
    with _ready_lock:
        _ready.clear()


__all__ = ["HEAD", "SchemaOutOfDate", "SchemaState", "check", "owned_tables", "prepare", "state", "upgrade"]
