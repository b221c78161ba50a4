"""The eval suite end to end: query files, the real desk, every stage's score, the CLI and the loop."""

from __future__ import annotations

import asyncio
import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from deskline.config import Settings
from deskline.evals.dataset import (
    DatasetError,
    Expectation,
    export_queries,
    load_dataset,
    read_queries,
    training_digests,
)
from deskline.evals.loop import Profile, compare_modes
from deskline.evals.runner import Observed, evaluate, missing_entities
from deskline.runtime import memory_desk

SETTINGS = Settings(log_level="error")

CASES: list[dict[str, Any]] = [
    {
        "text": "I was charged twice for invoice INV-1001",
        "department": "billing",
        "mode": "single",
        "entities": ["invoice_id=INV-1001"],
        "facts": ["$49.00", "RF-2002"],
    },
    {"text": "I want to talk to a real person", "department": "human"},
    {"text": "asdf qwer zxcv", "department": "tech"},
    {
        "text": "it's INV-1001",
        "conversation_id": "d",
        "turn": 2,
        "department": "billing",
        "entities": {"invoice_id": ""},
        "facts": ["$49.00"],
    },
    {
        "text": "I need a copy of my invoice",
        "conversation_id": "d",
        "turn": 1,
        "department": "billing",
        "facts": "invoice number",
    },
    {"text": "what's the weather like tomorrow", "department": "other"},
    {"text": "refund charge CH-3001 please", "department": "payment"},
]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def queries(tmp_path: Path) -> Path:
    """The hand-checked cases above as a JSONL file."""
    return write_jsonl(tmp_path / "queries.jsonl", CASES)


def run(path: Path, engine: str = "direct") -> Any:
    return asyncio.run(evaluate(load_dataset(path), memory_desk(SETTINGS), engine=engine))  # type: ignore[arg-type]


def test_shared_csv_format_loads_as_it_is(tmp_path: Path) -> None:
    """text,source_intent,department,ambiguous rows load; a human department means an escalation."""
    path = tmp_path / "shared.csv"
    path.write_text(
        "text,source_intent,department,ambiguous\n"
        '"my card, it was stolen",lost_or_stolen_card,human,1\nhello,greeting,other,0\n',
        encoding="utf-8",
    )
    first, second = read_queries(path)
    assert first.text == "my card, it was stolen" and first.source_intent == "lost_or_stolen_card"
    assert first.expect == Expectation(department="human", escalate=True) and first.ambiguous
    assert second.expect.escalate is False and not second.ambiguous
    assert [c.name for c in load_dataset(path).cases] == ["shared:1", "shared:2"]


def test_jsonl_conversations_run_in_turn_order(queries: Path) -> None:
    """Rows sharing a conversation id are one case, ordered by turn, with their entities and facts."""
    dataset = load_dataset(queries)
    assert len(dataset.cases) == 6
    case = next(c for c in dataset.cases if c.name == "d")
    assert case.inputs.texts == ("I need a copy of my invoice", "it's INV-1001")
    first, second = case.expected_output
    assert first.facts == ("invoice number",) and second.entities == (("invoice_id", None),)
    assert dataset.cases[0].expected_output[0].entities == (("invoice_id", "INV-1001"),)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"text": "hi", "department": "Sales Team!"}, "row 1: department 'sales team!' is not a department name"),
        ({"text": "  "}, "row 1: 'text' is missing or empty"),
        ({"text": "hi", "entities": "IBAN-no"}, "row 1: entity 'IBAN-no' is not an entity name"),
        ({"text": "hi", "escalate": "maybe"}, "row 1: 'maybe' is not a yes/no value"),
    ],
)
def test_bad_rows_name_the_row_and_the_field(tmp_path: Path, row: dict[str, Any], message: str) -> None:
    """A malformed row is a DatasetError that says which row and what is wrong with it."""
    with pytest.raises(DatasetError, match=message):
        read_queries(write_jsonl(tmp_path / "bad.jsonl", [row]))


def test_rows_from_the_training_data_are_flagged(tmp_path: Path) -> None:
    """A text copied from the router's training CSV is trained-on, whatever its case; a new one is not."""
    train = Path(__file__).parents[1] / "deskline" / "agents" / "builtin" / "router" / "data" / "clinc150_train.csv"
    with train.open(encoding="utf-8", newline="") as handle:
        seen = next(csv.DictReader(handle))["text"]
    path = write_jsonl(tmp_path / "t.jsonl", [{"text": seen.upper()}, {"text": "zebra invoices on mars"}])
    from deskline.agents.builtin import desk as builtin

    assert training_digests(tuple(builtin.training_data))
    assert load_dataset(path, training=builtin.training_data).cases[0].metadata["trained_on"] == [True]  # type: ignore[index]
    assert load_dataset(path, training=builtin.training_data).cases[1].metadata["trained_on"] == [False]  # type: ignore[index]
    assert load_dataset(path).cases[0].metadata["trained_on"] == [False]  # type: ignore[index]


