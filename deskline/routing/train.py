"""Training of the local triage classifier (needs scikit-learn; the runtime does not).

Why it is built this way:

* Department labels are unions of very different intents (``human`` is both "my card was
  stolen" and "let me talk to a person"), which a single linear department model separates
  poorly. So two linear SVMs are trained on the same tf-idf features (word 1-2-grams plus
  ``char_wb`` 2-5-grams, sublinear tf): one over the 5 departments and one over every
  (department, intent) pair. A multinomial logistic stacker turns the department scores and the
  best intent score of each department into calibrated department probabilities. It is fitted
  on scores of held-out rows (half of each intent, scored by SVMs fitted on the other half), so
  its probabilities are honest about unseen text.
* ``python -m deskline.routing.train`` rebuilds the shipped artifact deterministically: fixed
  seeds (liblinear's included), sorted vocabularies, a fixed data order and an uncompressed
  binary file. It takes ~25-45 s on two vCPUs, most of it the intent SVM.
* The exported intent matrix keeps only its largest weights (int16), which keeps the artifact
  small and the pure-Python scoring in :mod:`deskline.routing.classifier` fast; ``build``
  checks that the pure-Python predictions agree with scikit-learn's on a held-out sample.
* Data: BANKING77 (train split minus a 10 % hold-out, see ``prepare_data``), CLINC150 train and
  our own hand-written ``desk_examples.csv``. The Bitext file is never read here. Intents are
  the source labels, except that the 90 intents of six off-topic CLINC150 domains (travel,
  home, ...) are learned as one ``off_topic_<domain>`` class each.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import math
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from deskline.handoffs.payload import DEPARTMENTS, Department
from deskline.routing.classifier import (
    DEFAULT_MODEL_PATH,
    FORMAT_VERSION,
    MAGIC,
    Classifier,
    build_model,
    normalise,
)

DATA_DIR = Path(__file__).parents[1] / "agents" / "builtin" / "router" / "data"
TRAIN_FILES = ("banking77_train.csv", "clinc150_train.csv", "desk_examples.csv")
HOLDOUT_FILE = "banking77_holdout.csv"
HOLDOUT_EVERY = 10  # every 10th BANKING77 row of an intent (by text digest) is held out

SEED = 0
WORD_NGRAMS = (1, 2)
CHAR_NGRAMS = (2, 5)
CHAR_MIN_DF = 2
SVM_C = 0.5
META_C = 1.0
INTENT_KEEP = 0.03  # fraction of intent weights (largest |w|) kept in the artifact
COVERAGE_FLOOR = 0.5  # below this share of known words, confidence shrinks towards uniform
THRESHOLD = 0.5  # default abstention threshold on the department probability
# Log-odds added to ``human``: a missed fraud report or stolen card costs far more than an extra
# escalation. 1.0 buys ~+1.5 points of human recall for ~-0.5 point of out-of-scope macro-F1.
HUMAN_BIAS = 1.0
PARITY_SAMPLE = 2000
ALIGN = 16


# CLINC150 domains with nothing to do with a support desk. Their 90 intents are learned as one
# class per domain: the desk only needs "off topic, which kind", and it halves training time.
OFF_TOPIC_DOMAINS: dict[str, str] = {
    "kitchen_and_dining": (
        "accept_reservations calories cancel_reservation confirm_reservation cook_time food_last "
        "how_busy ingredient_substitution ingredients_list meal_suggestion nutrition_info recipe "
        "restaurant_reservation restaurant_reviews restaurant_suggestion"
    ),
    "home": (
        "calendar calendar_update next_song order order_status play_music reminder "
        "reminder_update shopping_list shopping_list_update smart_home todo_list todo_list_update "
        "update_playlist what_song"
    ),
    "auto_and_commute": (
        "current_location directions distance gas gas_type jump_start last_maintenance mpg "
        "oil_change_how oil_change_when schedule_maintenance tire_change tire_pressure traffic uber"
    ),
    "travel": (
        "book_flight book_hotel car_rental carry_on exchange_rate flight_status "
        "international_visa lost_luggage plug_type timezone translate travel_alert "
        "travel_notification travel_suggestion vaccines"
    ),
    "utility": (
        "alarm calculator date definition find_phone flip_coin make_call measurement_conversion "
        "roll_dice share_location spelling text time timer weather"
    ),
    "work": (
        "direct_deposit income insurance insurance_change meeting_schedule next_holiday payday "
        "pto_balance pto_request pto_request_status pto_used rollover_401k schedule_meeting taxes w2"
    ),
}
_OFF_TOPIC_DOMAIN = {i: d for d, names in OFF_TOPIC_DOMAINS.items() for i in names.split()}


@dataclass(frozen=True, slots=True)
class Example:
    """One labelled training utterance (text already normalised)."""

    text: str
    intent: str
    department: str
    source: str

    @property
    def key(self) -> str:
        return f"{self.department}/{self.intent}"


@dataclass(frozen=True, slots=True)
class LinearFit:
    """The coefficients of the two linear SVMs fitted on one set of rows."""

    dept_coef: Any
    dept_bias: Any
    intent_coef: Any
    intent_bias: Any


def read_rows(path: Path, source: str) -> list[Example]:
    """The rows of one labelled CSV (text, source_intent, department, ambiguous)."""
    with path.open(encoding="utf-8", newline="") as handle:
        return [
            Example(normalise(row["text"]), row["source_intent"], row["department"], source)
            for row in csv.DictReader(handle)
            if row["department"] in DEPARTMENTS and normalise(row["text"])
        ]


def read_training_rows(data_dir: Path) -> list[Example]:
    """All training rows, in file order, with off-topic CLINC150 intents grouped by domain."""
    rows: list[Example] = []
    for name in TRAIN_FILES:
        rows.extend(read_rows(data_dir / name, name.split("_")[0]))
    return [_grouped(row) for row in rows]


def _grouped(row: Example) -> Example:
    domain = _OFF_TOPIC_DOMAIN.get(row.intent)
    if row.source != "clinc150" or row.department != "other" or domain is None:
        return row
    return Example(row.text, f"off_topic_{domain}", row.department, row.source)


def prepare_data(source_dir: Path, data_dir: Path = DATA_DIR) -> None:
    """Derive the shipped CSVs from the public files: BANKING77 train minus a hold-out split.

    Within each intent the rows are ordered by the SHA-256 of their text and every
    ``HOLDOUT_EVERY``-th one goes to the hold-out file, which is never trained on.
    """
    with (source_dir / "banking77_train.csv").open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        fields = list(reader.fieldnames or [])
        rows = list(reader)
    by_intent: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        by_intent[row["source_intent"]].append(row)
    held: set[int] = set()
    for members in by_intent.values():
        ordered = sorted(members, key=lambda r: hashlib.sha256(r["text"].encode()).hexdigest())
        held.update(id(r) for r in ordered[HOLDOUT_EVERY - 1 :: HOLDOUT_EVERY])
    _write_csv(data_dir / "banking77_train.csv", fields, [r for r in rows if id(r) not in held])
    _write_csv(data_dir / HOLDOUT_FILE, fields, [r for r in rows if id(r) in held])
    clinc = (source_dir / "clinc150_train.csv").read_bytes()
    (data_dir / "clinc150_train.csv").write_bytes(clinc)


def _write_csv(path: Path, fields: list[str], rows: list[dict[str, str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def _vectorizer() -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer  # type: ignore[import-untyped]
    from sklearn.pipeline import FeatureUnion  # type: ignore[import-untyped]

    return FeatureUnion(
        [
            (
                "word",
                TfidfVectorizer(ngram_range=WORD_NGRAMS, sublinear_tf=True, lowercase=False),
            ),
            (
                "char",
                TfidfVectorizer(
                    analyzer="char_wb",
                    ngram_range=CHAR_NGRAMS,
                    min_df=CHAR_MIN_DF,
                    sublinear_tf=True,
                    lowercase=False,
                ),
            ),
        ]
    )


def _fit_linear(matrix: Any, dept_labels: Any, intent_labels: Any) -> LinearFit:
    """Both SVMs on one set of rows (runs in a worker process)."""
    from sklearn.svm import LinearSVC  # type: ignore[import-untyped]

    dept = LinearSVC(C=SVM_C, random_state=SEED, max_iter=5000).fit(matrix, dept_labels)
    intent = LinearSVC(C=SVM_C, random_state=SEED, max_iter=5000).fit(matrix, intent_labels)
    return LinearFit(dept.coef_, dept.intercept_, intent.coef_, intent.intercept_)


def _halves(keys: Sequence[str]) -> list[bool]:
    """Which rows are held out of the calibration fit: every other row of each intent."""
    by_key: dict[str, list[int]] = defaultdict(list)
    for index, key in enumerate(keys):
        by_key[key].append(index)
    held = [False] * len(keys)
    for members in by_key.values():
        members.sort(key=lambda i: hashlib.sha256(f"{SEED}:{i}".encode()).hexdigest())
        for index in members[1::2]:
            held[index] = True
    return held


def _fit_both(matrix: Any, depts: Any, intents: Any, held: Any) -> tuple[LinearFit, LinearFit]:
    """The fit on all rows and the calibration fit on the other half.

    Sequential on purpose: on the 2-vCPU machines this runs on, two concurrent liblinear fits
    each ran more than twice as slowly (shared cache and memory bandwidth).
    """
    full = _fit_linear(matrix, depts, intents)
    half = _fit_linear(matrix[~held], depts[~held], intents[~held])
    return full, half


def _stack_inputs(dept_scores: Any, intent_scores: Any, intent_dept: Any) -> Any:
    import numpy as np

    best = [intent_scores[:, intent_dept == d].max(axis=1) for d in range(len(DEPARTMENTS))]
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


def _prune_intents(coef: Any, keep: float) -> tuple[Any, Any, Any, float]:
    """CSR (by feature) of the largest ``keep`` share of intent weights, int16-quantised."""
    import numpy as np

    magnitude = np.abs(coef)
    cutoff = float(np.quantile(magnitude, 1.0 - keep))
    scale = float(magnitude.max()) / 32767.0
    quantised = np.rint(coef / scale).astype(np.int16)
    by_feature = np.where(magnitude >= cutoff, quantised, 0).T  # (n_features, n_intents)
    features, classes = np.nonzero(by_feature)  # row-major: sorted by feature, then class
    indptr = np.searchsorted(features, np.arange(by_feature.shape[0] + 1)).astype("<u4")
    class_dtype = "<u2" if coef.shape[0] > 255 else "u1"
    weights = by_feature[features, classes].astype("<i2")
    return indptr, classes.astype(class_dtype), weights, scale


def build(data_dir: Path = DATA_DIR) -> dict[str, Any]:
    """Train on the shipped CSVs and return the artifact (header + arrays) for ``write``."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

    rows = read_training_rows(data_dir)
    departments: list[str] = list(DEPARTMENTS)
    intent_keys = sorted({row.key for row in rows}, key=_department_order)
    intent_dept = np.array([departments.index(k.split("/", 1)[0]) for k in intent_keys])
    dept_y = np.array([departments.index(row.department) for row in rows])
    intent_y = np.array([intent_keys.index(row.key) for row in rows])

    vectorizer = _vectorizer()
    matrix = vectorizer.fit_transform([row.text for row in rows]).tocsr()
    held = np.array(_halves([row.key for row in rows]))
    full, half = _fit_both(matrix, dept_y, intent_y, held)
    held_dept = matrix[held] @ half.dept_coef.T + half.dept_bias
    held_intent = matrix[held] @ half.intent_coef.T + half.intent_bias
    stacker = LogisticRegression(C=META_C, max_iter=5000)
    stacker.fit(_stack_inputs(held_dept, held_intent, intent_dept), dept_y[held])
    temperature = _fit_temperature(held_intent, intent_y[held], dept_y[held], intent_dept)

    word = vectorizer.transformer_list[0][1]
    char = vectorizer.transformer_list[1][1]
    word_vocab = sorted(word.vocabulary_, key=word.vocabulary_.__getitem__)
    char_vocab = sorted(char.vocabulary_, key=char.vocabulary_.__getitem__)
    indptr, classes, weights, scale = _prune_intents(full.intent_coef, INTENT_KEEP)
    header: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "departments": departments,
        "intents": [k.split("/", 1)[1] for k in intent_keys],
        "intent_department": [int(d) for d in intent_dept],
        "word_vocab": word_vocab,
        "char_vocab": char_vocab,
        "char_ngram": list(CHAR_NGRAMS),
        "dept_bias": [float(b) for b in full.dept_bias],
        "intent_bias": [float(b) for b in full.intent_bias],
        "intent_scale": scale,
        "meta_coef": stacker.coef_.tolist(),
        "meta_bias": _biased(stacker.intercept_.tolist(), departments),
        "intent_temperature": temperature,
        "coverage_floor": COVERAGE_FLOOR,
        "threshold": THRESHOLD,
        "metadata": {
            "training_rows": {s: sum(r.source == s for r in rows) for s in _sources(rows)},
            "data_sha256": _digest(data_dir / name for name in TRAIN_FILES),
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
    header["metadata"]["parity"] = parity(artifact, vectorizer, full, stacker, data_dir)
    return artifact


def _biased(intercepts: list[float], departments: list[str]) -> list[float]:
    human = departments.index("human")
    return [b + HUMAN_BIAS if k == human else b for k, b in enumerate(intercepts)]


def _department_order(key: str) -> tuple[int, str]:
    department, intent = key.split("/", 1)
    return list(DEPARTMENTS).index(cast(Department, department)), intent


def _sources(rows: Iterable[Example]) -> list[str]:
    return sorted({row.source for row in rows})


def _digest(paths: Iterable[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def classifier_of(artifact: dict[str, Any]) -> Classifier:
    """A runtime classifier straight from an in-memory artifact (no file round trip)."""
    return Classifier(build_model(artifact["header"], artifact["arrays"]))


def parity(
    artifact: dict[str, Any], vectorizer: Any, full: LinearFit, stacker: Any, data_dir: Path
) -> dict[str, float]:
    """Agreement of the pure-Python classifier with scikit-learn on the held-out rows.

    ``exported_*`` scores scikit-learn's transform with the exported (pruned, quantised)
    weights, so it checks the re-implementation; ``unpruned_*`` uses the float64 model, so it
    also includes the effect of pruning and quantisation.
    """
    import numpy as np

    rows = read_rows(data_dir / HOLDOUT_FILE, "banking77")[:PARITY_SAMPLE]
    header, arrays = artifact["header"], artifact["arrays"]
    intent_dept = np.array(header["intent_department"])
    matrix = vectorizer.transform([row.text for row in rows])
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
    predictions = [classifier.predict(row.text) for row in rows]
    report: dict[str, float] = {"rows": len(rows)}
    for name, (dept_s, intent_s) in references.items():
        logits = stacker.decision_function(_stack_inputs(dept_s, intent_s, intent_dept))
        probs = _softmax_rows(logits - stacker.intercept_ + np.array(header["meta_bias"]))
        same_dept = same_intent = 0
        gap = 0.0
        for prediction, p, scores in zip(predictions, probs, intent_s, strict=True):
            dept = int(np.argmax(p))
            members = np.nonzero(intent_dept == dept)[0]
            intent = header["intents"][members[scores[members].argmax()]]
            same_dept += prediction.department == DEPARTMENTS[dept]
            same_intent += prediction.intent == intent
            gap = max(gap, abs(prediction.confidence - float(p[dept])))
        n = max(1, len(rows))
        report[f"{name}_department_agreement"] = same_dept / n
        report[f"{name}_intent_agreement"] = same_intent / n
        report[f"{name}_max_confidence_gap"] = round(gap, 6)
    return report


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


def write(artifact: dict[str, Any], path: Path = DEFAULT_MODEL_PATH) -> None:
    """Serialise ``artifact`` deterministically: magic, header length, JSON header, arrays.

    Uncompressed on purpose: decompressing costs ~30 ms at every start, while git and wheels
    compress the file anyway.
    """
    import numpy as np

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
    path.write_bytes(payload)


def main(argv: Sequence[str] | None = None) -> None:
    """Rebuild the shipped artifact (or, with --prepare, the shipped CSVs first)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prepare", type=Path, help="public data dir to derive the CSVs from")
    parser.add_argument("--data", type=Path, default=DATA_DIR)
    parser.add_argument("--out", type=Path, default=DEFAULT_MODEL_PATH)
    args = parser.parse_args(argv)
    if args.prepare:
        prepare_data(args.prepare, args.data)
    started = time.perf_counter()
    artifact = build(args.data)
    write(artifact, args.out)
    print(f"built in {time.perf_counter() - started:.1f} s")
    print(json.dumps(artifact["header"]["metadata"], indent=2))
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
