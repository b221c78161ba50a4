"""Training of a desk's local router (needs scikit-learn; the runtime does not).

The trainer knows no department: a desk brings labelled examples (CSV or JSON lines with
``text``, ``department`` and optionally ``intent``), :func:`read_examples` checks them,
:func:`cross_validate` says how well they can be learned, :func:`build` trains the artifact and
:func:`write` stores it for :func:`deskline.routing.classifier.load_classifier`. ``deskline
train`` (:mod:`deskline.routing.commands`) runs all four; the built-in desk's router is built
the same way by :mod:`deskline.agents.builtin.router.build`.

Why it is built this way:

* Department labels are often unions of very different intents (the built-in ``human`` is both
  "my card was stolen" and "let me talk to a person"), which a single linear department model
  separates poorly. So two linear SVMs are trained on the same tf-idf features (word
  1-2-grams plus ``char_wb`` n-grams, sublinear tf): one over the departments and one over
  every (department, intent) pair. A multinomial logistic stacker turns the department scores
  and the best intent score of each department into calibrated department probabilities. It is
  fitted on scores of held-out rows (half of each intent, scored by SVMs fitted on the other
  half), so its probabilities are honest about unseen text. Intents with a single example
  cannot be halved; they are pooled by department and halved together.
* Deterministic: fixed seeds (liblinear's included), sorted vocabularies, the caller's row
  order, departments in a fixed order (sorted unless given) and an uncompressed binary file
  whose header is canonical JSON: the same examples give the same bytes.
* The exported intent matrix keeps only its largest weights (int16): a share of them
  (``intent_keep``) but never fewer than ``min_intent_weights``, so a small desk keeps its whole
  intent model while a large one stays small and fast to score in pure Python/numpy.
  ``build`` checks that the runtime's predictions agree with scikit-learn's on a sample.
* The word n-grams are fixed at 1-2 (the runtime re-implements exactly that); the word
  tokeniser (``cjk``: each Han/kana character is a token, so Chinese gets character uni- and
  bigrams; identical to ``\\b\\w\\w+\\b`` on other text), the char n-gram range, the SVM and
  stacker regularisation, per-source sample weights and the pruning are :class:`TrainSettings`.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deskline.routing.classifier import CJK_TOKEN_PATTERN, FORMAT_VERSION, MAGIC, Classifier, build_model, normalise
from deskline.routing.examples import (
    MIN_EXAMPLES,
    NAME,
    Example,
    TrainingDataError,
    check_examples,
    read_examples,
)
from deskline.routing.quality import DepartmentScore, Scores, evaluate, score

__all__ = [
    "MIN_EXAMPLES",
    "DepartmentScore",
    "Example",
    "Scores",
    "TrainSettings",
    "TrainingDataError",
    "build",
    "check_examples",
    "classifier_of",
    "cross_validate",
    "evaluate",
    "read_examples",
    "score",
    "write",
]

PARITY_SAMPLE = 2000
ALIGN = 16
WORD_NGRAMS = (1, 2)  # fixed: the runtime's word features are exactly unigrams and bigrams
_ABSENT = -1e6  # score of an intent a calibration half never saw (it never wins a max)


@dataclass(frozen=True, slots=True)
class TrainSettings:
    """The trainer's knobs. The defaults are the built-in router's (its file depends on them)."""

    char_ngrams: tuple[int, int] = (2, 5)
    strip_accents: bool = True  # features of the text without accents (scikit-learn's "unicode")
    word_tokens: str = "cjk"  # "words" (\b\w\w+\b) or "cjk" (the same, plus one token per Han/kana character)
    char_min_df: int = 2
    svm_c: float = 0.5  # both linear SVMs
    meta_c: float = 1.0  # the logistic stacker
    intent_keep: float = 0.03  # share of intent weights (largest |w|) kept in the artifact...
    min_intent_weights: int = 200_000  # ...but at least this many (all of a small model)
    coverage_floor: float = 0.5  # below this share of known words, confidence shrinks to uniform
    cjk_coverage_floor: float = 0.3  # the same for text with Chinese/Japanese (known character bigrams)
    # Sample weight of each example source (file prefix) in both SVMs and the stacker, e.g.
    # (("zh", 3.0),): a language with a few hundred rows beside tens of thousands of English ones.
    source_weights: tuple[tuple[str, float], ...] = ()
    threshold: float = 0.5  # the artifact's default abstention threshold
    seed: int = 0


DEFAULT_SETTINGS = TrainSettings()


@dataclass(frozen=True, slots=True)
class LinearFit:
    """The coefficients of the two linear SVMs fitted on one set of rows, one row per class
    (classes a fit never saw get zero weights and a very low bias)."""

    dept_coef: Any
    dept_bias: Any
    intent_coef: Any
    intent_bias: Any
    intent_seen: Any  # bool per intent: did this fit have examples of it


# --------------------------------------------------------------------------------------------
# Fitting


@dataclass(slots=True)
class _Fitted:
    """The scikit-learn side of one training run, before export."""

    examples: Sequence[Example]
    departments: list[str]
    intent_keys: list[str]
    intent_dept: Any
    vectorizer: Any
    full: LinearFit
    meta_coef: Any  # (n_dep, 2 n_dep)
    meta_intercept: Any
    stacker: Any
    temperature: float
    settings: TrainSettings = field(default=DEFAULT_SETTINGS)


def _require_sklearn() -> None:
    try:
        import sklearn  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        raise ModuleNotFoundError(
            "training a router needs scikit-learn (the router itself does not): pip install scikit-learn",
            name="sklearn",
        ) from None


def _vectorizer(settings: TrainSettings) -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer  # type: ignore[import-untyped]
    from sklearn.pipeline import FeatureUnion  # type: ignore[import-untyped]

    return FeatureUnion(
        [
            (
                "word",
                TfidfVectorizer(
                    ngram_range=WORD_NGRAMS,
                    sublinear_tf=True,
                    lowercase=False,
                    token_pattern=_token_pattern(settings),
                    strip_accents="unicode" if settings.strip_accents else None,
                ),
            ),
            (
                "char",
                TfidfVectorizer(
                    analyzer="char_wb",
                    ngram_range=tuple(settings.char_ngrams),
                    min_df=settings.char_min_df,
                    sublinear_tf=True,
                    lowercase=False,
                    strip_accents="unicode" if settings.strip_accents else None,
                ),
            ),
        ]
    )


def _token_pattern(settings: TrainSettings) -> str:
    if settings.word_tokens == "cjk":
        return CJK_TOKEN_PATTERN
    if settings.word_tokens == "words":
        return r"(?u)\b\w\w+\b"
    raise TrainingDataError(f"unknown word_tokens {settings.word_tokens!r}: 'words' or 'cjk'")


def _one_row_per_class(model: Any, n_classes: int) -> tuple[Any, Any, Any]:
    """A fitted linear model's coefficients with one row per class ``0..n_classes-1``."""
    import numpy as np

    coef, bias, seen = model.coef_, model.intercept_, model.classes_
    if len(seen) == 2 and coef.shape[0] == 1:  # binary: one decision function, for class 1
        coef, bias = np.vstack([-coef, coef]), np.concatenate([-bias, bias])
    present = np.zeros(n_classes, dtype=bool)
    present[seen] = True
    if len(seen) == n_classes:
        return coef, bias, present
    full_coef = np.zeros((n_classes, coef.shape[1]), dtype=coef.dtype)
    full_bias = np.full(n_classes, _ABSENT, dtype=np.float64)
    full_coef[seen], full_bias[seen] = coef, bias
    return full_coef, full_bias, present


