"""English, Spanish and Chinese: detection, sticky conversations, amounts and ids in every language,
replies from the desk's catalogues with facts in the locale's formats, grounding that reads them,
the polite answer to a language the desk does not speak, and per-language eval figures."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from deskline.agents.builtin import desk as BUILTIN
from deskline.definition import DeskDefinitionError, validate
from deskline.eventlog.events import CustomerMessaged, EscalationRequested
from deskline.handoffs.money import chinese_number, find_amounts
from deskline.handoffs.payload import AgentResult
from deskline.hierarchy.checks import amounts_in, dates_in, ungrounded
from deskline.hierarchy.writer import TemplateWriter
from deskline.i18n.catalog import messages, missing
from deskline.i18n.detect import detect, resolve
from deskline.runtime import memory_desk

LANGS = ("en", "es", "zh")


def talk(desk: Any, cid: str, *texts: str) -> list[Any]:
    return [asyncio.run(desk.handle(cid, t)) for t in texts]


@pytest.mark.parametrize(("text", "language"), [
    ("Hola, no puedo iniciar sesión, olvidé mi contraseña", "es"),
    ("me cobraron dos veces la factura INV-1001", "es"),
    ("我的转账还没有到账", "zh"),
    ("嗯 那个 帮我查一下发票INV-1001", "zh"),
    ("where is my refund for invoice INV-1001?", "en"),
    ("Bonjour, je n'arrive pas à me connecter à mon compte", "fr"),
    ("ok", None), ("INV-1001", None), ("sí", None),
])
def test_each_message_gets_its_language_or_none_when_too_short_to_tell(text: str, language: str | None) -> None:
    assert detect(text, LANGS).language == language


def test_a_conversation_keeps_its_language_until_the_customer_switches() -> None:
    assert resolve(None, "es", LANGS) == "es"  # "INV-1001" alone keeps Spanish
    assert resolve("zh", "es", LANGS) == "zh"  # a message in Chinese switches
    assert resolve("fr", "es", LANGS) == "es"  # a language the desk does not speak keeps the last
    assert resolve(None, None, LANGS) == "en"  # nothing yet: the desk's default


@pytest.mark.parametrize(("text", "amounts"), [
    ("49,00 €", ["49.00 EUR"]), ("1.200 $", ["1200.00 USD"]), ("49元", ["49.00 CNY"]),
    ("四十九美元", ["49.00 USD"]), ("两百五十块钱", ["250.00 CNY"]), ("１，２００．５０ USD", ["1200.50 USD"]),
    ("US$1,249.00 y 1.249,00 US$", ["1249.00 USD", "1249.00 USD"]), ("12 dólares", ["12.00 USD"]),
    ("INV-1001 $49.00", ["49.00 USD"]), ("June 17, 2025 $34.50", ["34.50 USD"]), ("49 euroland", []),
])
def test_amounts_are_read_in_every_language(text: str, amounts: list[str]) -> None:
    assert [f"{m.amount} {m.currency}" for m in find_amounts(text)] == amounts


def test_chinese_numerals() -> None:
    assert [chinese_number(t) for t in ("四十九", "一千二百", "两百五", "三点五", "十", "万")] == \
        [Decimal(49), Decimal(1200), Decimal(250), Decimal("3.5"), Decimal(10), Decimal(10000)]
    assert chinese_number("四十九块") is None


def test_ids_are_found_next_to_chinese_characters_and_in_full_width() -> None:
    assert BUILTIN.extractor("发票INV-1001的状态").get("invoice_id") == ("INV-1001",)
    assert BUILTIN.extractor("ＩＮＶ－１００２").get("invoice_id") == ("INV-1002",)


def test_the_builtin_catalogues_translate_every_text_with_the_same_placeholders() -> None:
    assert BUILTIN.languages[0] == "en" and set(BUILTIN.languages) == set(LANGS)
    for catalog in BUILTIN.catalog_map.values():
        assert list(missing(BUILTIN, catalog)) == []
    assert len(messages(BUILTIN)) >= 60


def test_a_catalogue_that_drops_a_placeholder_is_refused(tmp_path: Path) -> None:
    from dataclasses import replace

    from babel.messages.catalog import Catalog
    from babel.messages.pofile import write_po

    catalog = Catalog(locale="es")
    catalog.add(BUILTIN.texts.pending_approval, "Necesita aprobación.", context="text.pending_approval")
    with (tmp_path / "es.po").open("wb") as handle:
        write_po(handle, catalog)
    broken = replace(BUILTIN, languages=("en", "es"), catalogs=tmp_path)
    with pytest.raises(DeskDefinitionError) as err:
        validate(broken)
    assert "es: text.pending_approval formats [] where the original formats ['action_text']" in str(err.value)
    assert "no translation" not in str(err.value)  # untranslated texts are said in English, and listed:
    assert "es: no translation of text.greeting" in list(missing(broken, broken.catalog_map["es"]))


def test_a_spanish_reply_shows_amounts_and_dates_the_spanish_way_and_is_still_grounded() -> None:
    result = AgentResult(skill="billing.lookup_invoice", agent="billing", step_id="s1", status="ok", template="invoice",
                         facts={"invoice_id": "INV-1001", "amount": "$1,249.00", "issued": "March 14, 2025",
                                "due": "April 13, 2025", "invoice_status": "paid"})
    writer = TemplateWriter(BUILTIN, "es")
    text = writer.render(result)
    assert "INV-1001" in text and "1.249,00" in text and "14 de marzo de 2025" in text
    assert "paid" not in text  # the status word comes from the catalogue
    assert ungrounded(text, [result]) == []
    assert ungrounded(text.replace("1.249,00", "1.249,50"), [result]) == ["$1,249.50"]
    chinese = TemplateWriter(BUILTIN, "zh").render(result)
    assert "2025年3月14日" in chinese and "US$1,249.00" in chinese and ungrounded(chinese, [result]) == []


def test_locale_dates_and_amounts_are_read_back() -> None:
    assert dates_in("emitida el 14 de marzo de 2025") == dates_in("2025年3月14日") == dates_in("March 14, 2025")
    assert amounts_in("49,00 US$") == amounts_in("US$49.00") == {(Decimal("49.00"), "USD")}


def test_spanish_and_chinese_conversations_route_and_answer_in_their_language() -> None:
    desk = memory_desk()
    es, = talk(desk, "c-es", "me cobraron dos veces la factura INV-1001")
    assert es.department == "billing" and es.language == "es"
    assert "INV-1001" in (es.reply or "") and detect(es.reply or "", LANGS).language == "es"
    zh, = talk(desk, "c-zh", "我的发票INV-1001被扣了两次钱")
    assert zh.department == "billing" and zh.language == "zh" and detect(zh.reply or "", LANGS).language == "zh"
    sticky, = talk(desk, "c-es", "INV-1002")
    assert sticky.language == "es"
    events = [r.event for r in desk.store.load("c-es") if isinstance(r.event, CustomerMessaged)]
    assert [(e.language, e.detected) for e in events] == [("es", "es"), ("es", None)]


def test_a_language_the_desk_does_not_speak_gets_a_polite_reply_in_its_default() -> None:
    desk = memory_desk()
    reply, = talk(desk, "c1", "Bonjour, je n'arrive pas à me connecter à mon compte depuis hier")
    assert reply.language == "en" and reply.mode == "clarify"
    assert "English, Spanish, and Chinese" in (reply.reply or "")


def test_courtesies_and_escalations_in_chinese() -> None:
    desk = memory_desk()
    _first, thanks = talk(desk, "c1", "我的转账还没有到账", "谢谢")
    assert thanks.stage == "dialogue" and thanks.reply == BUILTIN.in_language("zh").texts.thanks
    person, = talk(desk, "c2", "我要转人工")
    chinese = BUILTIN.in_language("zh")
    assert person.escalated and person.reply == chinese.escalation_reply(chinese.escalation("我要转人工"))
    escalation = next(r.event for r in desk.store.load("c2") if isinstance(r.event, EscalationRequested))
    assert escalation.language == "zh" and escalation.summary.startswith("In Chinese (zh).")


def test_yes_in_spanish_accepts_an_offer() -> None:
    desk = memory_desk()
    offer, yes = talk(desk, "c1", "¿qué pasa con la factura INV-1001?", "sí, por favor")
    assert offer.language == "es" and yes.stage == "dialogue"
    assert "CH-2002" in (yes.reply or "") and yes.language == "es"


def test_eval_reports_figures_per_language(tmp_path: Path) -> None:
    from deskline.cli import app

    data = tmp_path / "q.csv"
    data.write_text("text,department,lang\n"
                    "me cobraron dos veces la factura INV-1001,billing,es\n"
                    "no puedo iniciar sesión en la app,tech,es\n"
                    "我的转账还没有到账,payment,zh\n"
                    "my card was stolen,human,en\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["eval", "--dataset", str(data), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    per = summary["per_language"]
    assert {k: per[k]["n"] for k in per} == {"en": 1, "es": 2, "zh": 1}
    assert all(0.0 <= per[k]["accuracy"] <= 1.0 for k in per)
    assert summary["replies_in_language"]["n"] >= 3


def test_the_cli_answers_in_the_customers_language(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from deskline.cli import app

    monkeypatch.setenv("DESKLINE_DATABASE_URL", f"sqlite:///{tmp_path}/cli.db")
    result = CliRunner().invoke(app, ["ask", "--json", "我的发票INV-1001被扣了两次钱"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["language"] == "zh" and out["department"] == "billing"
    assert "INV-1001" in out["reply"] and detect(out["reply"], LANGS).language == "zh"


def test_the_http_api_answers_in_spanish_and_marks_the_events(sqlite_url: str) -> None:
    from tests.test_api import live_apps

    with live_apps(sqlite_url) as make:
        live = make()
        cid, headers = live.customer()
        said = live.say(cid, headers, "me cobraron dos veces la factura INV-1001")
        assert said["language"] == "es" and "INV-1001" in said["reply"]
        assert detect(said["reply"], LANGS).language == "es"
        events = live.http.get(f"/v1/conversations/{cid}/events", headers=headers).json()["events"]
        assert [e["language"] for e in events if e["type"] == "customer_messaged"] == ["es"]


def test_a_first_message_too_short_to_tell_is_answered_in_the_best_guess() -> None:
    """'hola' has no language of its own, and no conversation to keep one from: the guess among
    the desk's languages beats its default."""
    desk = memory_desk()
    hola, = talk(desk, "c1", "hola")
    assert hola.language == "es" and detect(hola.reply or "", LANGS).language == "es"
    ok, = talk(desk, "c2", "ok")
    assert ok.language == "en"
