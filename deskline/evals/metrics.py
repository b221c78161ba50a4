"""Pure metric functions of the eval suite: small enough to check by hand, no I/O, no desk.

Conventions, the same everywhere:

* ``precision = tp / (tp + fp)``, ``recall = tp / (tp + fn)`` and ``f1 = 2tp / (2tp + fp + fn)``
  (the harmonic mean of the two, still defined when nothing was predicted). A ratio whose
  denominator is zero is ``None`` (JSON ``null``): "not measurable here", never a silent 0.
* Macro-F1 is the mean F1 of the departments that have support (at least one expected turn).
* An abstention (the desk asked a clarifying question because nothing was confident) is the
  predicted label ``abstain``; a turn that raised is ``error``. Both count as wrong routes.
* Percentiles interpolate linearly between closest ranks (numpy's default method).
* Run-to-run noise: a difference between two configurations is "beyond noise" when it is larger
  than ``NOISE_K`` standard errors of the difference of the per-run means (Welch); with every
  run identical (a deterministic desk) any non-zero difference is beyond noise.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

ABSTAIN = "abstain"
ERROR = "error"
NOISE_K = 3.0

Verdict = Literal["beyond noise", "within noise", "unknown", "same"]


@dataclass(frozen=True, slots=True)
class ClassScores:
    """Precision, recall and F1 of one label, with the counts they come from."""

    precision: float | None
    recall: float | None
    f1: float | None
    support: int  # expected turns with this label
    predicted: int  # turns predicted as this label
    tp: int

    def to_dict(self) -> dict[str, float | int | None]:
        return {
            "precision": _r(self.precision),
            "recall": _r(self.recall),
            "f1": _r(self.f1),
            "support": self.support,
            "predicted": self.predicted,
        }


@dataclass(frozen=True, slots=True)
class Confusion:
    """``matrix[i][j]`` counts turns expected ``rows[i]`` and predicted ``columns[j]``."""

    rows: tuple[str, ...]
    columns: tuple[str, ...]
    matrix: tuple[tuple[int, ...], ...]

    def to_dict(self) -> dict[str, object]:
        return {
            "rows": list(self.rows),
            "columns": list(self.columns),
            "matrix": [list(r) for r in self.matrix],
        }


@dataclass(frozen=True, slots=True)
class Difference:
    """One metric of two configurations: means over runs, the difference and its noise band."""

    a: float | None
    b: float | None
    delta: float | None
    noise: float | None  # NOISE_K standard errors; None when a side has a single run
    verdict: Verdict


def ratio(num: float, den: float) -> float | None:
    """``num / den``, or ``None`` when the denominator is zero."""
    return num / den if den else None


def mean(values: Iterable[float]) -> float | None:
    items = list(values)
    return sum(items) / len(items) if items else None


def rate(flags: Iterable[bool]) -> float | None:
    """The share of true flags, ``None`` for no flags."""
    items = list(flags)
    return sum(items) / len(items) if items else None


def accuracy(expected: Sequence[str], predicted: Sequence[str]) -> float | None:
    """The share of positions where the prediction equals the expectation."""
    _same_length(expected, predicted)
    return ratio(sum(e == p for e, p in zip(expected, predicted, strict=True)), len(expected))


def class_scores(expected: Sequence[str], predicted: Sequence[str], label: str) -> ClassScores:
    """Precision, recall and F1 of ``label`` treated as the positive class."""
    _same_length(expected, predicted)
    tp = fp = fn = 0
    for e, p in zip(expected, predicted, strict=True):
        if p == label and e == label:
            tp += 1
        elif p == label:
            fp += 1
        elif e == label:
            fn += 1
    return ClassScores(precision=ratio(tp, tp + fp), recall=ratio(tp, tp + fn), f1=ratio(2 * tp, 2 * tp + fp + fn),
                       support=tp + fn, predicted=tp + fp, tp=tp)


def per_class(expected: Sequence[str], predicted: Sequence[str], labels: Sequence[str]) -> dict[str, ClassScores]:
    """``class_scores`` of every label in ``labels`` (in that order)."""
    return {label: class_scores(expected, predicted, label) for label in labels}


def macro_f1(scores: dict[str, ClassScores]) -> float | None:
    """The mean F1 over the labels that have support; ``None`` if none has."""
    return mean(s.f1 for s in scores.values() if s.support and s.f1 is not None)


def confusion(expected: Sequence[str], predicted: Sequence[str], labels: Sequence[str]) -> Confusion:
    """The confusion matrix: rows are ``labels`` plus any other expected label, columns the rows
    plus any other predicted label (``abstain``, ``error``), in order of first appearance."""
    _same_length(expected, predicted)
    rows = list(labels)
    rows += [e for e in dict.fromkeys(expected) if e not in rows]
    columns = rows + [p for p in dict.fromkeys(predicted) if p not in rows]
    counts = Counter(zip(expected, predicted, strict=True))
    matrix = tuple(tuple(counts[(r, c)] for c in columns) for r in rows)
    return Confusion(rows=tuple(rows), columns=tuple(columns), matrix=matrix)


@dataclass(frozen=True, slots=True)
class BinaryScores:
    """Precision and recall of a yes/no decision (did the desk escalate?)."""

    precision: float | None
    recall: float | None
    f1: float | None
    tp: int
    fp: int
    fn: int
    tn: int

    def to_dict(self) -> dict[str, float | int | None]:
        return {
            "precision": _r(self.precision),
            "recall": _r(self.recall),
            "f1": _r(self.f1),
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "support": self.tp + self.fn,
        }


def binary_scores(expected: Sequence[bool], predicted: Sequence[bool]) -> BinaryScores:
    """Precision, recall and F1 of ``True`` as the positive class."""
    _same_length(expected, predicted)
    pairs = Counter(zip(expected, predicted, strict=True))
    tp, fp, fn, tn = (
        pairs[(True, True)],
        pairs[(False, True)],
        pairs[(True, False)],
        pairs[(False, False)],
    )
    return BinaryScores(
        precision=ratio(tp, tp + fp),
        recall=ratio(tp, tp + fn),
        f1=ratio(2 * tp, 2 * tp + fp + fn),
        tp=tp,
        fp=fp,
        fn=fn,
        tn=tn,
    )


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100), linear between closest ranks; ``None`` for no values."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0-100")
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def difference(a_runs: Sequence[float | None], b_runs: Sequence[float | None], k: float = NOISE_K) -> Difference:
    """B minus A over repeated runs of each, and whether it is beyond run-to-run noise."""
    a = [x for x in a_runs if x is not None]
    b = [x for x in b_runs if x is not None]
    ma, mb = mean(a), mean(b)
    if ma is None or mb is None:
        return Difference(ma, mb, None, None, "unknown")
    delta = mb - ma
    if len(a) < 2 or len(b) < 2:
        return Difference(ma, mb, delta, None, "same" if _zero(delta) else "unknown")
    se = math.sqrt(_variance(a) / len(a) + _variance(b) / len(b))
    noise = k * se
    if _zero(delta):
        verdict: Verdict = "same"
    else:
        verdict = "beyond noise" if abs(delta) > noise else "within noise"
    return Difference(ma, mb, delta, noise, verdict)


@dataclass(frozen=True, slots=True)
class ModelCall:
    """One model call of a turn, as the eval reports it: its role, whether its output was used,
    and if not, the kind of failure (``rejected`` output, ``timeout``, ``rate_limited``,
    ``error``) with the reason."""

    role: str
    ok: bool
    kind: str = ""
    reason: str = ""
    fallback: bool = False

    @classmethod
    def of(cls, role: str, ok: bool, error: str, fallbacks: int | Sequence[str] = 0) -> ModelCall:
        fell = bool(fallbacks) if not isinstance(fallbacks, int) else fallbacks > 0
        if ok:
            return cls(role, True, fallback=fell)
        low = error.lower()
        if low.startswith("invalid output"):
            kind = "rejected"
        elif "timeout" in low or "timed out" in low:
            kind = "timeout"
        elif "429" in low or "rate limit" in low or "ratelimit" in low:
            kind = "rate_limited"
        else:
            kind = "error"
        return cls(role, False, kind, re.sub(r"\s+", " ", error.removeprefix("invalid output: "))[:80], fell)


def model_behaviour(calls: Sequence[ModelCall]) -> dict[str, Any]:
    """Per role: calls, used, failures by kind, fallbacks, and the writer's rejected outputs with
    their reasons (a junk or ungrounded reply never reaches the customer: the template is sent)."""
    out: dict[str, Any] = {}
    for role in sorted({c.role for c in calls}):
        mine = [c for c in calls if c.role == role]
        failed = [c for c in mine if not c.ok]
        out[role] = {
            "calls": len(mine),
            "ok": len(mine) - len(failed),
            "failures": dict(Counter(c.kind for c in failed).most_common()),
            "failure_rate": _r(ratio(len(failed), len(mine))),
            "fallbacks": sum(c.fallback for c in mine),
            "rejected": sum(c.kind == "rejected" for c in mine),
            "rejection_rate": _r(ratio(sum(c.kind == "rejected" for c in mine), len(mine))),
            "rejection_reasons": dict(Counter(c.reason for c in failed if c.kind == "rejected").most_common(5)),
        }
    return out


@dataclass(frozen=True, slots=True)
class Scored:
    """One customer turn: what the dataset expected joined with what the desk did."""

    case: str
    turn: int
    text: str
    expected: str | None  # department; None when the row has no department label
    predicted: str  # department, ``abstain`` or ``error``
    expected_escalate: bool | None
    escalated: bool
    confidence: float = 0.0
    stage: str = ""
    intent: str = ""
    expected_intent: str | None = None
    mode: str = ""
    expected_mode: str | None = None
    entities_ok: bool | None = None  # None: the row requires no entities
    facts_ok: bool | None = None  # None: the row expects no facts in the reply
    grounded: bool | None = None  # None: no bot reply this turn (a person owns it)
    llm_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    error: str | None = None
    trained_on: bool = False
    ambiguous: bool = False
    outcome: str = ""
    reply: str | None = None
    model_calls: tuple[ModelCall, ...] = ()
    language: str | None = None  # the customer's language (the row's label, else the desk's reading)
    reply_language: str | None = None  # the reply's language (None: too short to tell, or no reply)

    @property
    def in_language(self) -> bool | None:
        """Whether the reply is in the customer's language (None: no reply, or nothing to tell)."""
        if self.reply is None or self.language is None or self.reply_language is None:
            return None
        return self.reply_language == self.language

    @property
    def misrouted(self) -> bool:
        return self.expected is not None and self.predicted != self.expected

    @property
    def passed(self) -> bool:
        """Every check this turn's row asks for holds (routing, escalation, mode, intent,
        entities, reply facts, grounding), and the turn did not fail."""
        checks = (
            self.expected is None or self.predicted == self.expected,
            self.expected_escalate is None or self.escalated == self.expected_escalate,
            self.expected_mode is None or self.mode == self.expected_mode,
            self.expected_intent is None or self.intent == self.expected_intent,
            self.entities_ok is not False,
            self.facts_ok is not False,
            self.grounded is not False,
        )
        return self.error is None and all(checks)


