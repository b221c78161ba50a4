"""Each eval metric on small cases whose answers were worked out by hand."""

from __future__ import annotations

import pytest

from deskline.evals.metrics import (
    ABSTAIN,
    Scored,
    accuracy,
    binary_scores,
    class_scores,
    confusion,
    difference,
    gate,
    macro_f1,
    per_class,
    percentile,
    summarise,
    worst_misroutes,
)

EXPECTED = ["a", "a", "b", "b"]
PREDICTED = ["a", "b", "b", "b"]


def test_accuracy_counts_exact_matches() -> None:
    """Three of four labels match: accuracy 0.75; no labels at all is None, not 0."""
    assert accuracy(EXPECTED, PREDICTED) == 0.75
    assert accuracy([], []) is None


def test_accuracy_rejects_unequal_lengths() -> None:
    """Predictions that do not line up with expectations are a bug, not a score."""
    with pytest.raises(ValueError, match="2 expected labels but 1 predictions"):
        accuracy(["a", "b"], ["a"])


def test_class_scores_by_hand() -> None:
    """For b: tp 2, fp 1, fn 0 -> P 2/3, R 1, F1 0.8; for a: tp 1, fn 1 -> P 1, R 0.5, F1 2/3."""
    b = class_scores(EXPECTED, PREDICTED, "b")
    assert (b.precision, b.recall, b.f1, b.support, b.predicted) == (
        pytest.approx(2 / 3),
        1.0,
        0.8,
        2,
        3,
    )
    a = class_scores(EXPECTED, PREDICTED, "a")
    assert (a.precision, a.recall, a.f1, a.support, a.predicted) == (
        1.0,
        0.5,
        pytest.approx(2 / 3),
        2,
        1,
    )


def test_a_class_never_predicted_has_no_precision_but_zero_f1() -> None:
    """Support without predictions: precision undefined (None), recall 0, F1 0."""
    c = class_scores(["c", "a"], ["a", "a"], "c")
    assert (c.precision, c.recall, c.f1) == (None, 0.0, 0.0)


def test_a_class_absent_everywhere_is_unmeasurable() -> None:
    """No support and no predictions: every ratio is None."""
    d = class_scores(EXPECTED, PREDICTED, "d")
    assert (d.precision, d.recall, d.f1, d.support, d.predicted) == (None, None, None, 0, 0)


def test_macro_f1_averages_supported_classes_only() -> None:
    """Macro-F1 of a (2/3) and b (0.8) is 0.7333; a class with no support (d) is left out."""
    scores = per_class(EXPECTED, PREDICTED, ["a", "b", "d"])
    assert macro_f1(scores) == pytest.approx((2 / 3 + 0.8) / 2)
    assert macro_f1(per_class([], [], ["a"])) is None


def test_macro_f1_counts_a_missed_class_as_zero() -> None:
    """A supported class the router never predicts pulls macro-F1 down: (1 + 0) / 2 = 0.5."""
    scores = per_class(["a", "c"], ["a", "a"], ["a", "c"])
    assert scores["a"].f1 == pytest.approx(2 / 3)
    assert macro_f1(scores) == pytest.approx((2 / 3 + 0) / 2)


def test_confusion_matrix_rows_expected_columns_predicted() -> None:
    """Rows follow the labels, extra predicted labels (abstain) become extra columns."""
    cm = confusion(["a", "a", "b", "b", "b"], ["a", "b", "b", ABSTAIN, "b"], ["a", "b"])
    assert cm.rows == ("a", "b")
    assert cm.columns == ("a", "b", ABSTAIN)
    assert cm.matrix == ((1, 1, 0), (0, 2, 1))


def test_confusion_adds_unlisted_expected_labels_as_rows() -> None:
    """An expected label missing from the label list still gets its row (and column)."""
    cm = confusion(["z"], ["a"], ["a"])
    assert cm.rows == ("a", "z") and cm.columns == ("a", "z")
    assert cm.matrix == ((0, 0), (1, 0))


