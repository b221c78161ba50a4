"""A desk of another domain (tests/desks/telco.py), end to end through the public surfaces:
``deskline train``, the turn, the CLI (ask, replay, explain, eval), and the HTTP API."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from deskline import Settings, load_desk, memory_desk
from deskline.api import create_app
from deskline.cli import app as cli_app
from tests.desks import telco

ROOT = Path(__file__).resolve().parents[1]
DESKS = ROOT / "tests" / "desks"
SPEC = "tests.desks.telco:desk"


@pytest.fixture(scope="module")
def router(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The telco router, trained with ``deskline train`` on the desk's own examples."""
    out = tmp_path_factory.mktemp("telco") / "telco.bin"
    examples = str(DESKS / "telco_examples.csv")
    result = CliRunner().invoke(cli_app, ["train", examples, "--out", str(out), "--folds", "3"])
    assert result.exit_code == 0, result.output
    assert out.is_file()
    return out


@pytest.fixture
def desk(router: Path):  # type: ignore[no-untyped-def]
    return memory_desk(Settings(router_path=router), desk=telco.desk)


def say(desk, text: str, cid: str = "c1"):  # type: ignore[no-untyped-def]
    return asyncio.run(desk.handle(cid, text))


def test_the_desk_routes_to_its_own_agents_and_answers_from_its_records(desk) -> None:  # type: ignore[no-untyped-def]
    """Its departments, skills and templates answer: no built-in name appears anywhere."""
    r = say(desk, "how much data is left on LN-5551")
    assert (r.department, r.mode) == ("plans", "single")
    assert r.reply == "Line LN-5551 is active on Unlimited Talk 10 GB, with 2 GB of data left."
    r = say(desk, "there's no signal at all near the harbour", "c2")
    assert r.department == "network" and "OUT-88" in (r.reply or "")


def test_an_action_runs_once_and_a_missing_entity_is_asked_for_in_the_desks_words(desk) -> None:  # type: ignore[no-untyped-def]
    """Adding data asks for the line first (the entity's own question), then acts once."""
    first = say(desk, "please add a data pack to my line")
    assert first.reply == "Which line is this about? Its number starts with LN-."
    done = say(desk, "it's LN-5551")
    assert "you now have 7 GB left" in (done.reply or "")
    assert len(desk.records.ledger) == 1
    assert desk.records.lines["LN-5551"].data_left_gb == 7


def test_the_desks_escalation_rule_carries_its_reason_reply_and_priority(desk) -> None:  # type: ignore[no-untyped-def]
    """A threat to leave matches the desk's own rule: its reply, priority 1, its reason recorded."""
    from deskline.eventlog.events import EscalationRequested

    r = say(desk, "I will cancel my contract and switch to another provider")
    assert r.escalated and r.reply == telco.CANCEL_THREAT.reply
    esc = next(x.event for x in desk.store.load("c1") if isinstance(x.event, EscalationRequested))
    assert (esc.priority, esc.rule, esc.reason) == (1, "cancellation_threat", "the customer threatens to leave")


def test_out_of_scope_uses_the_desks_texts(desk) -> None:  # type: ignore[no-untyped-def]
    """Off-topic messages get the desk's own out-of-scope text; unclear ones its own question."""
    assert say(desk, "what's the weather tomorrow").reply == telco.desk.texts.out_of_scope
    assert say(desk, "hmm", "c2").reply == telco.desk.texts.clarify


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "deskline.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})


def test_cli_ask_replay_and_explain_with_desk_and_router(router: Path, tmp_path: Path) -> None:
    """``--desk``/``--router`` and ``DESKLINE_DESK``/``DESKLINE_ROUTER`` choose the desk for every command."""
    env = {"DESKLINE_DATABASE_URL": f"sqlite:///{tmp_path}/telco.db"}
    asked = _cli("ask", "how much data is left on LN-5551", "--json", "--desk", SPEC, "--router", str(router), env=env)
    assert asked.returncode == 0, asked.stderr
    turn = json.loads(asked.stdout)
    assert turn["department"] == "plans" and "2 GB" in turn["reply"]
    by_env = {**env, "DESKLINE_DESK": SPEC, "DESKLINE_ROUTER": str(router)}
    again = _cli("ask", "and is the network down?", "-c", turn["conversation_id"], "--json", env=by_env)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["department"] == "network"
    replayed = _cli("replay", turn["conversation_id"], "--json", env=by_env)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert json.loads(replayed.stdout)["changed"] == []
    explained = _cli("explain", turn["conversation_id"], env=by_env)
    assert explained.returncode == 0 and "plans.line_status" in explained.stdout


def test_cli_refuses_a_broken_desk_with_every_problem(tmp_path: Path) -> None:
    """The telco desk without a router cannot run: exit 1 and the problem, no traceback."""
    broken = _cli("ask", "hello", "--desk", SPEC, env={"DESKLINE_DATABASE_URL": f"sqlite:///{tmp_path}/x.db"})
    assert broken.returncode == 1
    assert "desk 'telco' is not valid" in broken.stderr and "no router file" in broken.stderr
    assert "Traceback" not in broken.stderr


def test_eval_scores_the_desks_own_departments(router: Path) -> None:
    """``deskline eval --desk`` takes the desk's departments and entities and scores them."""
    done = _cli("eval", "--desk", SPEC, "--router", str(router), "--dataset", str(DESKS / "telco_eval.jsonl"), "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert {"network", "plans"} <= set(summary["per_department"])
    assert summary["macro_f1"] >= 0.8
    assert summary["entities"] == {"pass_rate": 1.0, "n": 3} and summary["reply_facts"]["pass_rate"] == 1.0
    builtin = _cli("eval", "--dataset", str(DESKS / "telco_eval.jsonl"), "--json")
    assert builtin.returncode == 2 and "network, plans are not the desk's" in builtin.stderr


def test_the_http_api_serves_a_desk_built_in_code(router: Path, tmp_path: Path) -> None:
    """``create_app(settings, desk=telco)`` answers over real HTTP with the desk's departments."""
    from tests.test_api import serve

    from deskline.api import WebSettings
    from tests.test_api import JWT, customer_token

    settings = Settings(database_url=f"sqlite:///{tmp_path}/web.db", router_path=router)
    app = create_app(settings, desk=telco.desk, web=WebSettings(**JWT))
    with serve(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        opened = http.post("/v1/conversations", json={"customer_token": customer_token("T-1")})
        assert opened.status_code == 201, opened.text
        cid, token = opened.json()["id"], opened.json()["token"]
        r = http.post(f"/v1/conversations/{cid}/messages", headers={"Authorization": f"Bearer {token}"},
                      json={"text": "what plan is line LN-5552 on"})
        assert r.status_code == 200, r.text
        assert r.json()["department"] == "plans" and "Basic 2 GB" in r.json()["reply"]


def test_load_desk_with_a_router_validates_the_whole_definition(router: Path) -> None:
    """Loading by module:attribute with a router gives a valid desk with the router's departments."""
    loaded = load_desk(SPEC, router=router)
    assert loaded.name == "telco" and set(loaded.classifier().departments) == {"network", "plans", "human", "other"}