def routing(rows: Sequence[Scored], labels: Sequence[str]) -> dict[str, object]:
    """Accuracy, macro-F1 and per-label scores of the rows that carry a department label."""
    labelled = [r for r in rows if r.expected is not None]
    expected = [r.expected for r in labelled if r.expected is not None]
    predicted = [r.predicted for r in labelled]
    scores = per_class(expected, predicted, labels)
    answered = [r for r in labelled if r.predicted != ABSTAIN]
    return {
        "n": len(labelled),
        "accuracy": _r(accuracy(expected, predicted)),
        "accuracy_answered": _r(ratio(sum(r.predicted == r.expected for r in answered), len(answered))),
        "macro_f1": _r(macro_f1(scores)),
        "per_department": {k: v.to_dict() for k, v in scores.items() if v.support or v.predicted},
        "confusion": confusion(expected, predicted, labels),
    }


def summarise(rows: Sequence[Scored], labels: Sequence[str]) -> dict[str, Any]:
    """Every stage's figures over ``rows``: the body of ``deskline eval --json``."""
    route = routing(rows, labels)
    matrix = route.pop("confusion")
    assert isinstance(matrix, Confusion)
    route["labelled"] = route.pop("n")  # turns with a department label; "n" counts every turn
    esc = [r for r in rows if r.expected_escalate is not None]
    intents = [r for r in rows if r.expected_intent is not None]
    modes = [r for r in rows if r.expected_mode is not None]
    latencies = [r.latency_ms for r in rows]
    calls = [r.llm_calls for r in rows]
    cost = sum(r.cost_usd for r in rows)
    tokens_in, tokens_out = sum(r.input_tokens for r in rows), sum(r.output_tokens for r in rows)
    trained = rate(r.trained_on for r in rows)
    esc_scores = binary_scores([bool(r.expected_escalate) for r in esc], [r.escalated for r in esc])
    out: dict[str, Any] = {
        "n": len(rows),
        **route,
        "confusion_matrix": matrix.to_dict(),
        "abstain_rate": _r(rate(r.predicted == ABSTAIN for r in rows)),
        "escalation": esc_scores.to_dict(),
        "intent": {"n": len(intents), "accuracy": _r(rate(r.intent == r.expected_intent for r in intents))},
        "plan_mode": {"counts": dict(Counter(r.mode for r in rows).most_common()), "n": len(modes),
                      "accuracy": _r(rate(r.mode == r.expected_mode for r in modes))},
        "outcomes": dict(Counter(r.outcome for r in rows).most_common()),
        "entities": _pass_rate(r.entities_ok for r in rows),
        "turns": _pass_rate(r.passed for r in rows),
        "models": model_behaviour([c for r in rows for c in r.model_calls]),
        "conversations": _pass_rate(all(r.passed for r in group) for group in _by_case(rows)),
        "grounding": _pass_rate(r.grounded for r in rows),
        "reply_facts": _pass_rate(r.facts_ok for r in rows),
        "llm_calls": {"mean": _r(mean(calls)), "max": max(calls, default=0), "total": sum(calls)},
        "tokens": {"input": tokens_in, "output": tokens_out,
                   "per_query": _r(ratio(tokens_in + tokens_out, len(rows)), 1)},
        "latency_ms": {"p50": _r(percentile(latencies, 50), 3), "p95": _r(percentile(latencies, 95), 3),
                       "p99": _r(percentile(latencies, 99), 3), "mean": _r(mean(latencies), 3),
                       "max": _r(max(latencies, default=None), 3)},
        "cost_usd": {"total": _r(cost, 6), "per_query": _r(ratio(cost, len(rows)), 8)},
        "trained_on_share": _r(trained),
        "ambiguous_share": _r(rate(r.ambiguous for r in rows)),
        "failures": [{"case": r.case, "turn": r.turn, "text": r.text, "error": r.error} for r in rows if r.error],
    }
    out["replies_in_language"] = _pass_rate(r.in_language for r in rows)
    out["per_language"] = per_language(rows, labels)
    if trained is not None and 0 < trained < 1:
        out["held_out"] = _subset(routing([r for r in rows if not r.trained_on], labels))
    if any(r.ambiguous for r in rows):
        out["unambiguous"] = _subset(routing([r for r in rows if not r.ambiguous], labels))
    return out


