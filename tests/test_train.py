"""Tests of the generic router trainer and ``deskline train``: a desk's own departments,
determinism, small data, and a clear typed error for each kind of bad training file."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

pytest.importorskip("sklearn")

from deskline.errors import DesklineError
from deskline.routing.classifier import build_model, load_classifier, read_artifact
from deskline.routing.train import (
    MIN_EXAMPLES,
    Example,
    Scores,
    TrainingDataError,
    build,
    classifier_of,
    cross_validate,
    read_examples,
    write,
)

# A small desk that is not the built-in one: 3 departments, 2-3 intents each, 15 examples each.
DESK: dict[str, dict[str, list[str]]] = {
    "orders": {
        "cancel_order": [
            "please cancel my order",
            "I want to cancel the order I placed yesterday",
            "cancel order 4411 before it ships",
            "how do I cancel a purchase",
            "stop my order please",
        ],
        "change_order": [
            "I need to change the items in my order",
            "can I add a product to my order",
            "swap the size in my order for a medium",
            "modify my order quantity",
            "edit the order I just placed",
        ],
        "order_status": [
            "what is the status of my order",
            "has my order been confirmed",
            "is my purchase confirmed yet",
            "did you receive my order",
            "show me my recent orders",
        ],
    },
    "shipping": {
        "track_parcel": [
            "where is my parcel",
            "track my package",
            "my delivery is late",
            "the courier has not arrived",
            "when will my package be delivered",
            "tracking number shows no movement",
            "the parcel is stuck in transit",
        ],
        "delivery_address": [
            "change the delivery address",
            "ship it to my office instead",
            "update my shipping address",
            "can you deliver to another address",
            "the package went to the wrong address",
            "deliver to my neighbour please",
            "wrong postcode on the shipping label",
            "send the parcel to my new flat",
        ],
    },
    "accounts": {
        "password": [
            "I forgot my password",
            "reset my password please",
            "I cannot log in to my account",
            "my login does not work",
            "the password reset email never came",
        ],
        "profile": [
            "change the email on my account",
            "update my phone number in my profile",
            "edit my profile name",
            "how do I change my username",
            "my account details are wrong",
        ],
        "close_account": [
            "delete my account",
            "close my account for good",
            "I want to remove my profile",
            "deactivate my account",
            "please erase my account and data",
        ],
    },
}


def rows(desk: dict[str, dict[str, list[str]]] = DESK) -> list[dict[str, str]]:
    return [
        {"text": text, "department": department, "intent": intent}
        for department, intents in desk.items()
        for intent, texts in intents.items()
        for text in texts
    ]


def write_csv(
    path: Path, records: list[dict[str, str]], fields: tuple[str, ...] = ("text", "department", "intent")
) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(fields), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(records)
    return path


def write_jsonl(path: Path, records: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def desk_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_csv(tmp_path_factory.mktemp("desk") / "desk.csv", rows())


@pytest.fixture(scope="module")
def router_path(desk_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write(build(read_examples([desk_csv])), tmp_path_factory.mktemp("router") / "router.bin")


HELD_IN = [
    ("Please cancel my order!", "orders"),
    ("modify my order quantity", "orders"),
    ("where is my parcel?", "shipping"),
    ("update my shipping address", "shipping"),
    ("I forgot my password", "accounts"),
    ("DELETE MY ACCOUNT", "accounts"),
]


@pytest.mark.parametrize(("text", "department"), HELD_IN)
def test_csv_router_predicts_its_own_departments(router_path: Path, text: str, department: str) -> None:
    """A router trained on a CSV of non-built-in departments loads from its path and routes held-in phrasing."""
    router = load_classifier(router_path)
    assert router.departments == ("accounts", "orders", "shipping")
    prediction = router.predict(text)
    assert prediction.department == department
    assert {d for d, _ in prediction.alternatives} <= set(router.departments)


def test_jsonl_without_intent_trains_on_departments(tmp_path: Path) -> None:
    """A JSON-lines file without an intent field trains one intent per department and routes held-in phrasing."""
    records = [{"text": r["text"], "department": r["department"]} for r in rows()]
    examples = read_examples([write_jsonl(tmp_path / "desk.jsonl", records)])
    assert {e.intent for e in examples} == set(DESK)
    router = classifier_of(build(examples))
    assert [router.predict(text).department for text, _ in HELD_IN] == [d for _, d in HELD_IN]


def test_files_mix_formats_and_intent_columns(tmp_path: Path) -> None:
    """CSV and JSONL files combine; ``source_intent`` is the intent; departments are stripped and lower-cased."""
    records = rows()
    first = write_csv(tmp_path / "a.csv", [r for r in records if r["department"] == "orders"])
    second = write_jsonl(
        tmp_path / "b.json",
        [
            {"text": r["text"], "department": f" {r['department'].upper()} ", "source_intent": r["intent"]}
            for r in records
            if r["department"] != "orders"
        ],
    )
    examples = read_examples([first, second])
    assert len(examples) == len(records)
    assert {e.department for e in examples} == set(DESK)
    assert {e.intent for e in examples} == {i for intents in DESK.values() for i in intents}
    assert examples[0] == Example("please cancel my order", "cancel_order", "orders", "a")


def test_same_data_gives_same_bytes(desk_csv: Path, router_path: Path, tmp_path: Path) -> None:
    """Training twice on the same file writes byte-identical router files."""
    again = write(build(read_examples([desk_csv])), tmp_path / "again.bin")
    assert again.read_bytes() == router_path.read_bytes()


def test_router_file_round_trips(router_path: Path) -> None:
    """The written file parses back into the model the in-memory artifact gives, with a proper distribution."""
    header, arrays = read_artifact(router_path)
    assert header["departments"] == ["accounts", "orders", "shipping"]
    assert header["metadata"]["parity"]["exported_department_agreement"] == 1.0
    model = build_model(header, arrays)
    probabilities, _ = load_classifier(router_path).probabilities("my parcel is late")
    assert len(probabilities) == len(model.departments) == 3
    assert math.isclose(sum(probabilities), 1.0, rel_tol=1e-9)


def test_small_departments_and_single_example_intents_train(tmp_path: Path) -> None:
    """A department of exactly MIN_EXAMPLES examples, each its own intent, trains (calibration split included)."""
    records = rows()
    records += [
        {"text": text, "department": "gifts", "intent": f"gift_{k}"}
        for k, text in enumerate(
            [
                "send this as a gift",
                "add gift wrapping",
                "include a gift message",
                "buy a gift card",
                "redeem my gift card",
                "gift card balance",
                "wrap it as a present",
                "gift receipt please",
            ]
        )
    ]
    assert sum(r["department"] == "gifts" for r in records) == MIN_EXAMPLES
    router = classifier_of(build(read_examples([write_csv(tmp_path / "gifts.csv", records)])))
    assert "gifts" in router.departments
    assert router.predict("add gift wrapping").department == "gifts"
    assert router.predict("where is my parcel").department == "shipping"


def test_two_departments_train(tmp_path: Path) -> None:
    """A desk of two departments (binary SVMs and stacker) routes both and returns two alternatives."""
    records = [r for r in rows() if r["department"] != "accounts"]
    router = classifier_of(build(read_examples([write_csv(tmp_path / "two.csv", records)])))
    prediction = router.predict("track my package")
    assert prediction.department == "shipping"
    assert len(prediction.alternatives) == 2
    assert router.predict("please cancel my order").department == "orders"


def test_department_bias_raises_that_department(desk_csv: Path) -> None:
    """``department_bias`` adds log-odds to a department: its probability rises on every text."""
    examples = read_examples([desk_csv])
    plain = classifier_of(build(examples))
    biased = classifier_of(build(examples, department_bias={"shipping": 2.0}))
    index = plain.departments.index("shipping")
    for text in ("my login does not work", "hello there", "cancel order"):
        assert biased.probabilities(text)[0][index] > plain.probabilities(text)[0][index]


def test_cross_validation_reports_departments_and_confusions(desk_csv: Path) -> None:
    """cross_validate returns a stratified k-fold report: macro-F1, per-department scores and confusions."""
    report = cross_validate(read_examples([desk_csv]), folds=3)
    assert isinstance(report, Scores)
    assert report.folds == 3 and report.rows == 45
    assert set(report.departments) == set(DESK)
    assert sum(s.support for s in report.departments.values()) == 45
    assert 0.5 <= report.macro_f1 <= 1.0
    assert math.isclose(report.macro_f1, sum(s.f1 for s in report.departments.values()) / 3)
    assert all(t != p and n > 0 for t, p, n in report.confusions)
    assert json.loads(json.dumps(report.to_dict()))["macro_f1"] == report.macro_f1


def test_too_many_folds_is_a_training_data_error(desk_csv: Path) -> None:
    """More folds than the smallest department has examples is refused with the department named."""
    with pytest.raises(TrainingDataError, match="20 folds need at least 20 examples per department; 'accounts' has 15"):
        cross_validate(read_examples([desk_csv]), folds=20)


def _bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    records = rows()
    one = [r for r in records if r["department"] == "orders"]
    few = [r for r in records if r["department"] != "accounts"] + [r for r in records if r["intent"] == "password"][:3]
    return {
        "missing column": (write_csv(tmp_path / "nodept.csv", records, ("text", "intent")), r"no 'department' column"),
        "missing text": (write_jsonl(tmp_path / "nt.jsonl", [{"department": "orders"}]), r"line 1: no 'text' field"),
        "empty": (write_csv(tmp_path / "empty.csv", []), r"empty\.csv: no usable rows"),
        "blank": (write_jsonl(tmp_path / "blank.jsonl", []), r"blank\.jsonl: no usable rows"),
        "one department": (write_csv(tmp_path / "one.csv", one), r"only one department \('orders'\)"),
        "too few": (
            write_csv(tmp_path / "few.csv", few),
            rf"department 'accounts' has 3 examples; at least {MIN_EXAMPLES} are needed",
        ),
        "bad name": (
            write_csv(tmp_path / "name.csv", [*records, {"text": "hi", "department": "Sales & Co"}]),
            r"name\.csv line 47: department 'Sales & Co'",
        ),
        "not json": (tmp_path / "bad.jsonl", r"bad\.jsonl line 1: not JSON"),
        "no such file": (tmp_path / "missing.csv", r"missing\.csv: no such file"),
        "unknown type": (tmp_path / "desk.xlsx", r"unknown file type '\.xlsx'"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing column",
        "missing text",
        "empty",
        "blank",
        "one department",
        "too few",
        "bad name",
        "not json",
        "no such file",
        "unknown type",
    ],
)
def test_bad_training_files_raise_typed_errors(tmp_path: Path, case: str) -> None:
    """Each kind of bad training file raises TrainingDataError naming the file (and line) and the problem."""
    (tmp_path / "bad.jsonl").write_text("{not json}\n", encoding="utf-8")
    (tmp_path / "desk.xlsx").write_bytes(b"PK")
    path, message = _bad_files(tmp_path)[case]
    with pytest.raises(TrainingDataError, match=message) as caught:
        read_examples([path])
    assert isinstance(caught.value, DesklineError)
    assert caught.value.code == "invalid_training_data"


def test_cli_train_writes_a_router(desk_csv: Path, tmp_path: Path) -> None:
    """``deskline train`` cross-validates, prints per-department F1 and writes a loadable router file."""
    from typer.testing import CliRunner

    from deskline.cli import app

    out = tmp_path / "router.bin"
    result = CliRunner().invoke(app, ["train", str(desk_csv), "--out", str(out), "--folds", "3"])
    assert result.exit_code == 0, result.output
    assert "macro" in result.stdout and "shipping" in result.stdout
    assert load_classifier(out).predict("where is my parcel").department == "shipping"


def test_cli_train_json(desk_csv: Path, tmp_path: Path) -> None:
    """``deskline train --json`` prints one JSON object with the cross-validation and the file written."""
    from typer.testing import CliRunner

    from deskline.cli import app

    out = tmp_path / "router.bin"
    result = CliRunner().invoke(app, ["train", str(desk_csv), "--out", str(out), "--folds", "3", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["out"] == str(out) and out.stat().st_size == summary["bytes"]
    assert summary["departments"] == {"accounts": 15, "orders": 15, "shipping": 15}
    assert 0.5 <= summary["cross_validation"]["macro_f1"] <= 1.0


def test_cli_train_bad_file_exits_2_with_message(tmp_path: Path) -> None:
    """``deskline train`` on a bad file exits 2 with ``error: <message>`` and no traceback, writing nothing."""
    from typer.testing import CliRunner

    from deskline.cli import app

    bad = write_csv(tmp_path / "few.csv", [r for r in rows() if r["department"] != "accounts"][:20])
    out = tmp_path / "router.bin"
    result = CliRunner().invoke(app, ["train", str(bad), "--out", str(out), "--no-cv"])
    assert result.exit_code == 2
    assert "error: " in result.stderr and "department 'shipping' has 5 examples" in result.stderr
    assert "Traceback" not in result.output
    assert not out.exists()


def test_cli_train_without_sklearn_says_how_to_install(
    desk_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without scikit-learn, ``deskline train`` fails cleanly and says to pip install it."""
    from typer.testing import CliRunner

    from deskline.cli import app
    from deskline.routing import commands

    monkeypatch.setattr(commands, "_has_sklearn", lambda: False)
    result = CliRunner().invoke(app, ["train", str(desk_csv), "--out", str(tmp_path / "r.bin")])
    assert result.exit_code == 1
    assert "pip install scikit-learn" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("departments", "message"),
    [
        (["orders", "Orders"], "not a lowercase identifier"),
        (["orders"], "at least two"),
        (["orders", "orders"], "repeat"),
    ],
)
def test_classifier_validates_header_departments(router_path: Path, departments: list[str], message: str) -> None:
    """The runtime refuses a header whose departments are not distinct lowercase identifiers."""
    header, arrays = read_artifact(router_path)
    with pytest.raises(ValueError, match=message):
        build_model({**header, "departments": departments}, arrays)