def test_a_dataset_of_another_desk_is_refused_by_name(tmp_path: Path) -> None:
    """Departments and entities the desk does not have are listed in one DatasetError."""
    from deskline.agents.builtin import desk as builtin
    from deskline.evals.dataset import check_against

    path = write_jsonl(tmp_path / "shop.jsonl", [{"text": "where is my parcel", "department": "shipping",
                                                  "entities": "order_id"}, {"text": "hi", "department": "billing"}])
    with pytest.raises(DatasetError, match="shipping.*order_id"):
        check_against(load_dataset(path), builtin.all_departments, [e.name for e in builtin.entities])
    check_against(load_dataset(path), ["shipping", "billing", "human", "other"], ["order_id"])


def test_every_stage_is_scored_on_hand_checked_cases(queries: Path) -> None:
    """7 turns: 5 routed right, 1 abstention, 1 misroute; escalation, entities, facts, mode, grounding."""
    result = run(queries)
    s = result.summary
    assert s["n"] == 7 and s["labelled"] == 7 and len(result.report.cases) == 6
    assert s["accuracy"] == pytest.approx(5 / 7, abs=1e-4)
    assert s["abstain_rate"] == pytest.approx(1 / 7, abs=1e-4)
    assert s["per_department"]["billing"] == {
        "precision": 0.75,
        "recall": 1.0,
        "f1": pytest.approx(6 / 7, abs=1e-4),
        "support": 3,
        "predicted": 4,
    }
    assert s["per_department"]["payment"]["recall"] == 0.0 and s["per_department"]["payment"]["precision"] is None
    assert s["macro_f1"] == pytest.approx((6 / 7 + 0 + 0 + 1 + 1) / 5, abs=1e-4)
    assert s["escalation"]["precision"] == 1.0 and s["escalation"]["recall"] == 1.0
    assert s["entities"] == {"pass_rate": 1.0, "n": 2}
    assert s["reply_facts"] == {"pass_rate": 1.0, "n": 3}
    assert s["plan_mode"]["accuracy"] == 1.0 and s["plan_mode"]["n"] == 1
    assert s["grounding"] == {"pass_rate": 1.0, "n": 7}
    assert s["llm_calls"] == {"mean": 0.0, "max": 0, "total": 0} and s["cost_usd"]["total"] == 0.0
    assert s["latency_ms"]["p50"] > 0 and s["failures"] == []
    assert s["confusion_matrix"]["matrix"][0][-1] == 1  # the tech row's abstention
    conversation = next(c for c in result.report.cases if c.name == "d")
    assert {k: v.value for k, v in conversation.assertions.items()} == {
        "routed": True,
        "escalation": True,
        "entities": True,
        "reply_facts": True,
        "grounded": True,
    }
    titles = [a.title for a in result.report.analyses]
    assert titles[0].startswith("Routing") and "macro_f1" in titles


def test_both_engines_give_the_same_scores(queries: Path) -> None:
    """The direct loop and pydantic-evals' Dataset.evaluate build the same report figures."""
    direct, framed = run(queries, "direct").summary, run(queries, "pydantic-evals").summary
    for s in (direct, framed):
        s.pop("latency_ms")
    assert direct == framed


def test_a_turn_that_raises_is_reported_not_fatal(queries: Path) -> None:
    """An exception in one turn becomes a failure row and an 'error' route; the other turns still run."""
    desk = memory_desk(SETTINGS)
    handle = desk.handle

    async def flaky(conversation_id: str | None, text: str | bytes, client_message_id: str | None = None) -> Any:
        if text == "asdf qwer zxcv":
            raise RuntimeError("backend on fire")
        return await handle(conversation_id, text, client_message_id)

    desk.handle = flaky  # type: ignore[method-assign]
    s = asyncio.run(evaluate(load_dataset(queries), desk)).summary
    assert [f["error"] for f in s["failures"]] == ["RuntimeError: backend on fire"]
    assert "error" in s["confusion_matrix"]["columns"] and s["n"] == 7


def test_missing_entities_by_name_and_by_value() -> None:
    """A handoff that carried INV-1001 satisfies 'invoice_id' and '=INV-1001', not '=INV-9'."""
    seen = Observed(
        department="billing",
        mode="single",
        stage="classifier",
        handed_off=(("invoice_id", "INV-1001"), ("amount", "$1,200.00")),
    )
    want = Expectation(
        entities=(
            ("invoice_id", None),
            ("invoice_id", "inv-1001"),
            ("amount", "1200.00"),
            ("invoice_id", "INV-9"),
            ("email", None),
        )
    )
    assert missing_entities(want, seen) == ("invoice_id=INV-9", "email")


