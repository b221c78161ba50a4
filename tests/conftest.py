"""Shared fixtures: offline by default, real databases when the test asks for them.

PostgreSQL tests talk to the server on 127.0.0.1:5432 (trust auth, database ``test``). Outside
CI they skip with a stated reason when no server answers; with ``DESKLINE_REQUIRE_SERVICES=1``
(set by ``.ci/run``) an unreachable server fails the test instead, so CI never passes by skipping.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pydantic_ai.models

# No test may reach a real provider: pydantic-ai's own models refuse to send requests. The
# desk's RouterModel goes through litellm to the project's fake server on loopback instead.
pydantic_ai.models.ALLOW_MODEL_REQUESTS = False

POSTGRES_URL = os.environ.get(
    "DESKLINE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("DESKLINE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _services_required() -> bool:
    return os.environ.get("DESKLINE_REQUIRE_SERVICES", "") not in ("", "0", "false")


def service_unavailable(what: str, why: object) -> None:
    """Skip, or fail under CI, because a real service did not answer."""
    message = f"{what} not reachable, skipping: {why}"
    if _services_required():
        pytest.fail(f"{message} (DESKLINE_REQUIRE_SERVICES is set)")
    pytest.skip(message)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL URL with a fresh schema of its own, dropped afterwards."""
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - dev extra not installed
        service_unavailable("PostgreSQL (psycopg)", exc)
    base = POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(base, connect_timeout=3, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
    except psycopg.OperationalError as exc:
        service_unavailable("PostgreSQL at 127.0.0.1:5432", exc)
    sep = "&" if "?" in POSTGRES_URL else "?"
    yield f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}"
    with psycopg.connect(base, connect_timeout=3, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def sqlite_url(tmp_path: object) -> str:
    """A fresh SQLite file in the test's temporary directory."""
    return f"sqlite:///{tmp_path}/desk.db"


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Each real database the desk supports, one after the other."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("postgres_url"))
