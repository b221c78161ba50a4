"""The CI gate: the fixed split of the shared data, routed by the real desk, against the committed baseline.

The split and the figures live in ``bench/eval_baseline.json``; after a deliberate change to the
router, regenerate it with the command stored in the file's ``regenerate`` field.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from deskline.config import Settings
from deskline.evals.dataset import load_datasets, resolve_data
from deskline.evals.metrics import gate
from deskline.evals.runner import evaluate
from deskline.runtime import memory_desk

BASELINE = Path(__file__).parents[1] / "bench" / "eval_baseline.json"
STALE = 0.02  # a baseline this far below today's figure no longer guards anything


@pytest.fixture(scope="module")
def baseline() -> dict[str, Any]:
    return json.loads(BASELINE.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def summary(baseline: dict[str, Any]) -> dict[str, Any]:
    """The split's summary; a split file that cannot be found fails the gate, it never skips it."""
    data = load_datasets([resolve_data(name) for name in baseline["split"]])
    return asyncio.run(evaluate(data, memory_desk(Settings(log_level="error")))).summary


def test_routing_does_not_regress_below_the_baseline(baseline: dict[str, Any], summary: dict[str, Any]) -> None:
    """Macro-F1 and human recall on the fixed split stay within the tolerance of the committed baseline."""
    assert summary["n"] == baseline["n"], "the split changed: regenerate bench/eval_baseline.json"
    assert gate(summary, baseline) == []
    assert summary["failures"] == []


def test_the_baseline_is_current(baseline: dict[str, Any], summary: dict[str, Any]) -> None:
    """An improvement raises the bar: a baseline far below today's figures must be regenerated."""
    human = summary["per_department"]["human"]["recall"]
    assert summary["macro_f1"] - baseline["macro_f1"] < STALE, baseline["regenerate"]
    assert human - baseline["human_recall"] < STALE, baseline["regenerate"]


CONVERSATIONS = Path(__file__).parents[1] / "bench" / "conversations_baseline.json"


def test_the_multi_turn_set_does_not_regress() -> None:
    """Per-turn and per-conversation pass rates on the shipped multi-turn set stay at the committed baseline."""
    base = json.loads(CONVERSATIONS.read_text(encoding="utf-8"))
    data = load_datasets([resolve_data(name) for name in base["split"]])
    summary = asyncio.run(evaluate(data, memory_desk(Settings(log_level="error")))).summary
    assert summary["n"] == base["n"], "the set changed: regenerate bench/conversations_baseline.json"
    assert summary["failures"] == []
    assert summary["turns"]["pass_rate"] >= base["turns_pass_rate"] - base["tolerance"], summary["turns"]
    assert summary["conversations"]["pass_rate"] >= base["conversations_pass_rate"] - base["tolerance"]
    assert summary["turns"]["pass_rate"] - base["turns_pass_rate"] < STALE, base["regenerate"]