def test_exported_queries_carry_what_happened_and_evaluate_again(tmp_path: Path) -> None:
    """The log exports as labelled JSONL; evaluated again on a fresh desk it routes the same way."""
    desk = memory_desk(SETTINGS)

    async def traffic() -> None:
        await desk.handle("c1", "I was charged twice for invoice INV-1001")
        await desk.handle("c2", "someone stole my card")
        await desk.handle("c2", "hello?")
        await desk.handle("c3", "asdf qwer zxcv")

    asyncio.run(traffic())
    rows = list(export_queries(desk.store))
    by_key = {(r["conversation_id"], r["turn"]): r for r in rows}
    assert by_key[("c1", 1)]["department"] == "billing" and by_key[("c1", 1)]["escalate"] is False
    assert "invoice_id=INV-1001" in by_key[("c1", 1)]["entities"]
    assert by_key[("c2", 1)]["department"] == "human" and by_key[("c2", 1)]["escalate"] is True
    assert by_key[("c2", 2)]["outcome"] == "held" and by_key[("c2", 2)]["department"] == "human"
    assert "department" not in by_key[("c3", 1)]  # nobody resolved it: the bot asked a question
    s = run(write_jsonl(tmp_path / "log.jsonl", rows)).summary
    assert s["n"] == 4 and s["labelled"] == 3 and s["accuracy"] == 1.0 and s["entities"]["pass_rate"] == 1.0


def test_profile_parses_latency_and_price() -> None:
    """'latency=1.5s,price=0.01' is 1500 ms and $0.01 a call; a bad part is refused."""
    assert Profile.parse("latency=1.5s,price=0.01") == Profile(1500.0, 0.01)
    assert Profile.parse("price=0.003") == Profile(400.0, 0.003)
    with pytest.raises(ValueError, match="bad profile part"):
        Profile.parse("speed=fast")


def test_loop_comparison_counts_calls_per_turn(tmp_path: Path) -> None:
    """Plan-once vs the two loops, turn by turn: answered single step, escalation, out of scope, parallel."""
    path = write_jsonl(
        tmp_path / "loop.jsonl",
        [
            {"text": "I was charged twice for invoice INV-1001"},
            {"text": "I want to talk to a real person"},
            {"text": "what's the weather like tomorrow"},
            {"text": "my transfer PAY-2001 hasn't arrived and I forgot my password"},
        ],
    )
    result = asyncio.run(
        compare_modes(
            load_dataset(path),
            memory_desk(SETTINGS),
            lambda: memory_desk(SETTINGS),
            Profile(100.0, 0.01),
        )
    )
    plan_once, tools, handoffs, as_run = result.modes
    assert plan_once.calls == [2, 1, 1, 1]  # the parallel turn needs info: its reply is a template
    assert tools.calls == [2, 1, 1, 3]
    assert handoffs.calls == [3, 1, 1, 5]
    assert as_run.calls == [0, 0, 0, 0]
    data = result.to_dict()
    assert data["modes"][0]["cost_usd"]["total"] == pytest.approx(0.05)
    assert data["modes"][1]["latency_ms"]["p50"] >= 150.0
    assert data["savings"]["loop, skills as tools"]["llm_calls_per_query"]["absolute"] == pytest.approx(0.5)


@pytest.fixture
def cli() -> Any:
    from deskline.cli import app

    return lambda *args: CliRunner().invoke(app, list(args))


def test_cli_eval_json_report_and_baseline(cli: Any, queries: Path, tmp_path: Path) -> None:
    """--json prints the documented object, --report writes the page with its picture, --baseline gates."""
    report, baseline = tmp_path / "r.html", tmp_path / "base.json"
    done = cli("eval", "--dataset", str(queries), "--json", "--report", str(report))
    assert done.exit_code == 0, done.output
    out = json.loads(done.stdout)
    for key in (
        "n",
        "accuracy",
        "macro_f1",
        "per_department",
        "abstain_rate",
        "escalation",
        "llm_calls",
        "latency_ms",
        "cost_usd",
        "failures",
        "trained_on_share",
        "label",
    ):
        assert key in out, key
    assert out["trained_on_share"] == pytest.approx(3 / 7, abs=1e-4)  # three texts are desk_examples.csv rows
    assert out["label"].startswith("PARTLY TRAINED-ON") and out["held_out"]["n"] == 4
    page = report.read_text(encoding="utf-8")
    assert "<svg" in page and "refund charge CH-3001 please" in page  # the misroute, with its text
    assert cli("eval", "-d", str(queries), "--json", "--baseline", str(baseline), "--update-baseline").exit_code == 0
    assert json.loads(baseline.read_text())["macro_f1"] == out["macro_f1"]
    assert cli("eval", "-d", str(queries), "--json", "--baseline", str(baseline)).exit_code == 0
    baseline.write_text(json.dumps({"macro_f1": 0.99, "human_recall": 1.0}))
    failed = cli("eval", "-d", str(queries), "--json", "--baseline", str(baseline))
    assert failed.exit_code == 1 and "regression: macro_f1" in failed.stderr


