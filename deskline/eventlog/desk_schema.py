"""A desk's own tables: its Alembic folder, upgraded after deskline's, with a version table of its own.

A desk that keeps tables of its own (a system of record, a cache of a CRM) declares the folder of
its Alembic revisions as ``Desk(migrations=Path(...))``: ``<folder>/versions/*.py``, written as
for any Alembic project (``revision``, ``down_revision``, ``upgrade()``), no ``env.py`` needed.
``deskline db upgrade`` runs them after deskline's own, under the same lock, recording the
revision in ``alembic_version_<desk name>`` so the two histories never mix; ``deskline db
current`` reports both; ``deskline serve`` refuses a desk schema that is not at the folder's head
(``SchemaOutOfDate``, naming ``deskline db upgrade``), as it does for deskline's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Column, Connection, Engine, MetaData, String, Table, inspect, select
from sqlalchemy.exc import DBAPIError

from deskline.eventlog.schema import UPGRADE_HINT, SchemaOutOfDate, _unavailable, migration_lock

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from deskline.definition import Desk


def version_table(desk: Desk) -> str:
    """``alembic_version_<name>``: the desk's name folded to lower-case letters, digits and ``_``."""
    return "alembic_version_" + (re.sub(r"[^a-z0-9]+", "_", desk.name.lower()).strip("_") or "desk")


@dataclass(frozen=True, slots=True)
class DeskSchemaState:
    desk: str
    table: str  # the desk's version table
    revision: str | None  # None: never migrated
    head: str | None  # the folder's newest revision

    @property
    def current(self) -> bool:
        return self.revision == self.head

    def describe(self) -> str:
        if self.current:
            return f"at revision {self.head} (head)"
        if self.revision is None:
            return f"not migrated yet (its head is {self.head}): it needs `deskline db upgrade`"
        return f"at revision {self.revision}, not this code's {self.head}: it needs `deskline db upgrade`"

    def to_json(self) -> dict[str, Any]:
        return {"desk": self.desk, "version_table": self.table, "revision": self.revision, "head": self.head,
                "current": self.current, "state": self.describe()}


def _script(folder: Path) -> tuple[Config, ScriptDirectory]:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    folder = Path(folder).resolve()
    cfg = Config()
    cfg.set_main_option("script_location", str(folder))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("version_locations", str(folder / "versions"))
    return cfg, ScriptDirectory.from_config(cfg)


def _revision(conn: Connection, table: str) -> str | None:
    if table not in inspect(conn).get_table_names():
        return None
    version = Table(table, MetaData(), Column("version_num", String(32), primary_key=True))
    rows = conn.execute(select(version.c.version_num)).scalars().all()
    return ",".join(sorted(rows)) or None


def desk_state(engine: Engine, desk: Desk) -> DeskSchemaState | None:
    """Where the desk's own tables are; None for a desk without a migrations folder."""
    if desk.migrations is None:
        return None
    table = version_table(desk)
    head = _script(desk.migrations)[1].get_current_head()
    try:
        with engine.connect() as conn:
            return DeskSchemaState(desk.name, table, _revision(conn, table), head)
    except DBAPIError as exc:
        raise _unavailable(engine, exc) from exc


def check_desk(engine: Engine, desk: Desk) -> DeskSchemaState | None:
    """``SchemaOutOfDate`` unless the desk's own tables are at its folder's head (``serve``)."""
    found = desk_state(engine, desk)
    if found is not None and not found.current:
        raise SchemaOutOfDate(f"desk {desk.name!r}'s own tables are {found.describe()}; {UPGRADE_HINT}",
                              desk=desk.name, revision=found.revision, head=found.head)
    return found


def upgrade_desk(engine: Engine, desk: Desk, revision: str = "head") -> tuple[DeskSchemaState, DeskSchemaState] | None:
    """Run the desk's migrations up to ``revision`` (after deskline's); the state before and after,
    None for a desk without a migrations folder."""
    if desk.migrations is None:
        return None
    from alembic.runtime.environment import EnvironmentContext

    cfg, script = _script(desk.migrations)
    table = version_table(desk)
    head = script.get_current_head()
    try:
        with migration_lock(engine) as conn:
            before = DeskSchemaState(desk.name, table, _revision(conn, table), head)

            def steps(rev: Any, _context: Any) -> Any:
                return script._upgrade_revs(revision, rev)

            with EnvironmentContext(cfg, script, fn=steps, destination_rev=revision) as env:
                env.configure(connection=conn, version_table=table,
                              render_as_batch=conn.dialect.name == "sqlite")
                with env.begin_transaction():
                    env.run_migrations()
            conn.commit()
            after = DeskSchemaState(desk.name, table, _revision(conn, table), head)
    except DBAPIError as exc:
        raise _unavailable(engine, exc) from exc
    return before, after


__all__ = ["DeskSchemaState", "check_desk", "desk_state", "upgrade_desk", "version_table"]