def test_binary_scores_by_hand() -> None:
    """Escalations expected T,T,F,F,T vs done T,F,T,F,T: tp 2, fp 1, fn 1, tn 1 -> P = R = 2/3."""
    s = binary_scores([True, True, False, False, True], [True, False, True, False, True])
    assert (s.tp, s.fp, s.fn, s.tn) == (2, 1, 1, 1)
    assert s.precision == pytest.approx(2 / 3) and s.recall == pytest.approx(2 / 3)
    assert s.to_dict()["support"] == 3


def test_binary_scores_without_positives_are_none() -> None:
    """No expected and no actual escalation: precision and recall are not measurable."""
    s = binary_scores([False, False], [False, False])
    assert (s.precision, s.recall, s.f1) == (None, None, None)


def test_percentiles_interpolate_linearly() -> None:
    """For 1,2,3,4: p0 1, p50 2.5, p95 3.85, p100 4 (numpy's linear method); empty is None."""
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 50) == 2.5
    assert percentile(values, 95) == pytest.approx(3.85)
    assert percentile(values, 100) == 4.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None
    with pytest.raises(ValueError):
        percentile(values, 101)


def test_difference_of_identical_runs_is_beyond_noise() -> None:
    """A deterministic desk repeats itself exactly, so any change is real."""
    d = difference([0.9, 0.9, 0.9], [0.92, 0.92, 0.92])
    assert d.delta == pytest.approx(0.02) and d.noise == 0.0 and d.verdict == "beyond noise"


def test_difference_within_run_to_run_noise() -> None:
    """Means 10 and 11 with run spreads of ±1 (se 0.816): 1 < 3 se, so within noise."""
    d = difference([9.0, 10.0, 11.0], [10.0, 11.0, 12.0])
    assert d.delta == 1.0
    assert d.noise == pytest.approx(3 * (2 / 3) ** 0.5)
    assert d.verdict == "within noise"


def test_difference_with_one_run_is_unknown_unless_equal() -> None:
    """One run per side cannot measure noise; an unchanged value is still 'same'."""
    assert difference([1.0], [2.0]).verdict == "unknown"
    assert difference([1.0], [1.0]).verdict == "same"
    assert difference([None], [1.0]).verdict == "unknown"


def row(expected: str | None, predicted: str, **kw: object) -> Scored:
    return Scored(
        case="c",
        turn=1,
        text=f"{expected}->{predicted}",
        expected=expected,
        predicted=predicted,
        expected_escalate=expected == "human" if expected else None,
        escalated=predicted == "human",
        **kw,
    )  # type: ignore[arg-type]


ROWS = [
    row("billing", "billing", latency_ms=1.0, llm_calls=0, grounded=True, trained_on=True),
    row(
        "billing",
        "payment",
        latency_ms=2.0,
        llm_calls=1,
        cost_usd=0.002,
        confidence=0.9,
        grounded=True,
    ),
    row(
        "human",
        "human",
        latency_ms=3.0,
        llm_calls=2,
        cost_usd=0.004,
        input_tokens=100,
        output_tokens=20,
    ),
    row("other", ABSTAIN, latency_ms=4.0, confidence=0.3, grounded=True),
    row(None, "tech", latency_ms=5.0, error="RuntimeError: boom", grounded=False),
]


