"""Personal data masked wherever it leaves the desk; invisible and full-width tricks read away."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import timeit
from pathlib import Path
from typing import Any

import pytest
import structlog
from typer.testing import CliRunner

from deskline.config import Settings
from deskline.evals.metrics import Scored
from deskline.evals.report import html_report, print_summary
from deskline.eventlog.events import CustomerMessaged, EscalationRequested, HandoffSent, PlanMade, Recorded
from deskline.eventlog.queue import HumanQueue
from deskline.privacy import has_control, mask, normalise_text
from deskline.runtime import memory_desk

SETTINGS = Settings(log_level="error")
CARD = "4111 1111 1111 1111"
PII = f"card {CARD}, mail jane.doe@example.com, call +1 415 555 0123, SSN 123-45-6789"
SECRETS = (CARD, "jane.doe@example.com", "415 555 0123", "123-45-6789")

MASKED = [
    # cards: every separator, 13 to 19 digits, any network
    ("card 4111 1111 1111 1111 please", "card **** **** **** 1111 please"),
    ("4111  1111  1111  1111", "**** **** **** 1111"),
    ("4111/1111/1111/1111", "**** **** **** 1111"),
    ("4111\u00a01111\u00a01111\u00a01111", "**** **** **** 1111"),
    ("4111\u202f1111\u20091111\u30001111", "**** **** **** 1111"),
    ("4111.1111.1111.1111", "**** **** **** 1111"),
    ("4111-1111-1111-1111", "**** **** **** 1111"),
    ("4111111111111111", "**** **** **** 1111"),
    ("4111\u200b1111\u200b1111\u200b1111", "**** **** **** 1111"),
    ("\uff14\uff11\uff11\uff11 \uff11\uff11\uff11\uff11 \uff11\uff11\uff11\uff11 \uff11\uff11\uff11\uff11",
     "**** **** **** 1111"),
    ("amex 3782 822463 10005", "amex **** **** **** 0005"),
    ("paid with 5555555555554444.", "paid with **** **** **** 4444."),
    ("4000 0000 0000 0002 and 5555 5555 5555 4444", "**** **** **** 0002 and **** **** **** 4444"),
    ("card 4111 1111 1111 1111 on 2025-03-14", "card **** **** **** 1111 on 2025-03-14"),
    # phones
    ("call +1 555 0100", "call ***-***-00"),
    ("or 555-0199 today", "or ***-***-99 today"),
    ("(415) 555-0123", "***-***-23"),
    ("+44 20 7946 0958", "***-***-58"),
    ("ring 415.555.0123.", "ring ***-***-23."),
    ("+1 (415) 555-0123 ext. 12", "***-***-23"),
    # emails
    ("mail jane.doe@example.com now", "mail j***@example.com now"),
    ("sam+billing123@mail.example.org", "s***@mail.example.org"),
    # IBANs
    ("GB82 WEST 1234 5698 7654 32", "GB** **** **** 5432"),
    ("DE89370400440532013000", "DE** **** **** 3000"),
    ("iban DE89 3704 0044 0532 0130 00, thanks", "iban DE** **** **** 3000, thanks"),
    # US social security numbers
    ("SSN 123-45-6789", "SSN ***-**-6789"),
    ("ssn 123 45 6789.", "ssn ***-**-6789."),
]

UNCHANGED = [
    "refund INV-1001 and PAY-3001 for $1,200.00 on 2025-03-14 at 09:30 UTC for ORD-1002",
    "invoices INV-1001, INV-1002, INV-1003 and INV-1004; charges CH-2001 CH-2002",
    "4111 1111 1111 1112",  # fails the Luhn check
    "1234 5678 9012 3456",  # fails the Luhn check
    "GB82 WEST 1234 5698 7654 33",  # fails the mod-97 check
    "000-12-3456 666-12-3456 912-34-5678 123-00-4567 123-45-0000",  # never-issued SSNs
    "amounts 1200000 USD, $1200000, 12,000.00 EUR, 1 234 567,00 EUR, 0.0012345 s, 1234567.89 ms",
    "timestamps 2025-03-14T09:30:22.123456Z, 14/03/2025 14:00, 1700000000.123456",
    "ids c_0123456789abcdef 13782455-cd59-44da-9395-217b7514accd 40218727-9020-4753-a1bd-d5d282b9fd95",
    "seq 1234567, turn 3, port 8000, 192.168.100.200",
    "**** **** **** 1111 j***@example.com ***-***-23 ***-**-6789 GB** **** **** 5432",  # masking twice
    "Hello, I can't sign in to the app since this morning; it says my password is wrong.",
]


@pytest.mark.parametrize(("text", "masked"), MASKED)
def test_personal_data_is_masked_keeping_a_hint(text: str, masked: str) -> None:
    """Each card, phone, email, IBAN and SSN form is masked to the documented hint."""
    assert mask(text) == masked


@pytest.mark.parametrize("text", UNCHANGED)
def test_desk_texts_survive_mask_unchanged(text: str) -> None:
    """Ids, amounts, dates, times, Luhn- or mod-97-failing numbers and masked text are left as they are."""
    assert mask(text) == text


def test_mask_is_cheap_on_a_message_without_personal_data() -> None:
    """A typical 100-character message without personal data is masked in well under 50 µs."""
    text = "I was charged twice for invoice INV-1001 (PAY-3001), $1,200.00 each; please refund one of them"
    per_call = min(timeit.repeat(lambda: mask(text), number=2000, repeat=5)) / 2000
    assert per_call < 50e-6, f"{per_call * 1e6:.1f} µs"


def test_mask_stays_linear_on_hostile_input() -> None:
    """Long runs of word characters before an '@' or of digit groups cost time in proportion to
    their length: four times the input takes well under eight times as long (a backtracking
    pattern would take sixteen), whatever else the machine is doing."""

    def cost(text: str) -> float:
        return min(timeit.repeat(lambda: mask(text), number=1, repeat=3))

    for unit, n, tail in (("a", 12_500, " @"), ("a@", 12_500, ""), ("4111 ", 2_500, ""), ("1 ", 5_000, "")):
        small, large = cost(unit * n + tail), cost(unit * (4 * n) + tail)
        assert large < 8 * small + 0.01, (unit, small, large)


def test_normalise_reads_full_width_digits_as_ascii() -> None:
    """NFKC turns full-width digits, letters and NBSP into their ASCII forms."""
    assert normalise_text("INV-\uff11\uff10\uff10\uff13") == "INV-1003"
    assert normalise_text("\uff29\uff2e\uff36\uff0d1003\u00a0ok") == "INV-1003 ok"


def test_normalise_removes_bidi_controls_and_zero_width_characters() -> None:
    """Bidi embeddings, overrides, isolates and marks and zero-width characters are removed; whitespace stays."""
    bidi = "".join(chr(c) for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F])
    assert normalise_text(f"re{bidi}fund") == "refund"
    assert normalise_text("IN\u200bV-10\u200c03\u200d \u2060ok\ufeff") == "INV-1003 ok"
    assert normalise_text("a\tb\nc  d") == "a\tb\nc  d"
    assert normalise_text("\u200b\u200d\u2060\ufeff\u202e").strip() == ""


def test_normalise_keeps_joiners_inside_emoji_and_persian_words() -> None:
    """ZWJ inside an emoji sequence and ZWNJ inside a Persian word are kept; next to ASCII they go."""
    technologist = "\U0001f469\u200d\U0001f4bb"
    persian = "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"
    assert normalise_text(f"hi {technologist} {persian}") == f"hi {technologist} {persian}"
    assert normalise_text("hu\u200dman \u200c\U0001f469") == "human \U0001f469"


def test_has_control_finds_c0_and_c1_controls() -> None:
    """NUL, tab, DEL and C1 controls count as control characters; printable Unicode does not."""
    assert all(has_control(f"c_1{ch}") for ch in ("\x00", "\t", "\n", "\x1b", "\x7f", "\x85", "\x9f"))
    assert not has_control("c_0123 INV-1003 caf\u00e9 \u00a0 \u2028"[:-2])


def test_a_turn_reads_full_width_digits_through_a_bidi_override() -> None:
    """'refund INV-１００１\\u202e please' is read as INV-1001: in the plan, the handoff and the message."""
    desk = memory_desk(SETTINGS)
    asyncio.run(desk.handle("c1", "refund INV-\uff11\uff10\uff10\uff11\u202e please"))
    records = desk.store.load("c1")
    plans = [r.event for r in records if isinstance(r.event, PlanMade)]
    assert plans and plans[0].entities.values["invoice_id"] == ("INV-1001",)
    handoffs = [r.event.handoff.case.entities for r in records if isinstance(r.event, HandoffSent)]
    assert handoffs and all(e.values["invoice_id"] == ("INV-1001",) for e in handoffs)
    said = next(r.event.text for r in records if isinstance(r.event, CustomerMessaged))
    assert said == "refund INV-1001 please"


def test_a_message_of_zero_width_characters_is_empty() -> None:
    """A message of nothing but zero-width and bidi characters is refused as empty."""
    from deskline.errors import EmptyMessage

    with pytest.raises(EmptyMessage):
        asyncio.run(memory_desk(SETTINGS).handle("c1", "\u200b\u200d\u2060\ufeff\u202e"))


def test_structlog_lines_are_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    """The processors deskline.logs.configure installs mask every string, nested ones included."""
    from deskline import logs

    seen: dict[str, Any] = {}
    monkeypatch.setattr(structlog, "configure", lambda **kwargs: seen.update(kwargs))
    logs.configure("json", "info")
    out = io.StringIO()
    log = structlog.wrap_logger(structlog.PrintLogger(out), processors=seen["processors"],
                                wrapper_class=seen["wrapper_class"])
    log.info("api.message", excerpt=PII, nested={"to": ["jane.doe@example.com"], "iban": "DE89370400440532013000"})
    line = json.loads(out.getvalue())
    assert not any(s in out.getvalue() for s in (*SECRETS, "DE89370400440532013000")), line
    assert line["excerpt"] == "card **** **** **** 1111, mail j***@example.com, call ***-***-23, SSN ***-**-6789"
    assert line["nested"] == {"to": ["j***@example.com"], "iban": "DE** **** **** 3000"}
    assert logs.mask is mask  # the name other modules import from deskline.logs


def test_the_queue_summary_is_masked_but_the_transcript_is_not() -> None:
    """An escalation's queue summary masks the customer's card, phone, email and SSN; the stored message keeps them."""
    desk = memory_desk(SETTINGS)
    asyncio.run(desk.handle("c1", f"my card was stolen! {PII}"))
    queue = HumanQueue()
    queue.refresh(desk.store)
    entry = queue.get("c1")
    assert entry is not None and "**** **** **** 1111" in entry.summary and "j***@example.com" in entry.summary
    assert not any(s in entry.summary for s in SECRETS), entry.summary
    said = next(r.event.text for r in desk.store.load("c1") if isinstance(r.event, CustomerMessaged))
    assert all(s in said for s in SECRETS)


def test_the_queue_masks_a_summary_logged_unmasked() -> None:
    """An escalation recorded before summaries were masked is listed masked all the same."""
    queue = HumanQueue()
    escalation = EscalationRequested(reason=f"asked about {CARD}", summary=f"Customer wrote: {PII}")
    queue.apply(Recorded("c9", 3, 1, escalation))
    entry = queue.get("c9")
    assert entry is not None and not any(s in entry.summary + entry.reason for s in SECRETS)


def test_metrics_labels_carry_no_message_text() -> None:
    """After a turn full of personal data, /metrics names none of it (labels are bounded names)."""
    from deskline.observe.metrics import DeskMetrics

    desk = memory_desk(SETTINGS)
    asyncio.run(desk.handle("c1", f"I was charged twice for INV-1001, {PII}"))
    asyncio.run(desk.handle("c2", f"my card was stolen, {PII}"))
    metrics = DeskMetrics()
    for cid in ("c1", "c2"):
        metrics.appended(desk.store.load(cid))
    scraped = metrics.scrape().decode()
    assert "deskline_turns" in scraped and "deskline_escalations" in scraped
    assert not any(s in scraped for s in (*SECRETS, "jane", "1111")), scraped


def _scored(text: str) -> Scored:
    return Scored(case="q:1", turn=1, text=text, expected="tech", predicted="billing", expected_escalate=False,
                  escalated=False, confidence=0.9)


def test_the_html_report_and_summary_mask_query_texts() -> None:
    """A misroute's text in the HTML report and the terminal summary shows the card masked, unless raw."""
    from rich.console import Console

    rows = [_scored(f"charged twice on {CARD}")]
    summary: dict[str, Any] = {"n": 1, "failures": [{"case": "q:2", "turn": 1, "text": "mail jane.doe@example.com",
                                                     "error": "boom"}]}
    page = html_report(summary, rows)
    assert "**** **** **** 1111" in page and CARD not in page and "jane.doe@example.com" not in page
    raw = html_report(summary, rows, raw=True)
    assert CARD in raw and "jane.doe@example.com" in raw
    console = Console(file=io.StringIO(), width=200)
    print_summary(summary, rows, console)
    shown = console.file.getvalue()  # type: ignore[attr-defined]
    assert "**** **** **** 1111" in shown and CARD not in shown