def test_cli_compares_two_saved_results(cli: Any, queries: Path, tmp_path: Path) -> None:
    """Two saved runs of different thresholds compare side by side with a verdict per metric."""
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(cli("eval", "-d", str(queries), "--json", "--repeat", "2").stdout)
    b.write_text(cli("eval", "-d", str(queries), "--json", "--repeat", "2", "--abstain-threshold", "0.999").stdout)
    done = cli("eval", "--compare", str(a), "--compare", str(b), "--json")
    assert done.exit_code == 0, done.output
    metrics = json.loads(done.stdout)["comparison"]["metrics"]
    assert metrics["abstain rate"]["verdict"] == "beyond noise" and metrics["abstain rate"]["delta"] > 0
    assert metrics["model calls / query"]["verdict"] == "same"
    table = cli("eval", "--compare", str(a), "--compare", str(b))
    assert "abstain" in table.stdout and "beyond" in table.stdout and "run-to-run noise" in table.stdout


def test_cli_loop_mode_prints_both_modes(cli: Any, queries: Path) -> None:
    """--mode loop prints calls, latency and cost for plan-once and the loops, and how it simulated them."""
    done = cli("eval", "-d", str(queries), "--mode", "loop", "--profile", "latency=300ms,price=0.001")
    assert done.exit_code == 0, done.output
    assert "plan-once" in done.stdout and "loop, skills as tools" in done.stdout and "simulated" in done.stdout


def test_cli_exports_and_replays_the_log(cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """export-queries reads a SQLite log; eval-replay under a stricter threshold lists the turns that change."""
    url = f"sqlite:///{tmp_path}/desk.db"
    monkeypatch.setenv("DESKLINE_DATABASE_URL", url)
    for text in ("I was charged twice for invoice INV-1001", "I forgot my password"):
        assert cli("ask", text).exit_code == 0
    out = tmp_path / "q.jsonl"
    assert cli("export-queries", "--out", str(out)).exit_code == 0
    assert [json.loads(line)["department"] for line in out.read_text().splitlines()] in (
        ["billing", "tech"],
        ["tech", "billing"],
    )
    same = json.loads(cli("eval-replay", "--json").stdout)
    assert same["turns"] == 2 and same["changed"] == []
    strict = json.loads(cli("eval-replay", "--json", "--abstain-threshold", "1.01").stdout)
    assert len(strict["changed"]) == 2 and strict["changed"][0]["differences"]


def test_eval_runs_as_a_real_process(queries: Path) -> None:
    """`python -m deskline.cli eval --json` prints one JSON object on stdout and nothing else."""
    done = subprocess.run(
        [sys.executable, "-m", "deskline.cli", "eval", "--dataset", str(queries), "--json"],
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert json.loads(done.stdout)["n"] == 7


def test_public_names_resolve() -> None:
    """Every name in deskline.evals.__all__ is importable from the package."""
    import deskline.evals as evals

    assert evals.__all__
    for name in evals.__all__:
        assert getattr(evals, name) is not None, name


def test_with_a_model_cases_run_through_pydantic_evals_and_count_calls_tokens_and_cost(
    tmp_path: Path, queries: Path
) -> None:
    """A models file switches to Dataset.evaluate with concurrency; calls, tokens and cost are the server's."""
    import yaml

    from deskline.testing import FakeOpenAI

    with FakeOpenAI() as server:
        params = {
            "api_base": server.base_url,
            "api_key": "x",
            "timeout": 5,
            "input_cost_per_token": 1e-6,
            "output_cost_per_token": 2e-6,
        }
        doc = {
            "model_list": [
                {"model_name": role, "litellm_params": {"model": f"openai/{role}-model", **params}}
                for role in ("planner", "writer")
            ]
        }
        path = tmp_path / "models.yaml"
        path.write_text(yaml.safe_dump(doc))
        desk = memory_desk(Settings(log_level="error", models_path=path, abstain_threshold=0.99999))
        result = asyncio.run(evaluate(load_dataset(queries), desk, concurrency=4))
        s = result.summary
        assert result.engine == "pydantic-evals" and s["n"] == 7 and s["failures"] == []
        assert s["llm_calls"]["total"] == server.count() > 0
        assert s["tokens"]["input"] > 0 and s["cost_usd"]["total"] > 0
        assert s["llm_calls"]["max"] <= 2  # the desk's per-turn budget