# A tiny two-language desk: the same departments in English and in unsegmented Chinese.
BILINGUAL = {
    "cards": [
        "my card was stolen", "I lost my card", "block my card please", "someone stole my card",
        "freeze my card now", "my card is missing", "卡被偷了", "我的卡丢了", "帮我冻结银行卡",
        "银行卡找不到了", "卡不见了快锁卡", "钱包和卡都被偷了",
    ],
    "weather": [
        "will it rain tomorrow", "what is the weather today", "is it cold outside", "sunny this weekend?",
        "how hot is it", "weather forecast please", "明天会下雨吗", "今天天气怎么样", "外面冷不冷",
        "周末是晴天吗", "今天多少度", "天气预报说什么",
    ],
}


def _bilingual(tmp_path: Path) -> list[Example]:
    path = tmp_path / "bilingual.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "department"])
        writer.writerows((text, dept) for dept, texts in BILINGUAL.items() for text in texts)
    return read_examples([path])


def test_cjk_word_tokens_match_scikit_learn() -> None:
    """The runtime's CJK-aware tokeniser is the trainer's: one token per Han character, other words unchanged."""
    import re

    from sklearn.feature_extraction.text import TfidfVectorizer

    from deskline.routing.classifier import CJK_TOKEN_PATTERN

    text = "app打不开了 我的pin码 ok 帳戶 a b überweisung"
    analyzer = TfidfVectorizer(token_pattern=CJK_TOKEN_PATTERN, lowercase=False).build_analyzer()
    assert analyzer(text) == re.findall(CJK_TOKEN_PATTERN, text)
    assert analyzer(text)[:4] == ["app", "打", "不", "开"]
    english = "my card-PIN was blocked at 3pm"
    assert re.findall(CJK_TOKEN_PATTERN, english) == re.findall(r"(?u)\b\w\w+\b", english)


