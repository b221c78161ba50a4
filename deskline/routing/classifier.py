"""Local triage classifier: the routing cascade's cheap, calibrated, offline first opinion.

Why this module exists and looks the way it does:

* It runs on every customer turn, before any model call, inside a CLI that must start and answer
  in under a second. So it imports neither scikit-learn (≈0.9 s) nor numpy: the model trained by
  :mod:`deskline.routing.train` is exported as plain arrays and scored here in pure Python
  (stdlib ``array``, ``gzip``, ``json``, ``re``). Loading takes tens of milliseconds and one
  prediction about a hundred microseconds.
* The feature transform re-implements scikit-learn's ``TfidfVectorizer`` exactly for the two
  vectorisers used in training (word 1-2-grams with the default ``(?u)\\b\\w\\w+\\b`` tokens, and
  ``char_wb`` n-grams), each with sublinear tf, smoothed idf and l2 normalisation.
* Scoring: a linear department model, a linear intent model (pruned, int16-quantised, stored
  sparse) and a small multinomial logistic "stacker" fed with the department scores and the best
  intent score of each department. The stacker was fitted on out-of-fold scores, so its softmax
  is a calibrated probability of the department.
* Text with almost no known words (gibberish, another language) is shrunk towards the uniform
  distribution, so it abstains instead of being routed with borrowed confidence.
"""

from __future__ import annotations

import gzip
import json
import math
import re
import sys
import unicodedata
from array import array
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, cast

from deskline.handoffs.payload import DEPARTMENTS, Department

__all__ = [
    "DEFAULT_MODEL_PATH",
    "MAGIC",
    "Classifier",
    "Prediction",
    "load_classifier",
    "normalise",
]

DEFAULT_MODEL_PATH = Path(__file__).with_name("model") / "triage.bin.gz"
MAGIC = b"DLTRIAGE"
FORMAT_VERSION = 1

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
    intent_department: tuple[int, ...]
    word_index: dict[str, int]
    char_index: dict[str, int]
    char_range: tuple[int, int]
    idf: array[float]
    dept_weights: array[float]
    dept_bias: tuple[float, ...]
    intent_indptr: array[int]
    intent_class: array[int]
    intent_weights: array[int]
    intent_scale: float
    intent_bias: tuple[float, ...]
    meta_coef: tuple[tuple[float, ...], ...]
    meta_bias: tuple[float, ...]
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

    def scores(self, text: str) -> tuple[list[float], list[float], float]:
        """Raw department scores, raw intent scores and known-word coverage of ``text``."""
        model = self._model
        features, coverage = _features(model, normalise(text))
        return _dept_scores(model, features), _intent_scores(model, features), coverage

    def predict(self, text: str) -> Prediction:
        """Route ``text``: department, intent, calibrated confidences and abstention."""
        model = self._model
        dept_scores, intent_scores, coverage = self.scores(text)
        probs = _department_probabilities(model, dept_scores, intent_scores, coverage)
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


def _features(model: _Model, text: str) -> tuple[list[tuple[int, float]], float]:
    """Sparse l2-normalised tf-idf features of both vectorisers, plus known-word coverage."""
    tokens = _TOKEN.findall(text)
    grams = tokens + [f"{a} {b}" for a, b in zip(tokens, tokens[1:], strict=False)]
    word_counts = _count(model.word_index, grams)
    known = sum(1 for token in tokens if token in model.word_index)
    coverage = known / len(tokens) if tokens else 0.0
    char_counts = _count(model.char_index, _char_wb_ngrams(text, *model.char_range))
    idf = model.idf
    features = _tfidf(word_counts, idf) + _tfidf(char_counts, idf)
    return features, coverage


def _count(index: dict[str, int], grams: list[str]) -> dict[int, int]:
    counts: dict[int, int] = {}
    get = index.get
    for gram in grams:
        fid = get(gram)
        if fid is not None:
            counts[fid] = counts.get(fid, 0) + 1
    return counts


def _char_wb_ngrams(text: str, min_n: int, max_n: int) -> list[str]:
    """scikit-learn's ``char_wb`` analyser: n-grams inside space-padded words only."""
    grams: list[str] = []
    extend = grams.extend
    for word in text.split():
        padded = f" {word} "
        length = len(padded)
        for n in range(min_n, max_n + 1):
            if length <= n:
                grams.append(padded)
                break
            extend([padded[i : i + n] for i in range(length - n + 1)])
    return grams


def _tfidf(counts: dict[int, int], idf: array[float]) -> list[tuple[int, float]]:
    """Sublinear tf times idf, l2-normalised (an all-zero vector stays zero)."""
    log = math.log
    values = [(fid, (1.0 + log(count)) * idf[fid]) for fid, count in counts.items()]
    norm = math.sqrt(sum(value * value for _, value in values))
    if norm == 0.0:
        return []
    return [(fid, value / norm) for fid, value in values]


def _dept_scores(model: _Model, features: list[tuple[int, float]]) -> list[float]:
    weights = model.dept_weights
    s0, s1, s2, s3, s4 = model.dept_bias
    for fid, value in features:
        base = 5 * fid
        s0 += value * weights[base]
        s1 += value * weights[base + 1]
        s2 += value * weights[base + 2]
        s3 += value * weights[base + 3]
        s4 += value * weights[base + 4]
    return [s0, s1, s2, s3, s4]


