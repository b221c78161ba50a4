"""How well the generic router trainer learns a desk it has never seen: Bitext (e-commerce).

    python bench/train_bitext.py [--data ../shared/data/bitext_v1_8k.csv] [--json]

The Bitext file (columns ``text``, ``source_intent``, ``department``, ``ambiguous``; 27 intents
mapped onto 5 departments) is read in place and never copied into the repository (its licence
is unverified). The script makes a deterministic held-out split stratified by intent (within
each intent the distinct normalised texts are ordered by SHA-256 and every 5th is held out, with
all its copies, so no text is on both sides), then, on the remaining 80 %:

* the deskline router (``deskline.routing.train``): stratified 5-fold cross-validated macro-F1,
  then trained on all of it and scored on the held-out 20 % with the runtime classifier;
* for reference, the built-in desk's shipped router (same 5 department names, trained on
  BANKING77/CLINC150, never on Bitext) on the same held-out rows;
* a plain baseline: ``TfidfVectorizer()`` + ``LinearSVC()`` (scikit-learn defaults) on the
  department labels, cross-validated on the same folds and scored on the same held-out rows.

``--per-intent N`` trains (and cross-validates) on at most N examples of each intent of the
80 %, scoring on the same held-out rows: the small-data regime of a team writing its own
examples. Macro-F1 is over the 5 departments, each prediction being the best department (abstention
ignored). Trainer settings can be varied (``--svm-c``, ``--char-ngrams``...) to tune.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from deskline.agents.builtin.desk import ROUTER

from deskline.routing.classifier import load_classifier
from deskline.routing.train import (
    DEFAULT_SETTINGS,
    Example,
    TrainSettings,
    build,
    classifier_of,
    cross_validate,
    evaluate,
    read_examples,
    score,
)

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "bitext_v1_8k.csv"
HOLDOUT_EVERY = 5  # 20 %


def split(examples: list[Example], every: int = HOLDOUT_EVERY) -> tuple[list[Example], list[Example]]:
    """(train, held out): per intent, every ``every``-th distinct text by SHA-256 is held out."""
    texts: dict[str, set[str]] = defaultdict(set)
    for e in examples:
        texts[e.key].add(e.text)
    held: set[tuple[str, str]] = set()
    for key, members in texts.items():
        ordered = sorted(members, key=lambda t: hashlib.sha256(t.encode()).hexdigest())
        held.update((key, t) for t in ordered[every - 1 :: every])
    train = [e for e in examples if (e.key, e.text) not in held]
    test = [e for e in examples if (e.key, e.text) in held]
    return train, test


def at_most(examples: list[Example], per_intent: int) -> list[Example]:
    """The first ``per_intent`` examples of each intent by SHA-256 of the text, in file order."""
    by_key: dict[str, list[Example]] = defaultdict(list)
    for e in examples:
        by_key[e.key].append(e)
    kept = {
        id(e)
        for members in by_key.values()
        for e in sorted(members, key=lambda e: hashlib.sha256(e.text.encode()).hexdigest())[:per_intent]
    }
    return [e for e in examples if id(e) in kept]


def baseline(train: list[Example], test: list[Example], folds: int, seed: int) -> dict[str, float]:
    """TfidfVectorizer() + LinearSVC() on the departments: CV and held-out macro-F1."""
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import LinearSVC

    def model() -> Any:
        return make_pipeline(TfidfVectorizer(), LinearSVC(random_state=seed))

    texts = np.array([e.text for e in train], dtype=object)
    labels = np.array([e.department for e in train])
    predicted = np.empty(len(train), dtype=object)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fit_rows, test_rows in splitter.split(texts, labels):
        predicted[test_rows] = model().fit(texts[fit_rows], labels[fit_rows]).predict(texts[test_rows])
    cv = score(list(labels), list(predicted))
    held = model().fit(texts, labels).predict([e.text for e in test])
    return {"cv_macro_f1": cv.macro_f1, "holdout_macro_f1": score([e.department for e in test], list(held)).macro_f1}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-cv", action="store_true", help="only the held-out figures")
    parser.add_argument("--per-intent", type=int, help="train on at most N examples per intent (small-data regime)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--svm-c", type=float, default=DEFAULT_SETTINGS.svm_c)
    parser.add_argument("--meta-c", type=float, default=DEFAULT_SETTINGS.meta_c)
    parser.add_argument("--char-ngrams", type=int, nargs=2, default=DEFAULT_SETTINGS.char_ngrams)
    parser.add_argument("--char-min-df", type=int, default=DEFAULT_SETTINGS.char_min_df)
    args = parser.parse_args(argv)
    settings = TrainSettings(
        char_ngrams=tuple(args.char_ngrams), char_min_df=args.char_min_df, svm_c=args.svm_c, meta_c=args.meta_c
    )

    examples = read_examples([args.data])
    train, test = split(examples)
    if args.per_intent:
        train = at_most(train, args.per_intent)
    log = (lambda *a: print(*a, file=sys.stderr)) if args.json else print
    log(f"bitext: {len(examples)} rows -> {len(train)} train, {len(test)} held out; settings {settings}")
    result: dict[str, Any] = {
        "per_intent": args.per_intent,
        "rows": len(examples),
        "train": len(train),
        "holdout": len(test),
        "settings": {k: getattr(settings, k) for k in settings.__slots__},
    }

    started = time.perf_counter()
    if not args.no_cv:
        cv = cross_validate(train, folds=args.folds, seed=args.seed, settings=settings)
        result["deskline_cv"] = cv.to_dict()
        took = time.perf_counter() - started
        log(f"deskline router  CV macro-F1 {cv.macro_f1:.4f} ({args.folds} folds, {took:.0f} s)")
    started = time.perf_counter()
    router = classifier_of(build(train, settings=settings))
    held = evaluate(router, test)
    result["deskline_holdout"] = held.to_dict()
    log(
        f"deskline router  held-out macro-F1 {held.macro_f1:.4f} (accuracy {held.accuracy:.4f}, "
        f"abstains {held.abstain_rate:.1%}; trained in {time.perf_counter() - started:.0f} s)"
    )
    for name, s in held.departments.items():
        log(f"    {name:<10} P {s.precision:.3f}  R {s.recall:.3f}  F1 {s.f1:.3f}  n={s.support}")
    log("    worst confusions: " + ", ".join(f"{t}->{p} {n}" for t, p, n in held.confusions[:5]))
    shipped = evaluate(load_classifier(ROUTER), test)  # the built-in desk's router, never trained on Bitext
    result["builtin_router_holdout_macro_f1"] = shipped.macro_f1
    log(f"built-in router (BANKING77/CLINC150, as shipped) held-out macro-F1 {shipped.macro_f1:.4f}")
    plain = baseline(train, test, args.folds, args.seed)
    result["baseline"] = plain
    log(f"plain tf-idf+SVM CV macro-F1 {plain['cv_macro_f1']:.4f}, held-out macro-F1 {plain['holdout_macro_f1']:.4f}")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