def test_chinese_routes_with_cjk_tokens_and_abstains_on_unknown_chinese(tmp_path: Path) -> None:
    """With CJK tokens unseen Chinese routes by its character bigrams, and Chinese with no known
    bigram is shrunk to a near-uniform confidence instead of being trusted."""
    router = classifier_of(build(_bilingual(tmp_path)))
    assert router.predict("我的卡被人偷走了").department == "cards"
    assert router.predict("明天天气冷吗").department == "weather"
    assert router.predict("明天天气冷吗").confidence > 0.8
    assert router.predict("龘靐齉爩").confidence < 0.55  # two departments: uniform is 0.5


def test_word_tokens_words_keeps_the_old_tokeniser(tmp_path: Path) -> None:
    """``word_tokens="words"`` trains the former features: a Chinese clause is one word token."""
    from deskline.routing.train import TrainSettings

    artifact = build(_bilingual(tmp_path), settings=TrainSettings(word_tokens="words"))
    assert artifact["header"]["word_tokens"] == "words"
    assert "卡被偷了" in artifact["header"]["word_vocab"]
    assert "卡" not in artifact["header"]["word_vocab"]


def test_source_weights_change_the_model(tmp_path: Path) -> None:
    """A source weight reaches the SVMs: weighting one file's rows changes the exported weights."""
    import dataclasses

    from deskline.routing.train import TrainSettings

    examples = [dataclasses.replace(e, source="en" if e.text.isascii() else "zh") for e in _bilingual(tmp_path)]
    plain = build(examples)
    weighted = build(examples, settings=TrainSettings(source_weights=(("zh", 5.0),)))
    assert plain["header"]["dept_bias"] != weighted["header"]["dept_bias"]