def _intent_scores(model: _Model, features: list[tuple[int, float]]) -> list[float]:
    indptr, classes, weights = model.intent_indptr, model.intent_class, model.intent_weights
    acc = [0.0] * len(model.intents)
    for fid, value in features:
        for k in range(indptr[fid], indptr[fid + 1]):
            acc[classes[k]] += value * weights[k]
    scale = model.intent_scale
    return [a * scale + b for a, b in zip(acc, model.intent_bias, strict=True)]


def _department_probabilities(
    model: _Model, dept_scores: list[float], intent_scores: list[float], coverage: float
) -> list[float]:
    best_intent = [-math.inf] * len(model.departments)
    for score, dept in zip(intent_scores, model.intent_department, strict=True):
        if score > best_intent[dept]:
            best_intent[dept] = score
    inputs = dept_scores + best_intent
    logits = [
        bias + sum(c * x for c, x in zip(row, inputs, strict=True))
        for row, bias in zip(model.meta_coef, model.meta_bias, strict=True)
    ]
    probs = _softmax(logits)
    trust = min(1.0, coverage / model.coverage_floor) if model.coverage_floor > 0 else 1.0
    if trust < 1.0:
        uniform = (1.0 - trust) / len(probs)
        probs = [trust * p + uniform for p in probs]
    return probs


def _best_intent(model: _Model, intent_scores: list[float], dept: int) -> tuple[str, float]:
    """The best intent of ``dept`` and its probability within that department."""
    members = [k for k, d in enumerate(model.intent_department) if d == dept]
    temperature = model.intent_temperature
    scaled = [intent_scores[k] / temperature for k in members]
    probs = _softmax(scaled)
    top = max(range(len(members)), key=lambda j: (probs[j], -j))
    return model.intents[members[top]], probs[top]


def _softmax(logits: list[float]) -> list[float]:
    peak = max(logits)
    exps = [math.exp(x - peak) for x in logits]
    total = sum(exps)
    return [e / total for e in exps]


def read_artifact(path: Path) -> tuple[dict[str, Any], dict[str, array[Any]]]:
    """The header and the named arrays of an artifact written by ``train.write``."""
    raw = gzip.decompress(path.read_bytes())
    if raw[: len(MAGIC)] != MAGIC:
        raise ValueError(f"{path} is not a deskline triage model")
    offset = len(MAGIC)
    header_len = int.from_bytes(raw[offset : offset + 4], "little")
    offset += 4
    header = cast(dict[str, Any], json.loads(raw[offset : offset + header_len]))
    if header.get("format") != FORMAT_VERSION:
        raise ValueError(f"{path}: unsupported model format {header.get('format')!r}")
    offset += header_len
    arrays: dict[str, array[Any]] = {}
    for name, typecode, start, length in header["arrays"]:
        values = array(typecode)
        values.frombytes(raw[offset + start : offset + start + length])
        if sys.byteorder == "big":
            values.byteswap()
        arrays[name] = values
    return header, arrays


def _build_model(header: dict[str, Any], arrays: dict[str, array[Any]]) -> _Model:
    word_vocab: list[str] = header["word_vocab"]
    char_vocab: list[str] = header["char_vocab"]
    offset = len(word_vocab)
    departments = tuple(cast(Department, d) for d in header["departments"])
    if departments != DEPARTMENTS:
        raise ValueError(f"model departments {departments} != {DEPARTMENTS}")
    return _Model(
        departments=departments,
        intents=tuple(header["intents"]),
        intent_department=tuple(header["intent_department"]),
        word_index=dict(zip(word_vocab, range(offset), strict=True)),
        char_index=dict(zip(char_vocab, range(offset, offset + len(char_vocab)), strict=True)),
        char_range=(int(header["char_ngram"][0]), int(header["char_ngram"][1])),
        idf=arrays["idf"],
        dept_weights=arrays["dept_weights"],
        dept_bias=tuple(header["dept_bias"]),
        intent_indptr=arrays["intent_indptr"],
        intent_class=arrays["intent_class"],
        intent_weights=arrays["intent_weights"],
        intent_scale=float(header["intent_scale"]),
        intent_bias=tuple(header["intent_bias"]),
        meta_coef=tuple(tuple(row) for row in header["meta_coef"]),
        meta_bias=tuple(header["meta_bias"]),
        intent_temperature=float(header["intent_temperature"]),
        coverage_floor=float(header["coverage_floor"]),
        threshold=float(header["threshold"]),
        metadata=dict(header.get("metadata", {})),
    )


@lru_cache(maxsize=4)
def _load_model(path: Path) -> _Model:
    header, arrays = read_artifact(path)
    return _build_model(header, arrays)


@lru_cache(maxsize=16)
def load_classifier(path: Path | None = None, threshold: float | None = None) -> Classifier:
    """The classifier of ``path`` (default: the shipped model), loaded once per process."""
    model = _load_model(Path(path) if path is not None else DEFAULT_MODEL_PATH)
    return Classifier(model, threshold)
