"""Routing quality of the shipped triage classifier on labelled data it was NOT trained on.

Why: the desk is judged on held-out customer queries (banking-style support traffic and a mix
with out-of-scope chatter), so this script measures exactly that on the splits the model never
saw, with the runtime classifier (pure Python + numpy, no scikit-learn):

* ``banking77_holdout`` - the 10 % of BANKING77 train held out by ``train.prepare_data``;
* ``clinc150_val``       - CLINC150 validation, including its 100 out-of-scope rows;
* ``bitext``             - Bitext customer-support queries: an unseen domain (evaluation only,
  its licence is unverified, so nothing from it is shipped or trained on).

``desk_examples`` is scored too and is labelled TRAINING DATA: it only shows that the
hand-written examples are learned, not how well the desk generalises.

Usage: ``python bench/routing_quality.py [--shared ../shared/data] [--json out.json]``.
Prints a table, then the JSON.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deskline.agents.builtin.desk import ROUTER

from deskline.handoffs.payload import DEPARTMENTS
from deskline.routing.classifier import Classifier, Prediction, load_classifier

REPO = Path(__file__).resolve().parents[1]
PACKAGE_DATA = REPO / "deskline" / "routing" / "data"
DEFAULT_SHARED = REPO.parent / "shared" / "data"
ABSTAIN = "abstain"


@dataclass(frozen=True, slots=True)
class Split:
    """One labelled evaluation file and whether the model was trained on it."""

    name: str
    path: Path
    trained_on: bool = False


def splits(shared: Path) -> list[Split]:
    return [
        Split("banking77_holdout", PACKAGE_DATA / "banking77_holdout.csv"),
        Split("clinc150_val", shared / "clinc150_val.csv"),
        Split("bitext (unseen domain)", shared / "bitext_v1_8k.csv"),
        Split("desk_examples (TRAINING DATA)", PACKAGE_DATA / "desk_examples.csv", True),
    ]


def read(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def per_class(gold: Sequence[str], pred: Sequence[str]) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support of every department."""
    table: dict[str, dict[str, float]] = {}
    for dept in DEPARTMENTS:
        tp = sum(g == dept and p == dept for g, p in zip(gold, pred, strict=True))
        fp = sum(g != dept and p == dept for g, p in zip(gold, pred, strict=True))
        fn = sum(g == dept and p != dept for g, p in zip(gold, pred, strict=True))
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        table[dept] = {"precision": precision, "recall": recall, "f1": f1, "support": tp + fn}
    return table


def macro_f1(table: dict[str, dict[str, float]]) -> float:
    present = [row["f1"] for row in table.values() if row["support"]]
    return sum(present) / len(present) if present else 0.0


def expected_calibration_error(predictions: Sequence[Prediction], gold: Sequence[str]) -> float:
    """ECE of the department confidence over 10 equal-width bins."""
    bins: list[list[tuple[float, bool]]] = [[] for _ in range(10)]
    for p, g in zip(predictions, gold, strict=True):
        bins[min(9, int(p.confidence * 10))].append((p.confidence, p.department == g))
    total = len(predictions)
    return sum(len(b) / total * abs(sum(c for c, _ in b) / len(b) - sum(ok for _, ok in b) / len(b)) for b in bins if b)


def evaluate(classifier: Classifier, split: Split) -> dict[str, Any]:
    rows = read(split.path)
    texts = [row["text"] for row in rows]
    gold = [row["department"] for row in rows]
    timings: list[float] = []
    predictions: list[Prediction] = []
    for text in texts:
        start = time.perf_counter()
        predictions.append(classifier.predict(text))
        timings.append(time.perf_counter() - start)
    routed = [p.department for p in predictions]
    counted = [ABSTAIN if p.abstain else p.department for p in predictions]
    table = per_class(gold, routed)
    table_counted = per_class(gold, counted)
    result: dict[str, Any] = {
        "split": split.name,
        "trained_on": split.trained_on,
        "rows": len(rows),
        "macro_f1": macro_f1(table),
        "macro_f1_abstain_as_miss": macro_f1(table_counted),
        "accuracy": sum(g == p for g, p in zip(gold, routed, strict=True)) / len(rows),
        "accuracy_abstain_as_miss": sum(g == p for g, p in zip(gold, counted, strict=True)) / len(rows),
        "human_recall": table["human"]["recall"],
        "abstain_rate": sum(p.abstain for p in predictions) / len(rows),
        "ece": expected_calibration_error(predictions, gold),
        "median_route_us": statistics.median(timings) * 1e6,
        "per_department": table,
    }
    oos = [p.department for p, row in zip(predictions, rows, strict=True) if row["source_intent"] == "oos"]
    if oos:
        result["oos_rows"] = len(oos)
        result["oos_routed_other"] = sum(d == "other" for d in oos) / len(oos)
    return result


def render(results: Sequence[dict[str, Any]], threshold: float) -> str:
    lines = [
        f"threshold {threshold:.2f} (macro-F1 counts the routed department; 'abst-miss' counts an abstention as a miss)"
    ]
    header = (
        f"{'split':32} {'rows':>5} {'macroF1':>8} {'abst-miss':>9} {'acc':>6} "
        f"{'human R':>7} {'abstain':>7} {'ECE':>5} {'µs':>6}"
    )
    lines += [header, "-" * len(header)]
    for r in results:
        lines.append(
            f"{r['split']:32} {r['rows']:>5} {r['macro_f1']:>8.4f} "
            f"{r['macro_f1_abstain_as_miss']:>9.4f} {r['accuracy']:>6.3f} "
            f"{r['human_recall']:>7.3f} {r['abstain_rate']:>7.3f} {r['ece']:>5.3f} "
            f"{r['median_route_us']:>6.0f}"
        )
    for r in results:
        lines.append(
            f"\n{r['split']}"
            + (" - TRAINING DATA" if r["trained_on"] else "")
            + (f"  (oos routed to other: {r['oos_routed_other']:.3f} of {r['oos_rows']})" if "oos_rows" in r else "")
        )
        lines.append(f"  {'department':10} {'P':>6} {'R':>6} {'F1':>6} {'n':>5}")
        for dept, row in r["per_department"].items():
            lines.append(
                f"  {dept:10} {row['precision']:>6.3f} {row['recall']:>6.3f} {row['f1']:>6.3f} {row['support']:>5.0f}"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED)
    parser.add_argument("--threshold", type=float, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    classifier = load_classifier(ROUTER, threshold=args.threshold)
    load_ms = (time.perf_counter() - started) * 1e3
    results = []
    for split in splits(args.shared):
        if split.path.exists():
            results.append(evaluate(classifier, split))
        else:
            print(f"skipped {split.name}: {split.path} not found")
    report = {"threshold": classifier.threshold, "load_ms": load_ms, "splits": results}
    print(render(results, classifier.threshold))
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
