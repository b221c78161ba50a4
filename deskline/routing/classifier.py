"""Local triage classifier: the routing cascade's cheap, calibrated, offline first opinion.

Why this module exists and looks the way it does:

* It runs on every customer turn, before any model call, inside a CLI that must start and answer
  in under a second. So it never imports scikit-learn (≈0.9 s): the model trained by
  :mod:`deskline.routing.train` is exported as flat arrays and scored here with the stdlib plus
  numpy, imported lazily on first load (≈70-110 ms). numpy is needed because the intent model
  has ~1 M weights and a query touches ~20 k of them: 2.3 ms in pure Python, ~30 µs in numpy.
* The feature transform re-implements scikit-learn's ``TfidfVectorizer`` exactly (including
  its ``strip_accents="unicode"`` when the artifact asks for it) for the two vectorisers used in
  training (word 1-2-grams with the default ``(?u)\\b\\w\\w+\\b`` tokens,
  and ``char_wb`` n-grams), each with sublinear tf, smoothed idf and l2 normalisation.
* ``char_wb`` n-grams never cross a word boundary, so each word's n-gram ids are computed once
  and kept in a bounded per-process word cache: a message costs one lookup per word it repeats.
* Scoring: a linear department model, a linear intent model (pruned, int16-quantised, stored
  sparse by feature, with the rows of the most-used features also kept dense: they carry ~90% of
  the weights a query touches, and a small dense product is cheaper than a large gather) and a
  small multinomial logistic "stacker" fed with the department scores and the best intent score
  of each department. The stacker was fitted on out-of-fold scores, so its softmax is a
  calibrated probability of the department.
* Text with almost no known words (gibberish, another language) is shrunk towards the uniform
  distribution, so it abstains instead of being routed with borrowed confidence. With the
  "cjk" word tokens (one token per Han/kana character, see ``CJK_TOKEN_PATTERN``) a Chinese
  text's "words" are its character bigrams, with their own floor (``cjk_coverage_floor``):
  single characters are nearly all known, so counting them would trust any Chinese string.
* It knows no department: their names (lowercase identifiers) and order come from the artifact's
  header, so one module serves the built-in desk's router and any desk's own.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from itertools import chain, pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    FloatArray = npt.NDArray[np.float64]
    Array = npt.NDArray[Any]

__all__ = [
    "CJK_TOKEN_PATTERN",
    "FORMAT_VERSION",
    "MAGIC",
    "Classifier",
    "Prediction",
    "build_model",
    "load_classifier",
    "normalise",
    "read_artifact",
    "strip_accents",
]

MAGIC = b"DLTRIAGE"
FORMAT_VERSION = 1

_MIN_TRUST = 0.1
_DENSE_FEATURES = 2000  # intent-model rows kept dense: 2,000 x ~160 intents x 4 bytes = ~1.3 MB
_WORD_CACHE_LIMIT = 50_000  # words whose char n-gram ids are remembered (cleared when full)
_TOKEN = re.compile(r"(?u)\b\w\w+\b")
# Chinese and Japanese are written without spaces, so ``\b\w\w+\b`` would make a whole clause
# one token. With the "cjk" tokens each Han or kana character is a token of its own (the word
# bigrams are then its character bigrams, across the whole string) and every other run of two or
# more word characters is a token exactly as before: text without CJK is tokenised identically.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
CJK_TOKEN_PATTERN = rf"(?u)[{_CJK}]|[^\W{_CJK}]{{2,}}"
_TOKEN_PATTERNS = {"words": _TOKEN, "cjk": re.compile(CJK_TOKEN_PATTERN)}
_IS_CJK = re.compile(rf"[{_CJK}]")
_SPACES = re.compile(r"\s+")
_DEPARTMENT_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


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

    department: str
    intent: str
    confidence: float
    intent_confidence: float
    abstain: bool
    alternatives: tuple[tuple[str, float], ...]


@dataclass(frozen=True, slots=True)
class _Model:
    """The loaded artifact, immutable and shared by every ``Classifier`` of a process."""

    departments: tuple[str, ...]
    intents: tuple[str, ...]
    dept_slices: tuple[slice, ...]  # intents are grouped by department, in header order
    dept_starts: Array
    word_index: dict[str, int]
    char_index: dict[str, int]
    char_range: tuple[int, int]
    token: re.Pattern[str]  # the word tokeniser: ``\b\w\w+\b`` or the CJK-aware one
    idf: Array
    dept_weights: Array  # (n_features, n_departments) float32
    dept_bias: Array
    intent_indptr: Array  # CSR by feature over the intents
    intent_class: Array
    intent_weights: Array  # float32 (stored as int16 times the header's intent_scale)
    intent_dense_row: Array  # feature id -> its row in intent_dense, or -1 (then it is in the sparse part)
    intent_dense: Array  # (n_dense, n_intents) float32: the rows of the features with most weights
    intent_bias: Array
    meta_coef: Array  # (n_dep, 2 n_dep): department scores then best intent score per department
    meta_bias: Array
    intent_temperature: float
    coverage_floor: float
    cjk_coverage_floor: float  # the floor for text with CJK characters (counted by bigrams)
    strip_accents: bool  # features are computed on the text without accents
    threshold: float
    metadata: dict[str, Any]
    word_grams: dict[str, tuple[int, ...]]  # word -> its known char_wb n-gram ids (a cache)
    recent: dict[str, tuple[list[float], FloatArray]]  # the last text asked -> its scores (a cache of one)


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
    def calibrated_threshold(self) -> float:
        """The threshold the router file was calibrated with (``threshold`` may be set above it,
        to send more messages to a model planner)."""
        return self._model.threshold

    @property
    def departments(self) -> tuple[str, ...]:
        """The departments this model routes to, in the artifact's order."""
        return self._model.departments

    @property
    def metadata(self) -> dict[str, Any]:
        """What the artifact says about its training (sizes, data digests, parity check)."""
        return self._model.metadata

    def with_threshold(self, threshold: float) -> Classifier:
        """The same model with another abstention threshold."""
        return Classifier(self._model, threshold)

    def probabilities(self, text: str) -> tuple[list[float], FloatArray]:
        """Calibrated department probabilities (``departments`` order) and raw intent scores.

        The last text asked is remembered: a turn asks about its message twice (the dialogue
        step, then the routing cascade), one after the other. Only the last: repeated messages
        across turns are the route cache's business (``RouteCache``), which a caller can turn off."""
        model = self._model
        found = model.recent.get(text)
        if found is not None:
            return list(found[0]), found[1].copy()
        key, text = text, normalise(text)
        fids, values, coverage = _features(model, strip_accents(text) if model.strip_accents else text)
        dept_scores = values @ model.dept_weights[fids] + model.dept_bias
        intent_scores = _intent_scores(model, fids, values)
        probs = _department_probabilities(model, dept_scores, intent_scores, coverage)
        model.recent.clear()
        model.recent[key] = (list(probs), intent_scores.copy())
        return probs, intent_scores

    def predict(self, text: str) -> Prediction:
        """Route ``text``: department, intent, calibrated confidences and abstention.

        ``alternatives`` holds the top three departments (fewer when the model has fewer).
        """
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

    tokens = model.token.findall(text)
    word_get = model.word_index.get
    cjk = model.token is not _TOKEN and _IS_CJK.search(text) is not None
    units = _coverage_units(tokens) if cjk else tokens
    known = sum(1 for unit in units if unit in model.word_index)
    coverage = known / len(units) if units else 0.0
    if cjk:  # full trust is reached at the CJK floor, not the general one
        coverage = coverage * model.coverage_floor / model.cjk_coverage_floor if model.cjk_coverage_floor > 0 else 1.0
    grams = tokens + [f"{a} {b}" for a, b in pairwise(tokens)]
    word_counts = Counter(map(word_get, grams))
    word_counts.pop(None, None)
    cache = model.word_grams
    per_word: list[tuple[int, ...]] = []
    for word in text.split():
        ids = cache.get(word)
        if ids is None:
            ids = _word_char_ids(model, word)
            if len(cache) >= _WORD_CACHE_LIMIT:
                cache.clear()
            cache[word] = ids
        per_word.append(ids)
    char_counts = Counter(chain.from_iterable(per_word))
    n_word, n = len(word_counts), len(word_counts) + len(char_counts)
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0), coverage
    # Sublinear tf times idf, each vectoriser's part l2-normalised on its own (as in training).
    fids = np.fromiter(chain(word_counts, char_counts), dtype=np.int64, count=n)
    tf = np.fromiter(chain(word_counts.values(), char_counts.values()), dtype=np.float64, count=n)
    values = (1.0 + np.log(tf)) * model.idf[fids]
    for part in (values[:n_word], values[n_word:]):
        if len(part):
            part /= math.sqrt(float(part @ part))
    return fids, values, coverage


