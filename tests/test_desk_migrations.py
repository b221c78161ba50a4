"""A desk's own tables: its Alembic folder, upgraded after deskline's, with its own version table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from deskline.eventlog.database import make_engine
from deskline.eventlog.desk_schema import check_desk, desk_state, upgrade_desk, version_table
from deskline.eventlog.schema import HEAD, SchemaOutOfDate
from deskline.eventlog.store import SqlEventStore
from tests.desks.ledger import desk as ledger

REPO = Path(__file__).resolve().parent.parent
LEDGER = "tests.desks.ledger:desk"


def _cli(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DESKLINE_DATABASE_URL": url, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "deskline.cli", *args], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def test_a_desk_table_is_made_by_its_own_folder_with_its_own_version_table(database_url: str) -> None:
    """Before: refused (not migrated); upgrade_desk makes the table and records the desk's revision
    apart from deskline's; after: accepted, and a second upgrade finds nothing to do."""
    engine = make_engine(database_url)
    SqlEventStore(engine)  # deskline's own tables, at HEAD
    with pytest.raises(SchemaOutOfDate) as err:
        check_desk(engine, ledger)
    assert "deskline db upgrade" in err.value.message and "ledger" in err.value.message
    before, after = upgrade_desk(engine, ledger) or (None, None)
    assert before is not None and after is not None
    assert (before.revision, after.revision, after.head) == (None, "0001", "0001")
    assert version_table(ledger) == "alembic_version_ledger"
    tables = set(inspect(engine).get_table_names())
    assert {"ledger_notes", "alembic_version_ledger", "alembic_version"} <= tables
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == HEAD
    assert check_desk(engine, ledger) == after
    again = upgrade_desk(engine, ledger)
    assert again is not None and again[0].revision == again[1].revision == "0001"


def test_a_desk_without_a_folder_has_no_desk_schema(sqlite_url: str) -> None:
    """The built-in desk keeps no tables of its own: nothing to report, check or upgrade."""
    from deskline.agents.builtin import desk as builtin

    engine = make_engine(sqlite_url)
    assert builtin.migrations is None
    assert desk_state(engine, builtin) is None and check_desk(engine, builtin) is None
    assert upgrade_desk(engine, builtin) is None


def test_db_commands_and_serve_handle_the_desk_schema(sqlite_url: str) -> None:
    """`db current` reports the desk's schema beside deskline's (exit 2 until upgraded), `serve`
    refuses a desk schema behind its code, `db upgrade` migrates deskline's then the desk's."""
    SqlEventStore(make_engine(sqlite_url))
    behind = _cli("db", "current", "--json", "--desk", LEDGER, url=sqlite_url)
    assert behind.returncode == 2, behind.stderr
    report = json.loads(behind.stdout)
    assert report["current"] and report["desk"]["revision"] is None and not report["desk"]["current"]
    refused = _cli("serve", "--desk", LEDGER, "--port", "1", url=sqlite_url)
    assert refused.returncode == 1 and "deskline db upgrade" in refused.stderr, refused.stderr
    upgraded = _cli("db", "upgrade", "--desk", LEDGER, url=sqlite_url)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "desk ledger: upgraded from empty to 0001" in upgraded.stdout
    now = _cli("db", "current", "--desk", LEDGER, url=sqlite_url)
    assert now.returncode == 0 and "desk ledger: 0001" in now.stdout