def per_language(rows: Sequence[Scored], labels: Sequence[str]) -> dict[str, dict[str, object]]:
    """Routing and replies per customer language: n, accuracy, macro-F1, replies in the language."""
    found: dict[str, list[Scored]] = {}
    for r in rows:
        found.setdefault(r.language or "unknown", []).append(r)
    out: dict[str, dict[str, object]] = {}
    for language, group in sorted(found.items()):
        route = routing(group, labels)
        out[language] = {"n": len(group), "labelled": route["n"], "accuracy": route["accuracy"],
                         "macro_f1": route["macro_f1"],
                         "replies_in_language": _pass_rate(r.in_language for r in group)}
    return out


def worst_misroutes(rows: Sequence[Scored], limit: int = 25) -> list[Scored]:
    """Misrouted turns, the most confidently wrong first (abstentions are not misroutes)."""
    wrong = [r for r in rows if r.misrouted and r.predicted != ABSTAIN]
    return sorted(wrong, key=lambda r: (-r.confidence, r.case, r.turn))[:limit]


def gate(summary: dict[str, object], baseline: dict[str, object]) -> list[str]:
    """Why ``summary`` fails the committed baseline (macro-F1, human recall), or nothing."""
    tolerance = float(baseline.get("tolerance", 0.005))  # type: ignore[arg-type]
    per = summary.get("per_department")
    human = per.get("human") if isinstance(per, dict) else None
    found = {
        "macro_f1": summary.get("macro_f1"),
        "human_recall": human.get("recall") if isinstance(human, dict) else None,
    }
    problems = []
    models = summary.get("models")
    for role, figures in (baseline.get("models") or {}).items():  # type: ignore[attr-defined]
        now = models.get(role, {}) if isinstance(models, dict) else {}
        for rate in ("failure_rate", "rejection_rate"):
            if rate in figures and now.get(rate, 0.0) > float(figures[rate]) + tolerance:
                problems.append(f"{role} {rate} {now.get(rate)} is above the baseline {figures[rate]} + {tolerance}")
    for key, value in found.items():
        floor = float(baseline[key]) - tolerance  # type: ignore[arg-type]
        if not isinstance(value, int | float) or value < floor:
            problems.append(
                f"{key} {value} is below the baseline {baseline[key]} - {tolerance} = {floor:.4f}"
            )
    return problems


def _subset(route: dict[str, object]) -> dict[str, object]:
    return {"n": route["n"], "accuracy": route["accuracy"], "macro_f1": route["macro_f1"]}


def _by_case(rows: Sequence[Scored]) -> list[list[Scored]]:
    groups: dict[str, list[Scored]] = {}
    for r in rows:
        groups.setdefault(r.case, []).append(r)
    return list(groups.values())


def _pass_rate(flags: Iterable[bool | None]) -> dict[str, object]:
    checked = [f for f in flags if f is not None]
    return {"pass_rate": _r(rate(checked)), "n": len(checked)}


def _variance(values: Sequence[float]) -> float:
    m = sum(values) / len(values)
    return sum((v - m) ** 2 for v in values) / (len(values) - 1)


def _zero(x: float) -> bool:
    return abs(x) < 1e-12


def _same_length(a: Sequence[object], b: Sequence[object]) -> None:
    if len(a) != len(b):
        raise ValueError(f"{len(a)} expected labels but {len(b)} predictions")


def _r(x: float | None, digits: int = 4) -> float | None:
    return None if x is None else round(x, digits)


rounded = _r
