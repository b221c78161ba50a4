"""How well a router routes: per-department precision, recall and F1, their macro mean, accuracy
and the worst confusions, for a loaded router on labelled rows (``evaluate``) or for any two
label lists (``score``). Cross-validation, which trains, is :func:`deskline.routing.train.cross_validate`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from deskline.routing.classifier import Classifier
from deskline.routing.examples import Example

__all__ = ["DepartmentScore", "Scores", "evaluate", "score"]


@dataclass(frozen=True, slots=True)
class DepartmentScore:
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True, slots=True)
class Scores:
    """Department-level quality of a router on labelled rows (cross-validated or held out).

    Abstention is ignored: a prediction is its best department, whatever its confidence;
    ``abstain_rate`` says how often the router would have abstained at its threshold.
    """

    rows: int
    macro_f1: float
    accuracy: float
    departments: dict[str, DepartmentScore]
    confusions: tuple[tuple[str, str, int], ...]  # (true, predicted, count), worst first
    abstain_rate: float = 0.0
    folds: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "folds": self.folds,
            "macro_f1": self.macro_f1,
            "accuracy": self.accuracy,
            "abstain_rate": self.abstain_rate,
            "departments": {
                name: {"precision": s.precision, "recall": s.recall, "f1": s.f1, "support": s.support}
                for name, s in self.departments.items()
            },
            "confusions": [{"true": t, "predicted": p, "count": n} for t, p, n in self.confusions],
        }


def evaluate(router: Classifier, examples: Sequence[Example]) -> Scores:
    """The department scores of a loaded router on labelled rows (e.g. a held-out split)."""
    predictions = [router.predict(e.text) for e in examples]
    result = score([e.department for e in examples], [p.department for p in predictions], router.departments)
    abstain_rate = sum(p.abstain for p in predictions) / max(1, len(examples))
    return Scores(result.rows, result.macro_f1, result.accuracy, result.departments, result.confusions, abstain_rate)


def score(
    truth: Sequence[str], predicted: Sequence[str], departments: Sequence[str] | None = None, worst: int = 10
) -> Scores:
    """Per-department precision/recall/F1, their macro mean (over the true departments and
    ``departments``), accuracy and the ``worst`` most frequent confusions."""
    names = list(dict.fromkeys([*(departments or ()), *sorted(set(truth))]))
    pairs = Counter(zip(truth, predicted, strict=True))
    per: dict[str, DepartmentScore] = {}
    for name in names:
        hit = pairs[(name, name)]
        support = sum(n for (t, _), n in pairs.items() if t == name)
        called = sum(n for (_, p), n in pairs.items() if p == name)
        precision = hit / called if called else 0.0
        recall = hit / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per[name] = DepartmentScore(precision, recall, f1, support)
    scored = [s.f1 for s in per.values() if s.support]
    confusions = sorted(((t, p, n) for (t, p), n in pairs.items() if t != p), key=lambda c: (-c[2], c[0], c[1]))
    return Scores(
        rows=len(truth),
        macro_f1=sum(scored) / len(scored) if scored else 0.0,
        accuracy=sum(pairs[(n, n)] for n in names) / max(1, len(truth)),
        departments=per,
        confusions=tuple(confusions[:worst]),
    )
