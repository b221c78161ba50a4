"""Tests of the local triage classifier: routing, abstention, calibration API, reproducibility."""

from __future__ import annotations

import csv
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deskline.agents.builtin.desk import ROUTER
from deskline.agents.builtin.router.build import DEPARTMENTS
from deskline.routing import Classifier, Prediction, load_classifier, normalise

DATA = Path(__file__).resolve().parents[1] / "deskline" / "agents" / "builtin" / "router" / "data"


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return load_classifier(ROUTER)


@pytest.mark.parametrize(
    ("text", "department"),
    [
        ("I forgot my password and can't log in", "tech"),
        ("I was charged twice for invoice INV-1001", "billing"),
        ("my transfer to my landlord hasn't arrived", "payment"),
        ("I want to talk to a real person", "human"),
        ("is the service down?", "tech"),
        ("the app keeps crashing", "tech"),
        ("why is my invoice higher this month", "billing"),
        ("retry my failed payment PAY-3002", "payment"),
    ],
)
def test_desk_examples_route(classifier: Classifier, text: str, department: str) -> None:
    """The brief's example messages go to their department, confidently."""
    prediction = classifier.predict(text)
    assert prediction.department == department
    assert not prediction.abstain


@pytest.mark.parametrize(
    ("text", "department"),
    [
        ("Hey, I can't remember my password, how can I reset it?", "tech"),
        ("My bank card was stolen on the train this morning", "human"),
        ("could I please speak with one of your staff", "human"),
        ("there is a payment on my statement I never made", "human"),
        ("good morning!", "other"),
        ("what's the weather going to be like in Rome this weekend", "other"),
        ("why did you charge me a fee for topping up?", "billing"),
        ("how long does a transfer to another bank take?", "payment"),
    ],
)
def test_unseen_paraphrases_route(classifier: Classifier, text: str, department: str) -> None:
    """Messages written for this test (in no training file) route to the expected department."""
    assert classifier.predict(text).department == department


@pytest.mark.parametrize("text", ["", "?!", "asdkjh qwpoe zzxv", "qwertyuiop", "xkcd lorem ipsum"])
def test_gibberish_abstains(classifier: Classifier, text: str) -> None:
    """Text with no known words abstains instead of borrowing confidence."""
    prediction = classifier.predict(text)
    assert prediction.abstain
    assert prediction.confidence < classifier.threshold


def test_ambiguous_text_abstains(classifier: Classifier) -> None:
    """A message that could belong to several departments falls below the threshold."""
    prediction = classifier.predict("the thing from yesterday")
    assert prediction.abstain
    assert len({d for d, p in prediction.alternatives if p > 0.1}) >= 2


def test_threshold_override_controls_abstention(classifier: Classifier) -> None:
    """A threshold above every probability abstains; zero never does; the model is shared."""
    strict = load_classifier(ROUTER, threshold=1.01)
    lax = classifier.with_threshold(0.0)
    text = "the app keeps crashing"
    assert strict.predict(text).abstain
    assert not lax.predict(text).abstain
    assert strict.predict(text).confidence == lax.predict(text).confidence
    assert load_classifier(ROUTER) is classifier


@pytest.mark.parametrize(
    "text",
    ["my card was declined at the shop", "hello", "", "Why is there a fee on my invoice INV-7?"],
)
def test_prediction_is_well_formed(classifier: Classifier, text: str) -> None:
    """Confidences are probabilities and alternatives are the ranked top three departments."""
    prediction = classifier.predict(text)
    assert isinstance(prediction, Prediction)
    assert prediction.department in DEPARTMENTS
    assert 0.0 <= prediction.intent_confidence <= prediction.confidence <= 1.0
    assert len(prediction.alternatives) == 3
    assert prediction.alternatives[0] == (prediction.department, prediction.confidence)
    probabilities = [p for _, p in prediction.alternatives]
    assert probabilities == sorted(probabilities, reverse=True)
    assert all(0.0 <= p <= 1.0 for p in probabilities)
    assert sum(probabilities) <= 1.0 + 1e-9
    assert len({d for d, _ in prediction.alternatives}) == 3