def _fit_linear(
    matrix: Any,
    dept_labels: Any,
    intent_labels: Any,
    n_dep: int,
    n_intents: int,
    settings: TrainSettings,
    weights: Any = None,
) -> LinearFit:
    """Both SVMs on one set of rows."""
    from sklearn.svm import LinearSVC  # type: ignore[import-untyped]

    def svm() -> Any:
        return LinearSVC(C=settings.svm_c, random_state=settings.seed, max_iter=5000)

    dept_coef, dept_bias, _ = _one_row_per_class(svm().fit(matrix, dept_labels, sample_weight=weights), n_dep)
    with warnings.catch_warnings():  # many intents of few examples each is expected, not a regression
        warnings.filterwarnings("ignore", message="The number of unique classes is greater than 50%")
        intent_model = svm().fit(matrix, intent_labels, sample_weight=weights)
    intent_coef, intent_bias, seen = _one_row_per_class(intent_model, n_intents)
    return LinearFit(dept_coef, dept_bias, intent_coef, intent_bias, seen)


def _halves(keys: Sequence[str], departments: Sequence[str], seed: int) -> list[bool]:
    """Which rows are held out of the calibration fit: every other row of each intent (in a
    seeded hash order); intents with one row are pooled by department and halved together."""
    by_key: dict[str, list[int]] = defaultdict(list)
    for index, key in enumerate(keys):
        by_key[key].append(index)
    groups = [members for members in by_key.values() if len(members) > 1]
    singles: dict[str, list[int]] = defaultdict(list)
    for members in by_key.values():
        if len(members) == 1:
            singles[departments[members[0]]].append(members[0])
    groups.extend(singles.values())
    held = [False] * len(keys)
    for members in groups:
        members.sort(key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).hexdigest())
        for index in members[1::2]:
            held[index] = True
    return held