def strip_accents(text: str) -> str:
    """scikit-learn's ``strip_accents="unicode"``: NFKD without combining marks ("contraseña" ->
    "contrasena"), the text itself when it is ASCII. People often type Spanish without accents."""
    if text.isascii():
        return text
    return "".join([c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)])


def _coverage_units(tokens: list[str]) -> list[str]:
    """What "known words" are counted over: each non-CJK token, and within each run of CJK
    character tokens its character bigrams (a run of one character counts as itself). Single
    Chinese characters are nearly all known, so they would make any Chinese text look familiar;
    a bigram is about the size of a Chinese word."""
    units: list[str] = []
    run: list[str] = []
    for token in [*tokens, ""]:
        if len(token) == 1 and _IS_CJK.match(token):
            run.append(token)
            continue
        if run:
            units.extend([f"{a} {b}" for a, b in pairwise(run)] if len(run) > 1 else run)
            run = []
        if token:
            units.append(token)
    return units


def _word_char_ids(model: _Model, word: str) -> tuple[int, ...]:
    """The vocabulary ids of one word's ``char_wb`` n-grams (unknown n-grams dropped)."""
    get = model.char_index.get
    return tuple(i for i in map(get, char_wb_ngrams(word, *model.char_range)) if i is not None)


def char_wb_ngrams(word: str, min_n: int, max_n: int) -> list[str]:
    """scikit-learn's ``char_wb`` n-grams of one word: the word padded with a space each side,
    every n-gram of it for each n, and a padded word no longer than n once, ending the loop."""
    padded = f" {word} "
    length = len(padded)
    grams: list[str] = []
    for n in range(min_n, max_n + 1):
        if length <= n:
            grams.append(padded)
            break
        grams.extend([padded[i : i + n] for i in range(length - n + 1)])
    return grams


