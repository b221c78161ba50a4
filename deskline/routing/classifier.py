"""Local triage classifier: the routing cascade's cheap, calibrated, offline first opinion.

Why this module exists and looks the way it does:

* It runs on every customer turn, before any model call, inside a CLI that must start and answer
  in under a second. So it never imports scikit-learn (≈0.9 s): the model trained by
  :mod:`deskline.routing.train` is exported as flat arrays and scored here with the stdlib plus
  numpy, imported lazily on first load (≈70-110 ms). numpy is needed because the intent model
  has ~1 M weights and a query touches ~20 k of them: 2.3 ms in pure Python, ~30 µs in numpy.
* The feature transform re-implements scikit-learn's ``TfidfVectorizer`` exactly for the two
  vectorisers used in training (word 1-2-grams with the default ``(?u)\\b\\w\\w+\\b`` tokens,
  and ``char_wb`` n-grams), each with sublinear tf, smoothed idf and l2 normalisation.
* Scoring: a linear department model, a linear intent model (pruned, int16-quantised, stored
  sparse by feature) and a small multinomial logistic "stacker" fed with the department scores
  and the best intent score of each department. The stacker was fitted on out-of-fold scores, so
  its softmax is a calibrated probability of the department.
* Text with almost no known words (gibberish, another language) is shrunk towards the uniform
  distribution, so it abstains instead of being routed with borrowed confidence.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from deskline.handoffs.payload import DEPARTMENTS, Department

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    FloatArray = npt.NDArray[np.float64]
    Array = npt.NDArray[Any]

__all__ = [
    "DEFAULT_MODEL_PATH",
    "FORMAT_VERSION",
    "MAGIC",
    "Classifier",
    "Prediction",
    "build_model",
    "load_classifier",
    "normalise",
    "read_artifact",
]

DEFAULT_MODEL_PATH = Path(__file__).with_name("model") / "triage.bin"
MAGIC = b"DLTRIAGE"
FORMAT_VERSION = 1

_MIN_TRUST = 0.1
_TOKEN = re.compile(r"(?u)\b\w\w+\b")
_SPACES = re.compile(r"\s+")


def normalise(text: str) -> str:
    """NFKC, lower-case, collapse whitespace and strip punctuation at both ends.

    The result is both the classifier's input and the route-cache key, so two messages that
    differ only in case, spacing or trailing punctuation share one cache entry and one route.
    """
    text = _SPACES.sub(" ", unicodedata.normalize("NFKC", text).lower()).strip()
    start, end = 0, len(text)
    while start < end and _is_edge_junk(text[start]):
        start += 1
    while end > start and _is_edge_junk(text[end - 1]):
        end -= 1
    return text[start:end]


def _is_edge_junk(char: str) -> bool:
    return char.isspace() or unicodedata.category(char).startswith("P")


@dataclass(frozen=True, slots=True)
class Prediction:
    """One routing decision; ``alternatives`` is the top-3 departments, best first."""

    department: Department
    intent: str
    confidence: float
    intent_confidence: float
    abstain: bool
    alternatives: tuple[tuple[Department, float], ...]


@dataclass(frozen=True, slots=True)
class _Model:
    """The loaded artifact, immutable and shared by every ``Classifier`` of a process."""

    departments: tuple[Department, ...]
    intents: tuple[str, ...]
    dept_slices: tuple[slice, ...]  # intents are grouped by department, in DEPARTMENTS order
    dept_starts: Array
    word_index: dict[str, int]
    char_index: dict[str, int]
    char_range: tuple[int, int]
    idf: Array
    dept_weights: Array  # (n_features, 5) float32
    dept_bias: Array
    intent_indptr: Array  # CSR by feature over the intents
    intent_class: Array
    intent_weights: Array  # float32 (stored as int16 times the header's intent_scale)
    intent_bias: Array
    meta_coef: Array  # (5, 10): department scores then best intent score per department
    meta_bias: Array
    intent_temperature: float
    coverage_floor: float
    threshold: float
    metadata: dict[str, Any]


class Classifier:
    """Routes one customer message to a department with a calibrated confidence."""

    __slots__ = ("_model", "_threshold")

    def __init__(self, model: _Model, threshold: float | None = None) -> None:
        self._model = model
        self._threshold = model.threshold if threshold is None else float(threshold)

    @property
    def threshold(self) -> float:
        """Below this department probability the prediction abstains."""
        return self._threshold

    @property
    def metadata(self) -> dict[str, Any]:
        """What the artifact says about its training (sizes, data digests, parity check)."""
        return self._model.metadata

    def with_threshold(self, threshold: float) -> Classifier:
        """The same model with another abstention threshold."""
        return Classifier(self._model, threshold)

    def probabilities(self, text: str) -> tuple[list[float], FloatArray]:
        """Calibrated department probabilities (``DEPARTMENTS`` order) and raw intent scores."""
        model = self._model
        fids, values, coverage = _features(model, normalise(text))
        dept_scores = values @ model.dept_weights[fids] + model.dept_bias
        intent_scores = _intent_scores(model, fids, values)
        probs = _department_probabilities(model, dept_scores, intent_scores, coverage)
        return probs, intent_scores

    def predict(self, text: str) -> Prediction:
        """Route ``text``: department, intent, calibrated confidences and abstention."""
        model = self._model
        probs, intent_scores = self.probabilities(text)
        ranked = sorted(range(len(probs)), key=lambda k: (-probs[k], k))
        best = ranked[0]
        intent, intent_prob = _best_intent(model, intent_scores, best)
        confidence = probs[best]
        return Prediction(
            department=model.departments[best],
            intent=intent,
            confidence=confidence,
            intent_confidence=confidence * intent_prob,
            abstain=confidence < self._threshold,
            alternatives=tuple((model.departments[k], probs[k]) for k in ranked[:3]),
        )


def _features(model: _Model, text: str) -> tuple[Array, FloatArray, float]:
    """Feature ids and l2-normalised tf-idf values of both vectorisers, and word coverage."""
    import numpy as np

    tokens = _TOKEN.findall(text)
    word_get = model.word_index.get
    known = sum(1 for token in tokens if token in model.word_index)
    coverage = known / len(tokens) if tokens else 0.0
    grams = tokens + [f"{a} {b}" for a, b in pairwise(tokens)]
    word_counts = Counter(map(word_get, grams))
    char_counts = Counter(map(model.char_index.get, _char_wb_ngrams(text, *model.char_range)))
    word_counts.pop(None, None)
    char_counts.pop(None, None)
    parts = [_tfidf(np, counts, model.idf) for counts in (word_counts, char_counts) if counts]
    if not parts:
        return np.zeros(0, dtype=np.int64), np.zeros(0), coverage
    if len(parts) == 1:
        return parts[0][0], parts[0][1], coverage
    return np.concatenate([parts[0][0], parts[1][0]]), np.concatenate([parts[0][1], parts[1][1]]), coverage


def _char_wb_ngrams(text: str, min_n: int, max_n: int) -> list[str]:
    """scikit-learn's ``char_wb`` n-grams, plus some that no vocabulary can contain.

    sklearn pads every word with one space and takes its n-grams (a padded word shorter than n
    once, at the first such n). Joining the padded words with a second space gives the same
    n-grams in one pass per n; the extra ones that straddle two words contain two adjacent
    spaces, which no padded word has, so they never match the vocabulary.
    """
    joined = " " + "  ".join(text.split()) + " "
    length = len(joined)
    grams: list[str] = []
    for n in range(min_n, max_n + 1):
        grams.extend([joined[i : i + n] for i in range(length - n + 1)])
    return grams


def _tfidf(np: Any, counts: Counter[int | None], idf: Array) -> tuple[Array, FloatArray]:
    """Sublinear tf times idf, l2-normalised (counts is never empty here)."""
    fids = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
    tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
    values = (1.0 + np.log(tf)) * idf[fids]
    return fids, values / math.sqrt(float(values @ values))


def _intent_scores(model: _Model, fids: Array, values: FloatArray) -> FloatArray:
    """Sparse (by feature) times the feature vector: gather the touched weights, bincount."""
    import numpy as np

    starts = model.intent_indptr[fids]
    lengths = model.intent_indptr[fids + 1] - starts
    total = int(lengths.sum())
    if total == 0:
        return cast("FloatArray", model.intent_bias.copy())
    offsets = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
    touched = np.arange(total) + offsets
    weighted = model.intent_weights[touched] * np.repeat(values, lengths)
    acc = np.bincount(model.intent_class[touched], weighted, minlength=len(model.intents))
    return cast("FloatArray", acc + model.intent_bias)


def _department_probabilities(
    model: _Model, dept_scores: FloatArray, intent_scores: FloatArray, coverage: float
) -> list[float]:
    import numpy as np

    best_intent = np.maximum.reduceat(intent_scores, model.dept_starts)
    logits = model.meta_coef @ np.concatenate([dept_scores, best_intent]) + model.meta_bias
    probs = _softmax([float(x) for x in logits])
    trust = min(1.0, coverage / model.coverage_floor) if model.coverage_floor > 0 else 1.0
    if trust < 1.0:
        trust = max(trust, _MIN_TRUST)  # keep the model's ranking, drop its confidence
        uniform = (1.0 - trust) / len(probs)
        probs = [trust * p + uniform for p in probs]
    return probs


def _best_intent(model: _Model, intent_scores: FloatArray, dept: int) -> tuple[str, float]:
    """The best intent of ``dept`` and its probability within that department."""
    members = model.dept_slices[dept]
    scaled = (intent_scores[members] / model.intent_temperature).tolist()
    probs = _softmax(scaled)
    top = max(range(len(probs)), key=lambda j: (probs[j], -j))
    return model.intents[members.start + top], probs[top]


def _softmax(logits: list[float]) -> list[float]:
    peak = max(logits)
    exps = [math.exp(x - peak) for x in logits]
    total = sum(exps)
    return [e / total for e in exps]


def read_artifact(path: Path) -> tuple[dict[str, Any], dict[str, Array]]:
    """The header and the named arrays of an artifact written by ``train.write``."""
    import numpy as np

    raw = path.read_bytes()
    if raw[: len(MAGIC)] != MAGIC:
        raise ValueError(f"{path} is not a deskline triage model")
    offset = len(MAGIC)
    header_len = int.from_bytes(raw[offset : offset + 4], "little")
    offset += 4
    header = cast(dict[str, Any], json.loads(raw[offset : offset + header_len]))
    if header.get("format") != FORMAT_VERSION:
        raise ValueError(f"{path}: unsupported model format {header.get('format')!r}")
    blobs = memoryview(raw)[offset + header_len :]
    arrays = {
        name: np.frombuffer(blobs[start : start + length], dtype=np.dtype(dtype))
        for name, dtype, start, length in header["arrays"]
    }
    return header, arrays


def build_model(header: dict[str, Any], arrays: dict[str, Array]) -> _Model:
    """The immutable runtime model of an artifact's header and arrays."""
    import numpy as np

    word_vocab: list[str] = header["word_vocab"]
    char_vocab: list[str] = header["char_vocab"]
    offset = len(word_vocab)
    departments = tuple(cast(Department, d) for d in header["departments"])
    if departments != DEPARTMENTS:
        raise ValueError(f"model departments {departments} != {DEPARTMENTS}")
    intent_department = np.asarray(header["intent_department"])
    if np.any(np.diff(intent_department) < 0) or set(intent_department) != set(range(5)):
        raise ValueError("model intents must be grouped by department, in DEPARTMENTS order")
    scale = float(header["intent_scale"])
    starts = np.searchsorted(intent_department, np.arange(len(departments) + 1))
    return _Model(
        departments=departments,
        intents=tuple(header["intents"]),
        dept_slices=tuple(slice(int(a), int(b)) for a, b in pairwise(starts)),
        dept_starts=starts[:-1],
        word_index=dict(zip(word_vocab, range(offset), strict=True)),
        char_index=dict(zip(char_vocab, range(offset, offset + len(char_vocab)), strict=True)),
        char_range=(int(header["char_ngram"][0]), int(header["char_ngram"][1])),
        idf=np.asarray(arrays["idf"], dtype=np.float64),
        dept_weights=np.asarray(arrays["dept_weights"]).reshape(-1, len(departments)),
        dept_bias=np.asarray(header["dept_bias"], dtype=np.float64),
        intent_indptr=np.asarray(arrays["intent_indptr"], dtype=np.int64),
        intent_class=arrays["intent_class"],
        intent_weights=arrays["intent_weights"].astype(np.float32) * np.float32(scale),
        intent_bias=np.asarray(header["intent_bias"], dtype=np.float64),
        meta_coef=np.asarray(header["meta_coef"], dtype=np.float64),
        meta_bias=np.asarray(header["meta_bias"], dtype=np.float64),
        intent_temperature=float(header["intent_temperature"]),
        coverage_floor=float(header["coverage_floor"]),
        threshold=float(header["threshold"]),
        metadata=dict(header.get("metadata", {})),
    )


@lru_cache(maxsize=4)
def _load_model(path: Path) -> _Model:
    header, arrays = read_artifact(path)
    return build_model(header, arrays)


@lru_cache(maxsize=16)
def load_classifier(path: Path | None = None, threshold: float | None = None) -> Classifier:
    """The classifier of ``path`` (default: the shipped model), loaded once per process."""
    model = _load_model(Path(path) if path is not None else DEFAULT_MODEL_PATH)
    return Classifier(model, threshold)
