"""Schema migrations: a new database, one made by the released code, the CLI and ``serve``'s check."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from deskline.eventlog import schema
from deskline.eventlog.database import make_engine
from deskline.eventlog.schema import HEAD, SchemaOutOfDate
from deskline.eventlog.store import SqlEventStore
from tests.conftest import service_unavailable

REPO = Path(__file__).resolve().parent.parent


def _cli(*args: str, url: str, cwd: Path | None = None, pythonpath: Path | None = None,
         timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DESKLINE_DATABASE_URL": url}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run([sys.executable, "-m", "deskline.cli", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def _diffs(url: str) -> list[object]:
    """What differs between the database's schema and the current models (alembic's comparison)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine = make_engine(url)
    with engine.connect() as conn:
        found = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}),
                                 schema.target_metadata())
    engine.dispose()
    return [d for d in found
            if not (isinstance(d, tuple) and d[0] == "remove_table" and d[1].name == "alembic_version")]


def test_head_is_the_newest_migration() -> None:
    from alembic.script import ScriptDirectory

    assert ScriptDirectory.from_config(schema.alembic_config()).get_current_head() == HEAD


def test_a_new_database_is_created_at_head_and_matches_the_migrations(database_url: str, tmp_path: Path) -> None:
    engine = make_engine(database_url)
    SqlEventStore(engine)  # brand-new: created from the models and stamped
    assert schema.state(engine).revision == HEAD
    assert _diffs(database_url) == []
    engine.dispose()


def test_upgrade_of_an_empty_database_gives_the_models_schema(database_url: str) -> None:
    engine = make_engine(database_url)
    before, after = schema.upgrade(engine)
    assert before.empty and after.revision == HEAD
    assert {t.name for t in schema.owned_tables()} <= after.tables
    assert _diffs(database_url) == []
    assert schema.upgrade(engine)[1].revision == HEAD  # twice: nothing to do
    engine.dispose()


RELEASED = "6db2e3775d0a4007d9aae58503cc768fb8839412"  # main as it last landed before schema migrations (0.1.0)


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """deskline 0.1.0 as released before migrations existed (``git archive RELEASED``): the code that
    made today's databases."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        # Outside a checkout (an sdist, say) there is no released code to run; under CI this fails.
        service_unavailable("a git checkout with the released code", REPO)
    where = tmp_path_factory.mktemp("released")
    archive = subprocess.run(["git", "-C", str(REPO), "archive", RELEASED, "deskline"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive.stdout, check=True)
    assert not (where / "deskline" / "migrations").exists()
    return where


@pytest.mark.slow
def test_a_database_made_by_the_released_code_is_refused_then_upgraded(
    database_url: str, released: Path, tmp_path: Path
) -> None:
    made = _cli("ask", "I was charged twice", "--json", url=database_url, cwd=released, pythonpath=released)
    assert made.returncode == 0, made.stderr
    conversation = json.loads(made.stdout)["conversation_id"]
    agent = _cli("agents", "add", "Ann", url=database_url, cwd=released, pythonpath=released)
    assert agent.returncode == 0, agent.stderr

    engine = make_engine(database_url)
    found = schema.state(engine)
    assert found.revision is None and "events" in found.tables
    with pytest.raises(SchemaOutOfDate, match="deskline db upgrade"):
        SqlEventStore(engine)

    current = _cli("db", "current", url=database_url, cwd=tmp_path)
    assert current.returncode == 2 and "deskline db upgrade" in current.stdout
    refused = _cli("serve", "--port", "1", url=database_url, cwd=tmp_path)
    assert refused.returncode == 1
    assert "run `deskline db upgrade`" in refused.stderr and "Traceback" not in refused.stderr

    up = _cli("db", "upgrade", url=database_url, cwd=tmp_path)
    assert up.returncode == 0, up.stderr
    assert f"to {HEAD}" in up.stdout
    assert _cli("db", "current", url=database_url, cwd=tmp_path).returncode == 0

    schema._reset_cache()
    engine = make_engine(database_url)
    store = SqlEventStore(engine)
    assert "customer_messaged" in [r.event.type for r in store.load(conversation)]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT name FROM human_agents")).scalars().all() == ["Ann"]
    assert _diffs(database_url) == []
    engine.dispose()


def test_partial_0_1_0_tables_are_adopted_and_the_missing_ones_created(sqlite_url: str) -> None:
    from deskline.api.auth import AGENTS, TOKENS

    engine = make_engine(sqlite_url)
    with engine.begin() as conn:  # what `deskline agents add` made on 0.1.0, before any chat
        TOKENS.create(conn)
        AGENTS.create(conn)
    with pytest.raises(SchemaOutOfDate, match=r"made by deskline 0\.1\.0"):
        schema.prepare(engine)
    _, after = schema.upgrade(engine)
    assert after.revision == HEAD and "events" in after.tables
    schema._reset_cache()
    assert schema.prepare(engine) is not None


def test_a_table_not_made_by_deskline_is_not_adopted(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE events (id INTEGER PRIMARY KEY, payload TEXT)"))
    with pytest.raises(RuntimeError, match="lacks column"):
        schema.upgrade(engine)
    assert schema.state(engine).revision is None  # nothing stamped


def test_a_revision_this_code_does_not_know_is_refused(sqlite_url: str, tmp_path: Path) -> None:
    engine = make_engine(sqlite_url)
    SqlEventStore(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    schema._reset_cache()
    with pytest.raises(SchemaOutOfDate, match="newer deskline"):
        SqlEventStore(engine)
    current = _cli("db", "current", url=sqlite_url, cwd=tmp_path)
    assert current.returncode == 2 and "0099" in current.stdout
    up = _cli("db", "upgrade", url=sqlite_url, cwd=tmp_path)
    assert up.returncode == 1 and "upgrade deskline instead" in up.stderr


def test_db_commands_say_so_when_the_database_cannot_be_reached(tmp_path: Path) -> None:
    url = "postgresql+psycopg://nobody@127.0.0.1:1/none"
    for args in (("db", "current"), ("db", "upgrade")):
        result = _cli(*args, url=url, cwd=tmp_path)
        assert result.returncode == 1
        assert "cannot reach the database" in result.stderr and "Traceback" not in result.stderr
        assert "127.0.0.1:1" not in result.stderr.split("error:", 1)[1].splitlines()[0]