def test_summary_figures_by_hand() -> None:
    """Four labelled turns, two right: accuracy 0.5; one abstention in five turns; costs and latency."""
    s = summarise(ROWS, ["tech", "billing", "payment", "human", "other"])
    assert s["n"] == 5 and s["accuracy"] == 0.5
    assert s["accuracy_answered"] == pytest.approx(0.6667)  # 2 of the 3 labelled turns that were answered
    assert s["abstain_rate"] == 0.2
    per = s["per_department"]
    assert per["billing"] == {
        "precision": 1.0,
        "recall": 0.5,
        "f1": pytest.approx(0.6667),
        "support": 2,
        "predicted": 1,
    }
    assert per["payment"]["support"] == 0 and "tech" not in per  # unlabelled turns are not routing figures
    assert s["macro_f1"] == pytest.approx((2 / 3 + 1 + 0) / 3, abs=1e-4)  # billing, human, other
    assert s["escalation"] == {
        "precision": 1.0,
        "recall": 1.0,
        "f1": 1.0,
        "tp": 1,
        "fp": 0,
        "fn": 0,
        "support": 1,
    }
    assert s["llm_calls"] == {"mean": 0.6, "max": 2, "total": 3}
    assert s["latency_ms"]["p50"] == 3.0 and s["latency_ms"]["p95"] == pytest.approx(4.8)
    assert s["cost_usd"] == {"total": 0.006, "per_query": 0.0012}
    assert s["tokens"] == {"input": 100, "output": 20, "per_query": 24.0}
    assert s["grounding"] == {"pass_rate": 0.75, "n": 4}
    assert s["trained_on_share"] == 0.2 and s["held_out"]["n"] == 3
    assert s["failures"] == [{"case": "c", "turn": 1, "text": "None->tech", "error": "RuntimeError: boom"}]
    assert s["confusion_matrix"]["columns"][-1] == ABSTAIN


def test_worst_misroutes_are_the_most_confident_wrong_routes() -> None:
    """Abstentions are not misroutes; the confident billing->payment mistake comes first."""
    worst = worst_misroutes(ROWS)
    assert [r.predicted for r in worst] == ["payment"]


def test_gate_passes_at_the_baseline_and_fails_below_the_tolerance() -> None:
    """Macro-F1 0.90 against a 0.902 baseline passes with tolerance 0.005; 0.896 does not."""
    base = {"macro_f1": 0.902, "human_recall": 0.95, "tolerance": 0.005}
    ok = {"macro_f1": 0.90, "per_department": {"human": {"recall": 0.95}}}
    assert gate(ok, base) == []
    bad = {"macro_f1": 0.896, "per_department": {"human": {"recall": 0.9}}}
    problems = gate(bad, base)
    assert len(problems) == 2 and problems[0].startswith("macro_f1 0.896")
    assert gate({"macro_f1": 0.95, "per_department": {}}, base) == [
        "human_recall None is below the baseline 0.95 - 0.005 = 0.9450"
    ]


def test_model_behaviour_counts_failures_by_kind_and_rejected_writer_outputs() -> None:
    """Per role: calls, failures by kind, fallbacks, rejections with their reasons; the gate fails a rise."""
    from deskline.evals.metrics import ModelCall, gate, model_behaviour

    calls = [ModelCall.of("writer", True, ""), ModelCall.of("writer", False, "invalid output: the reply contains JSON"),
             ModelCall.of("writer", False, "invalid output: the reply contains JSON"),
             ModelCall.of("planner", False, "Timeout: the request timed out", 1), ModelCall.of("planner", True, "")]
    figures = model_behaviour(calls)
    assert figures["writer"] == {"calls": 3, "ok": 1, "failures": {"rejected": 2}, "failure_rate": 0.6667,
                                 "fallbacks": 0, "rejected": 2, "rejection_rate": 0.6667,
                                 "rejection_reasons": {"the reply contains JSON": 2}}
    assert figures["planner"]["failures"] == {"timeout": 1} and figures["planner"]["fallbacks"] == 1
    baseline = {"macro_f1": 0, "human_recall": 0, "tolerance": 0.01, "models": {"writer": {"rejection_rate": 0.1}}}
    summary = {"macro_f1": 1, "per_department": {"human": {"recall": 1}}, "models": figures}
    assert gate(summary, baseline) == ["writer rejection_rate 0.6667 is above the baseline 0.1 + 0.01"]
