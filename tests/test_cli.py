"""The ``deskline`` command, run as a user runs it: a real process on a real SQLite file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

DESKLINE = [sys.executable, "-m", "deskline.cli"]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The environment of a user with the database in a temporary directory."""
    return {**os.environ, "DESKLINE_DATABASE_URL": f"sqlite:///{tmp_path}/desk.db"}


def ask(env: dict[str, str], *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*DESKLINE, "ask", *args], env=env, input=stdin, capture_output=True, timeout=60)


def ask_json(env: dict[str, str], *args: str) -> dict[str, object]:
    done = ask(env, *args, "--json")
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def event_count(env: dict[str, str]) -> int:
    engine = create_engine(env["DESKLINE_DATABASE_URL"])
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM events")).scalar_one())


def test_duplicate_charge_is_answered_by_billing_with_the_invoice_facts(env: dict[str, str]) -> None:
    """The README's first example: billing answers with INV-1001's facts, no model calls."""
    out = ask_json(env, "I was charged twice for invoice INV-1001")
    assert out["department"] == "billing" and out["mode"] == "single"
    assert "INV-1001" in str(out["reply"]) and "$49.00" in str(out["reply"])
    assert out["llm_calls"] == 0 and out["escalated"] is False
    assert isinstance(out["events"], int) and out["events"] == event_count(env) > 3


@pytest.mark.parametrize(
    ("text", "department"),
    [("I forgot my password and can't log in", "tech"), ("my transfer to my landlord hasn't arrived", "payment")],
)
def test_routes_to_the_right_department(env: dict[str, str], text: str, department: str) -> None:
    """Password trouble goes to tech, a missing transfer to payment."""
    out = ask_json(env, text)
    assert out["department"] == department and out["escalated"] is False
    assert out["reply"]


def test_request_for_a_person_escalates(env: dict[str, str]) -> None:
    """Asking for a real person escalates, and the escalation is in the log."""
    out = ask_json(env, "I want to talk to a real person")
    assert (out["department"], out["mode"], out["escalated"]) == ("human", "escalate", True)
    assert "person" in str(out["reply"]).lower() or "team" in str(out["reply"]).lower()
    engine = create_engine(env["DESKLINE_DATABASE_URL"])
    with engine.connect() as conn:
        kinds = [r[0] for r in conn.execute(text("SELECT type FROM events ORDER BY id"))]
    assert "escalation_requested" in kinds


def test_conversation_continues_with_its_id(env: dict[str, str]) -> None:
    """Reusing --conversation appends a second turn to the same conversation."""
    first = ask_json(env, "is the service down?")
    second = ask_json(env, "thanks, and what about invoice INV-1001?", "--conversation", str(first["conversation_id"]))
    assert second["conversation_id"] == first["conversation_id"]
    assert second["turn"] == 2


@pytest.mark.parametrize(
    ("args", "stdin", "words"),
    [
        (["   "], None, "empty"),
        (["x" * 4001], None, "limit"),
        (["-"], b"refund \xff\xfe please", "UTF-8"),
    ],
)
def test_bad_input_is_refused_and_appends_nothing(env: dict[str, str], args: list[str], stdin: bytes | None,
                                                  words: str) -> None:
    """Empty, oversized and non-UTF-8 messages exit non-zero with a clear message and no events."""
    ask_json(env, "hello")  # the database exists and has one turn
    before = event_count(env)
    done = ask(env, *args, stdin=stdin)
    assert done.returncode == 2
    assert words in done.stderr.decode()
    assert b"Traceback" not in done.stderr
    assert event_count(env) == before


def test_plain_output_is_the_reply(env: dict[str, str]) -> None:
    """Without --json the command prints the reply text on stdout."""
    done = ask(env, "I was charged twice for invoice INV-1001")
    assert done.returncode == 0
    assert "INV-1001" in done.stdout.decode()