def test_probabilities_sum_to_one(classifier: Classifier) -> None:
    """The department distribution behind a prediction is a proper distribution."""
    probabilities, _ = classifier.probabilities("I lost my card")
    assert len(probabilities) == len(DEPARTMENTS)
    assert math.isclose(sum(probabilities), 1.0, rel_tol=1e-9)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  Hello,   WORLD!!  ", "hello, world"),
        ("¿Dónde está mi tarjeta?", "dónde está mi tarjeta"),
        ("\tmy card\nwas stolen...", "my card was stolen"),
        ("$50 charge", "$50 charge"),
        ("ＩＮＶ－１００１", "inv-1001"),
        ("!!!", ""),
        ("", ""),
    ],
)
def test_normalise(raw: str, expected: str) -> None:
    """normalise lower-cases, applies NFKC, collapses spaces and strips edge punctuation."""
    assert normalise(raw) == expected


def test_normalise_is_idempotent_and_prediction_invariant(classifier: Classifier) -> None:
    """The cache key is a fixed point, and a message and its key get the same prediction."""
    raw = "  Someone used MY card without permission!!! "
    key = normalise(raw)
    assert normalise(key) == key
    assert classifier.predict(raw) == classifier.predict(key)


def test_runtime_imports_neither_sklearn_nor_scipy() -> None:
    """Loading the shipped model and predicting never imports scikit-learn or scipy."""
    code = (
        "import sys\n"
        "from deskline.routing.classifier import load_classifier\n"
        "from deskline.agents.builtin.desk import ROUTER\n"
        "load_classifier(ROUTER).predict('my card was stolen')\n"
        "bad = sorted(m for m in ('sklearn', 'scipy') if m in sys.modules)\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_shipped_artifact_is_small_and_loads_fast() -> None:
    """The artifact stays under 6 MB and parses in well under 100 ms."""
    from deskline.routing.classifier import build_model, read_artifact

    assert ROUTER.stat().st_size < 6_000_000
    import numpy  # noqa: F401  (its import cost is not the artifact's)

    started = time.perf_counter()
    build_model(*read_artifact(ROUTER))
    assert time.perf_counter() - started < 0.5  # ~20 ms here; lenient for loaded CI machines


def test_holdout_split_is_disjoint_from_training() -> None:
    """No held-out BANKING77 text is in the shipped training file."""

    def texts(name: str) -> set[str]:
        with (DATA / name).open(encoding="utf-8", newline="") as handle:
            return {row["text"] for row in csv.DictReader(handle)}

    holdout = texts("banking77_holdout.csv")
    assert len(holdout) > 900
    assert not holdout & texts("banking77_train.csv")


def test_retraining_reproduces_shipped_artifact(classifier: Classifier) -> None:
    """Rebuilding from the shipped CSVs (scikit-learn) reproduces the shipped predictions."""
    from deskline.agents.builtin.router import build as builtin
    from deskline.routing import train

    artifact = builtin.build(builtin.DATA_DIR)
    rebuilt = train.classifier_of(artifact)
    parity = artifact["header"]["metadata"]["parity"]
    assert parity["exported_department_agreement"] >= 0.999
    assert parity["exported_intent_agreement"] >= 0.999
    assert artifact["header"]["metadata"]["data_sha256"] == classifier.metadata["data_sha256"]

    with (DATA / "banking77_holdout.csv").open(encoding="utf-8", newline="") as handle:
        sample = [row["text"] for row in csv.DictReader(handle)][::3]
    sample += ["", "hi", "I want to talk to a real person", "asdkjh qwpoe"]
    for text in sample:
        shipped, again = classifier.predict(text), rebuilt.predict(text)
        assert (again.department, again.intent) == (shipped.department, shipped.intent), text
        assert math.isclose(again.confidence, shipped.confidence, abs_tol=1e-6), text


@pytest.mark.parametrize("text", ["hi", "a b", "I was charged twice for invoice inv-1001",
                                  "überweisung fehlgeschlagen 🙂 ok", "x  yz   longwordwithoutspaces"])
def test_char_ngrams_word_by_word_match_scikit_learn(text: str) -> None:
    """The per-word char_wb n-grams (cached per word at run time) are scikit-learn's, as a multiset."""
    from collections import Counter

    from sklearn.feature_extraction.text import TfidfVectorizer

    from deskline.routing.classifier import char_wb_ngrams

    analyzer = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), lowercase=False).build_analyzer()
    ours = Counter(g for word in text.split() for g in char_wb_ngrams(word, 2, 5))
    assert ours == Counter(analyzer(text))