def _intent_scores(model: _Model, fids: Array, values: FloatArray) -> FloatArray:
    """The intent model times the feature vector: a dense product over the features whose rows
    are kept dense, and a sparse gather-and-bincount over the rest."""
    import numpy as np

    rows = model.intent_dense_row[fids]
    dense = rows >= 0
    acc = values[dense].astype(np.float32) @ model.intent_dense[rows[dense]] + model.intent_bias
    sparse = ~dense
    fids, values = fids[sparse], values[sparse]
    starts = model.intent_indptr[fids]
    lengths = model.intent_indptr[fids + 1] - starts
    total = int(lengths.sum())
    if total == 0:
        return cast("FloatArray", acc)
    offsets = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
    touched = np.arange(total) + offsets
    weighted = model.intent_weights[touched] * np.repeat(values, lengths)
    return cast("FloatArray", acc + np.bincount(model.intent_class[touched], weighted, minlength=len(model.intents)))


def _dense_rows(indptr: Array, classes: Array, weights: Array, n_intents: int) -> tuple[Array, Array]:
    """The feature -> dense row map and the dense rows of the ``_DENSE_FEATURES`` features with
    the most intent weights (ties broken by feature id, so the split is deterministic)."""
    import numpy as np

    counts = np.diff(indptr)
    chosen = np.sort(np.argsort(-counts, kind="stable")[: min(_DENSE_FEATURES, len(counts))])
    chosen = chosen[counts[chosen] > 0]
    row_of = np.full(len(counts), -1, dtype=np.int64)
    row_of[chosen] = np.arange(len(chosen))
    dense = np.zeros((len(chosen), n_intents), dtype=np.float32)
    lengths = counts[chosen]
    within = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    entries = np.repeat(indptr[chosen], lengths) + within
    dense[np.repeat(np.arange(len(chosen)), lengths), classes[entries]] = weights[entries]
    return row_of, dense


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
    departments = _departments(header.get("departments"))
    intent_department = np.asarray(header["intent_department"])
    if (
        len(intent_department) != len(header["intents"])
        or np.any(np.diff(intent_department) < 0)
        or set(intent_department.tolist()) != set(range(len(departments)))
    ):
        raise ValueError("model intents must be grouped by department, in the header's department order")
    scale = float(header["intent_scale"])
    starts = np.searchsorted(intent_department, np.arange(len(departments) + 1))
    indptr = np.asarray(arrays["intent_indptr"], dtype=np.int64)
    weights = arrays["intent_weights"].astype(np.float32) * np.float32(scale)
    dense_row, dense = _dense_rows(indptr, arrays["intent_class"], weights, len(header["intents"]))
    return _Model(
        departments=departments,
        intents=tuple(header["intents"]),
        dept_slices=tuple(slice(int(a), int(b)) for a, b in pairwise(starts)),
        dept_starts=starts[:-1],
        word_index=dict(zip(word_vocab, range(offset), strict=True)),
        char_index=dict(zip(char_vocab, range(offset, offset + len(char_vocab)), strict=True)),
        char_range=(int(header["char_ngram"][0]), int(header["char_ngram"][1])),
        token=_token_pattern(header.get("word_tokens", "words")),
        idf=np.asarray(arrays["idf"], dtype=np.float64),
        dept_weights=np.asarray(arrays["dept_weights"]).reshape(-1, len(departments)),
        dept_bias=np.asarray(header["dept_bias"], dtype=np.float64),
        intent_indptr=indptr,
        intent_class=arrays["intent_class"],
        intent_weights=weights,
        intent_dense_row=dense_row,
        intent_dense=dense,
        intent_bias=np.asarray(header["intent_bias"], dtype=np.float64),
        meta_coef=np.asarray(header["meta_coef"], dtype=np.float64),
        meta_bias=np.asarray(header["meta_bias"], dtype=np.float64),
        intent_temperature=float(header["intent_temperature"]),
        coverage_floor=float(header["coverage_floor"]),
        cjk_coverage_floor=float(header.get("cjk_coverage_floor", header["coverage_floor"])),
        strip_accents=bool(header.get("strip_accents", False)),
        threshold=float(header["threshold"]),
        metadata=dict(header.get("metadata", {})),
        word_grams={},
        recent={},
    )