def _stack_inputs(dept_scores: Any, intent_scores: Any, intent_dept: Any) -> Any:
    import numpy as np

    n_dep = dept_scores.shape[1]
    best = [intent_scores[:, intent_dept == d].max(axis=1) for d in range(n_dep)]
    return np.hstack([dept_scores, np.stack(best, axis=1)])


def _fit_temperature(scores: Any, intent_index: Any, dept_index: Any, intent_dept: Any) -> float:
    """The intent-softmax temperature minimising out-of-fold NLL within the true department."""
    import numpy as np

    best_t, best_nll = 1.0, math.inf
    mask = intent_dept[None, :] == dept_index[:, None]
    masked = np.where(mask, scores, -np.inf)
    rows = np.arange(len(scores))
    for temperature in np.exp(np.linspace(math.log(0.02), math.log(2.0), 60)):
        z = masked / temperature
        z = z - z.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(z).sum(axis=1))
        nll = float(np.mean(log_norm - z[rows, intent_index]))
        if nll < best_nll:
            best_t, best_nll = float(temperature), nll
    return best_t


def _department_order(examples: Sequence[Example], departments: Sequence[str] | None) -> list[str]:
    present = {e.department for e in examples}
    if departments is None:
        return sorted(present)
    order = list(departments)
    bad = [d for d in order if not isinstance(d, str) or not NAME.match(d)]
    if bad or len(set(order)) != len(order):
        raise TrainingDataError(f"departments must be distinct lowercase identifiers, not {order}")
    if set(order) != present:
        missing, extra = sorted(set(order) - present), sorted(present - set(order))
        raise TrainingDataError(
            f"the department order {order} does not match the examples' departments "
            f"(without examples: {missing}; not in the order: {extra})"
        )
    return order