def test_deskline_eval_report_masks_unless_raw(tmp_path: Path) -> None:
    """`deskline eval --report` writes a misrouted card masked; with --raw it writes it as sent."""
    from deskline.cli import app

    data = tmp_path / "q.jsonl"
    data.write_text(json.dumps({"text": f"I was charged twice on my card {CARD}", "department": "tech"}) + "\n")
    masked, raw = tmp_path / "masked.html", tmp_path / "raw.html"
    done = CliRunner().invoke(app, ["eval", "--dataset", str(data), "--json", "--report", str(masked)])
    assert done.exit_code == 0, done.output
    page = masked.read_text(encoding="utf-8")
    assert "charged twice on my card **** **** **** 1111" in page and CARD not in page
    done = CliRunner().invoke(app, ["eval", "--dataset", str(data), "--json", "--report", str(raw), "--raw"])
    assert done.exit_code == 0, done.output
    assert f"charged twice on my card {CARD}" in raw.read_text(encoding="utf-8")


def test_export_queries_masks_unless_raw(tmp_path: Path) -> None:
    """`deskline ask` then `deskline export-queries`: masked by default (its logs too), as sent with --raw."""
    env = {**os.environ, "DESKLINE_DATABASE_URL": f"sqlite:///{tmp_path}/desk.db", "DESKLINE_LOG_FORMAT": "json",
           "DESKLINE_LOG_LEVEL": "info"}
    cli = [sys.executable, "-m", "deskline.cli"]
    text = f"I was charged twice for INV-1001, {PII}"
    asked = subprocess.run([*cli, "ask", text], env=env, capture_output=True, text=True, timeout=120)
    assert asked.returncode == 0, asked.stderr
    assert not any(s in asked.stderr for s in SECRETS), asked.stderr
    exported = subprocess.run([*cli, "export-queries"], env=env, capture_output=True, text=True, timeout=120)
    assert exported.returncode == 0, exported.stderr
    row = json.loads(exported.stdout)
    assert row["text"] == ("I was charged twice for INV-1001, card **** **** **** 1111, mail j***@example.com, "
                           "call ***-***-23, SSN ***-**-6789")
    assert "invoice_id=INV-1001" in row["entities"] and "email" in row["entities"]  # personal: by name only
    assert not any(s in exported.stdout for s in SECRETS), exported.stdout
    raw = subprocess.run([*cli, "export-queries", "--raw"], env=env, capture_output=True, text=True, timeout=120)
    assert raw.returncode == 0, raw.stderr
    row = json.loads(raw.stdout)
    assert row["text"] == text and "email=jane.doe@example.com" in row["entities"]