def _token_pattern(name: object) -> re.Pattern[str]:
    """The header's word tokeniser (older files have none: ``words``)."""
    if not isinstance(name, str) or name not in _TOKEN_PATTERNS:
        raise ValueError(f"unknown word tokeniser {name!r}; known: {sorted(_TOKEN_PATTERNS)}")
    return _TOKEN_PATTERNS[name]


def _departments(names: object) -> tuple[str, ...]:
    """The header's department names: at least two distinct lowercase identifiers."""
    if not isinstance(names, list) or len(names) < 2:
        raise ValueError(f"model departments must be a list of at least two names, not {names!r}")
    for name in names:
        if not isinstance(name, str) or not _DEPARTMENT_NAME.match(name):
            raise ValueError(f"model department {name!r} is not a lowercase identifier")
    if len(set(names)) != len(names):
        raise ValueError(f"model departments repeat a name: {names}")
    return tuple(names)


@lru_cache(maxsize=4)
def _load_model(path: Path) -> _Model:
    header, arrays = read_artifact(path)
    return build_model(header, arrays)


@lru_cache(maxsize=16)
def load_classifier(path: Path | str, threshold: float | None = None) -> Classifier:
    """The router file at ``path`` (a desk's ``router``), loaded once per process."""
    return Classifier(_load_model(Path(path)), threshold)