def _fit(examples: Sequence[Example], departments: Sequence[str] | None, settings: TrainSettings) -> _Fitted:
    """Vectoriser, both SVMs, the stacker and the intent temperature for ``examples``."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

    order = _department_order(examples, departments)
    rank = {d: k for k, d in enumerate(order)}
    intent_keys = sorted({e.key for e in examples}, key=lambda k: (rank[k.split("/", 1)[0]], k.split("/", 1)[1]))
    key_index = {k: i for i, k in enumerate(intent_keys)}
    intent_dept = np.array([rank[k.split("/", 1)[0]] for k in intent_keys])
    dept_y = np.array([rank[e.department] for e in examples])
    intent_y = np.array([key_index[e.key] for e in examples])

    vectorizer = _vectorizer(settings)
    try:
        matrix = vectorizer.fit_transform([e.text for e in examples]).tocsr()
    except ValueError as exc:  # e.g. no word of two letters or no char n-gram seen twice
        raise TrainingDataError(f"the examples give no usable features: {exc}") from None
    held = np.array(_halves([e.key for e in examples], [e.department for e in examples], settings.seed))
    n_dep, n_intents = len(order), len(intent_keys)
    if not (set(dept_y[held].tolist()) == set(dept_y[~held].tolist()) == set(range(n_dep))):
        raise TrainingDataError(
            "every department needs at least two examples, one on each side of the calibration split"
        )
    by_source = dict(settings.source_weights)
    weights = np.array([by_source.get(e.source, 1.0) for e in examples]) if by_source else None
    full = _fit_linear(matrix, dept_y, intent_y, n_dep, n_intents, settings, weights)
    half_weights = None if weights is None else weights[~held]
    half = _fit_linear(matrix[~held], dept_y[~held], intent_y[~held], n_dep, n_intents, settings, half_weights)
    held_dept = matrix[held] @ half.dept_coef.T + half.dept_bias
    held_intent = matrix[held] @ half.intent_coef.T + half.intent_bias
    stacker = LogisticRegression(C=settings.meta_c, max_iter=5000)
    stacker.fit(
        _stack_inputs(held_dept, held_intent, intent_dept),
        dept_y[held],
        sample_weight=None if weights is None else weights[held],
    )
    meta_coef, meta_intercept = stacker.coef_, stacker.intercept_
    if meta_coef.shape[0] == 1:  # binary: softmax over (0, z) is the sigmoid of z
        meta_coef = np.vstack([np.zeros_like(meta_coef), meta_coef])
        meta_intercept = np.concatenate([np.zeros_like(meta_intercept), meta_intercept])
    seen = half.intent_seen[intent_y[held]]
    if seen.all():
        temperature = _fit_temperature(held_intent, intent_y[held], dept_y[held], intent_dept)
    elif seen.any():
        temperature = _fit_temperature(held_intent[seen], intent_y[held][seen], dept_y[held][seen], intent_dept)
    else:
        temperature = 1.0
    return _Fitted(
        examples,
        order,
        intent_keys,
        intent_dept,
        vectorizer,
        full,
        meta_coef,
        meta_intercept,
        stacker,
        temperature,
        settings,
    )


def _prune_intents(coef: Any, keep: float) -> tuple[Any, Any, Any, float]:
    """CSR (by feature) of the largest ``keep`` share of intent weights, int16-quantised."""
    import numpy as np

    magnitude = np.abs(coef)
    cutoff = float(np.quantile(magnitude, 1.0 - keep))
    scale = float(magnitude.max()) / 32767.0 or 1.0
    quantised = np.rint(coef / scale).astype(np.int16)
    by_feature = np.where(magnitude >= cutoff, quantised, 0).T  # (n_features, n_intents)
    features, classes = np.nonzero(by_feature)  # row-major: sorted by feature, then class
    indptr = np.searchsorted(features, np.arange(by_feature.shape[0] + 1)).astype("<u4")
    class_dtype = "<u2" if coef.shape[0] > 255 else "u1"
    weights = by_feature[features, classes].astype("<i2")
    return indptr, classes.astype(class_dtype), weights, scale


def _export(
    fitted: _Fitted,
    *,
    department_bias: Mapping[str, float] | None,
    data_sha256: str | None,
    parity_rows: Sequence[str] | None,
    check_parity: bool = True,
) -> dict[str, Any]:
    import numpy as np

    settings, departments, examples = fitted.settings, fitted.departments, fitted.examples
    full, vectorizer = fitted.full, fitted.vectorizer
    word = vectorizer.transformer_list[0][1]
    char = vectorizer.transformer_list[1][1]
    word_vocab = sorted(word.vocabulary_, key=word.vocabulary_.__getitem__)
    char_vocab = sorted(char.vocabulary_, key=char.vocabulary_.__getitem__)
    size = full.intent_coef.size
    keep = max(settings.intent_keep, min(1.0, settings.min_intent_weights / size))
    indptr, classes, weights, scale = _prune_intents(full.intent_coef, keep)
    sources = sorted({e.source for e in examples})
    header: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "departments": list(departments),
        "intents": [k.split("/", 1)[1] for k in fitted.intent_keys],
        "intent_department": [int(d) for d in fitted.intent_dept],
        "word_vocab": word_vocab,
        "char_vocab": char_vocab,
        "char_ngram": list(settings.char_ngrams),
        "word_tokens": settings.word_tokens,
        "strip_accents": settings.strip_accents,
        "dept_bias": [float(b) for b in full.dept_bias],
        "intent_bias": [float(b) for b in full.intent_bias],
        "intent_scale": scale,
        "meta_coef": fitted.meta_coef.tolist(),
        "meta_bias": _biased(fitted.meta_intercept.tolist(), departments, department_bias),
        "intent_temperature": fitted.temperature,
        "coverage_floor": settings.coverage_floor,
        "cjk_coverage_floor": settings.cjk_coverage_floor,
        "threshold": settings.threshold,
        "metadata": {
            "training_rows": {s: sum(e.source == s for e in examples) for s in sources},
            "data_sha256": data_sha256 or examples_digest(examples),
            "n_features": len(word_vocab) + len(char_vocab),
            "intent_weights_kept": len(weights),
        },
    }
    arrays: dict[str, Any] = {
        "idf": np.concatenate([word.idf_, char.idf_]).astype("<f4"),
        "dept_weights": np.ascontiguousarray(full.dept_coef.T, dtype="<f4"),
        "intent_indptr": indptr,
        "intent_class": classes,
        "intent_weights": weights,
    }
    artifact = {"header": header, "arrays": arrays}
    if check_parity:
        if parity_rows is None:
            step = max(1, math.ceil(len(examples) / PARITY_SAMPLE))
            texts = [e.text for e in examples[::step]]
        else:
            texts = [normalise(t) for t in parity_rows]
        header["metadata"]["parity"] = parity(artifact, fitted, texts[:PARITY_SAMPLE])
    return artifact


def _biased(intercepts: list[float], departments: Sequence[str], bias: Mapping[str, float] | None) -> list[float]:
    bias = bias or {}
    unknown = sorted(set(bias) - set(departments))
    if unknown:
        raise TrainingDataError(f"department_bias names departments without examples: {unknown}")
    return [b + bias[d] if d in bias else b for d, b in zip(departments, intercepts, strict=True)]


def examples_digest(examples: Iterable[Example]) -> str:
    """SHA-256 of the examples (department, intent and normalised text, in order)."""
    digest = hashlib.sha256()
    for e in examples:
        digest.update(f"{e.department}\t{e.intent}\t{e.text}\n".encode())
    return digest.hexdigest()


def build(
    examples: Sequence[Example],
    *,
    departments: Sequence[str] | None = None,
    department_bias: Mapping[str, float] | None = None,
    parity_rows: Sequence[str] | None = None,
    settings: TrainSettings = DEFAULT_SETTINGS,
    data_sha256: str | None = None,
) -> dict[str, Any]:
    """Train a router on ``examples`` and return its artifact (header + arrays) for ``write``.

    ``departments`` fixes the department order (default: sorted names); ``department_bias``
    adds log-odds to some departments' probabilities (e.g. to favour escalation);
    ``parity_rows`` are the texts the runtime-vs-scikit-learn check is run on (default: a
    sample of the training texts); ``data_sha256`` is recorded in the metadata (default: a
    digest of the examples).
    """
    _require_sklearn()
    check_examples(examples)
    fitted = _fit(examples, departments, settings)
    return _export(fitted, department_bias=department_bias, data_sha256=data_sha256, parity_rows=parity_rows)


# --------------------------------------------------------------------------------------------
# Quality


def cross_validate(
    examples: Sequence[Example],
    folds: int = 5,
    seed: int = 0,
    *,
    departments: Sequence[str] | None = None,
    department_bias: Mapping[str, float] | None = None,
    settings: TrainSettings = DEFAULT_SETTINGS,
) -> Scores:
    """Stratified (by department) ``folds``-fold scores of the same pipeline ``build`` runs.

    Each fold trains on the other folds, exports the artifact and routes the fold's rows with
    the runtime classifier, so the figures include pruning, quantisation and ``department_bias``.
    ``seed`` shuffles the folds; the pipeline's own seed is ``settings.seed``.
    """
    import numpy as np

    _require_sklearn()
    from sklearn.model_selection import StratifiedKFold  # type: ignore[import-untyped]

    check_examples(examples)
    counts = Counter(e.department for e in examples)
    smallest, fewest = min((n, d) for d, n in counts.items())
    if folds < 2:
        raise TrainingDataError(f"cross-validation needs at least 2 folds, not {folds}")
    if folds > smallest:
        raise TrainingDataError(
            f"{folds} folds need at least {folds} examples per department; {fewest!r} has {smallest}"
        )
    labels = np.array([e.department for e in examples])
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    predicted: list[str] = [""] * len(examples)
    abstained = 0
    for train_index, test_index in splitter.split(np.zeros(len(examples)), labels):
        fitted = _fit([examples[i] for i in train_index], departments, settings)
        artifact = _export(
            fitted, department_bias=department_bias, data_sha256="", parity_rows=None, check_parity=False
        )
        router = classifier_of(artifact)
        for i in test_index:
            prediction = router.predict(examples[i].text)
            predicted[i] = prediction.department
            abstained += prediction.abstain
    result = score([e.department for e in examples], predicted, departments or sorted(counts))
    return Scores(
        result.rows,
        result.macro_f1,
        result.accuracy,
        result.departments,
        result.confusions,
        abstain_rate=abstained / len(examples),
        folds=folds,
    )


# --------------------------------------------------------------------------------------------
# Runtime parity and the artifact file


def classifier_of(artifact: dict[str, Any]) -> Classifier:
    """A runtime classifier straight from an in-memory artifact (no file round trip)."""
    return Classifier(build_model(artifact["header"], artifact["arrays"]))


def parity(artifact: dict[str, Any], fitted: _Fitted, texts: Sequence[str]) -> dict[str, float]:
    """Agreement of the pure-Python classifier with scikit-learn on ``texts``.

    ``exported_*`` scores scikit-learn's transform with the exported (pruned, quantised)
    weights, so it checks the re-implementation; ``unpruned_*`` uses the float64 model, so it
    also includes the effect of pruning and quantisation.
    """
    import numpy as np

    header, arrays = artifact["header"], artifact["arrays"]
    departments, full = header["departments"], fitted.full
    intent_dept = np.array(header["intent_department"])
    matrix = fitted.vectorizer.transform(list(texts))
    exported = _exported_intent_matrix(arrays, header, matrix.shape[1])
    dept_weights = np.asarray(arrays["dept_weights"], dtype=np.float64)
    dept_scores = matrix @ dept_weights + np.array(header["dept_bias"])
    references = {
        "exported": (
            dept_scores,
            (matrix @ exported.T).toarray() + np.array(header["intent_bias"]),
        ),
        "unpruned": (
            matrix @ full.dept_coef.T + full.dept_bias,
            matrix @ full.intent_coef.T + full.intent_bias,
        ),
    }
    classifier = classifier_of(artifact)
    predictions = [classifier.predict(text) for text in texts]
    report: dict[str, float] = {"rows": len(texts)}
    for name, (dept_s, intent_s) in references.items():
        logits = _stacker_logits(fitted, _stack_inputs(dept_s, intent_s, intent_dept))
        probs = _softmax_rows(logits - fitted.meta_intercept + np.array(header["meta_bias"]))
        same_dept = same_intent = 0
        gap = 0.0
        for prediction, p, scores in zip(predictions, probs, intent_s, strict=True):
            dept = int(np.argmax(p))
            members = np.nonzero(intent_dept == dept)[0]
            intent = header["intents"][members[scores[members].argmax()]]
            same_dept += prediction.department == departments[dept]
            same_intent += prediction.intent == intent
            gap = max(gap, abs(prediction.confidence - float(p[dept])))
        n = max(1, len(texts))
        report[f"{name}_department_agreement"] = same_dept / n
        report[f"{name}_intent_agreement"] = same_intent / n
        report[f"{name}_max_confidence_gap"] = round(gap, 6)
    return report


def _stacker_logits(fitted: _Fitted, inputs: Any) -> Any:
    if fitted.stacker.coef_.shape[0] == fitted.meta_coef.shape[0]:
        return fitted.stacker.decision_function(inputs)
    return inputs @ fitted.meta_coef.T + fitted.meta_intercept


def _softmax_rows(logits: Any) -> Any:
    import numpy as np

    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def _exported_intent_matrix(arrays: dict[str, Any], header: dict[str, Any], n: int) -> Any:
    """The exported intent weights as a sparse (n_intents, n_features) matrix."""
    import numpy as np
    from scipy.sparse import csr_matrix  # type: ignore[import-untyped]

    by_feature = csr_matrix(
        (
            arrays["intent_weights"].astype(np.float64) * header["intent_scale"],
            arrays["intent_class"].astype(np.int64),
            arrays["intent_indptr"].astype(np.int64),
        ),
        shape=(n, len(header["intents"])),
    )
    return by_feature.T.tocsr()


def write(artifact: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Serialise ``artifact`` deterministically: magic, header length, JSON header, arrays.

    Uncompressed on purpose: decompressing costs ~30 ms at every start, while git and wheels
    compress the file anyway. Written to a temporary file first, then renamed into place.
    """
    import numpy as np

    path = Path(path)
    header = dict(artifact["header"])
    blobs = io.BytesIO()
    layout = []
    for name, values in artifact["arrays"].items():
        little = np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("<"))
        blobs.write(bytes(-blobs.tell() % ALIGN))  # aligned arrays index several times faster
        layout.append([name, little.dtype.str, blobs.tell(), little.nbytes])
        blobs.write(little.tobytes())
    header["arrays"] = layout
    encoded = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    encoded += b" " * (-(len(MAGIC) + 4 + len(encoded)) % ALIGN)
    payload = MAGIC + len(encoded).to_bytes(4, "little") + encoded + blobs.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(payload)
    os.replace(temporary, path)
    return path