def test_word_cache_does_not_change_predictions(classifier: Classifier) -> None:
    """A message scored with a cold word cache and again with a warm one gets the same figures."""
    text = "my card payment was declined twice at the shop"
    classifier._model.word_grams.clear()
    cold = classifier.probabilities(text)
    warm = classifier.probabilities(text)
    assert cold[0] == warm[0] and (cold[1] == warm[1]).all()


@pytest.mark.parametrize(
    ("text", "department"),
    [
        ("no me deja entrar a la aplicación, olvidé la contraseña", "tech"),
        ("me robaron la tarjeta en el metro", "human"),
        ("quiero hablar con una persona de verdad", "human"),
        ("mi transferencia a mi hermano todavía no llega", "payment"),
        ("por qué me cobraron una comisión extra", "billing"),
        ("olvide mi contrasena y la app no me deja entrar", "tech"),
        ("呃 我密码忘了 app登不进去", "tech"),
        ("我的银行卡被人偷了 快帮我冻结", "human"),
        ("转账转了两天了对方还没收到", "payment"),
        ("为什么多收了我一笔手续费", "billing"),
        ("給我轉人工客服", "human"),
    ],
)
def test_unseen_spanish_and_chinese_route(classifier: Classifier, text: str, department: str) -> None:
    """Spanish and Chinese messages written for this test (in no data file) reach their department."""
    assert classifier.predict(text).department == department


@pytest.mark.parametrize(
    "text", ["龘靐齉爩", "天地玄黄宇宙洪荒", "蓝色的香蕉在唱歌跳舞", "我想学弹钢琴", "明天去爬山带什么吃的"]
)
def test_chinese_gibberish_and_off_topic_is_not_routed_to_a_department(classifier: Classifier, text: str) -> None:
    """Chinese nonsense or chit-chat either abstains or goes to ``other``: never confidently to a department."""
    prediction = classifier.predict(text)
    assert prediction.abstain or prediction.department == "other"


def test_full_width_digits_and_letters_normalise() -> None:
    """Full-width digits and letters (common in Chinese input) become ASCII, so they share features."""
    assert normalise("帮我转２００块给ＡＢＣ，谢谢！") == "帮我转200块给abc,谢谢"


@pytest.mark.parametrize(("train", "holdout"), [("multi3nlu_es_train.csv", "es_holdout.csv"),
                                               ("zh_examples.csv", "zh_holdout.csv")])
def test_language_holdouts_are_disjoint_from_training(train: str, holdout: str) -> None:
    """The Spanish and Chinese hold-out splits share no text with the training files and keep a lang column."""
    with (DATA / holdout).open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    with (DATA / train).open(encoding="utf-8", newline="") as handle:
        trained = {row["text"] for row in csv.DictReader(handle)}
    assert len(rows) > 100
    assert {row["lang"] for row in rows} in ({"es"}, {"zh"})
    assert not {row["text"] for row in rows} & trained


def test_the_same_text_asked_twice_in_a_row_is_scored_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A turn asks about its message twice (dialogue, then routing): the second answer is the
    first one, not a second scoring; another text in between is scored afresh."""
    from deskline.routing import classifier as module

    router = load_classifier(ROUTER)
    router.predict("a text no other test asks about")  # whatever was remembered is forgotten
    scored: list[str] = []
    features = module._features
    monkeypatch.setattr(module, "_features", lambda model, text: scored.append(text) or features(model, text))
    text = "I was charged twice for invoice INV-1001"
    first, second = router.predict(text), router.predict(text)
    assert first == second and len(scored) == 1
    router.predict("where is my transfer")
    assert router.predict(text) == first and len(scored) == 3