def test_header_without_word_tokens_loads_as_words(router_path: Path) -> None:
    """Router files written before the CJK tokeniser and accent stripping keep ``\\b\\w\\w+\\b`` and accents."""
    import re

    header, arrays = read_artifact(router_path)
    del header["word_tokens"], header["cjk_coverage_floor"], header["strip_accents"]
    model = build_model(header, arrays)
    assert model.token.pattern == r"(?u)\b\w\w+\b"
    assert model.cjk_coverage_floor == model.coverage_floor
    assert not model.strip_accents
    header["word_tokens"] = "jieba"
    with pytest.raises(ValueError, match="word tokeniser"):
        build_model(header, arrays)
    assert isinstance(model.token, re.Pattern)


@pytest.mark.parametrize("text", ["contraseña olvidé", "café ÜBER naïve", "我的卡 pin", "plain ascii"])
def test_strip_accents_is_scikit_learns(text: str) -> None:
    """The runtime's accent stripping is scikit-learn's ``strip_accents="unicode"``."""
    from sklearn.feature_extraction.text import strip_accents_unicode

    from deskline.routing.classifier import strip_accents

    assert strip_accents(text) == strip_accents_unicode(text)


def test_spanish_with_and_without_accents_gets_the_same_features(tmp_path: Path) -> None:
    """With accent stripping (the default) a message typed without accents scores like the accented one."""
    rows = tmp_path / "es.csv"
    with rows.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "department"])
        access = ["olvidé mi contraseña", "no sé mi contraseña", "la contraseña falla", "cambiar contraseña",
                  "contraseña bloqueada", "perdí la contraseña", "contraseña incorrecta", "recuperar contraseña"]
        payments = ["pagar la factura", "hacer un pago", "pago rechazado", "pago pendiente", "pago con tarjeta",
                    "pago atrasado", "el pago falló", "pagué dos veces"]
        writer.writerows([(t, "acceso") for t in access] + [(t, "pagos") for t in payments])
    router = classifier_of(build(read_examples([rows])))
    accented, plain = router.probabilities("olvidé la contraseña"), router.probabilities("olvide la contrasena")
    assert accented[0] == plain[0]
