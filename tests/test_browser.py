"""Both pages in a real headless Chromium (Debian's ``chromium``, driven by Playwright).

The scenario a person would try first: a customer asks for a person, an agent claims the
conversation in the console and replies, the reply appears live in the customer's page, the
agent hands back, and the bot answers the next message. With ``DESKLINE_UPDATE_SCREENSHOTS=1``
the run also refreshes ``docs/chat.png`` and ``docs/console.png``.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import service_unavailable
from tests.test_api import DOUBLE_CHARGE, PERSON, MakeLive, live_apps

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DOCS = Path(__file__).resolve().parent.parent / "docs"


@pytest.fixture
def make_live(sqlite_url: str) -> Iterator[MakeLive]:
    """Live apps on this test's SQLite file (see tests/test_api.py)."""
    with live_apps(sqlite_url) as make:
        yield make


@pytest.fixture
def browser() -> Iterator[Any]:
    """Debian's Chromium under Playwright; CI fails (rather than skips) when it is missing."""
    if not CHROMIUM.exists():
        service_unavailable("chromium", f"{CHROMIUM} is missing: apt-get install chromium")
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError as exc:
        service_unavailable("playwright", exc)
    with sync_playwright() as p:
        try:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        except Error as exc:
            service_unavailable("chromium", exc)
        yield browser
        browser.close()


def test_an_agent_takes_over_live_and_hands_back_to_the_bot(make_live: MakeLive, browser: Any, tmp_path: Path) -> None:
    """A person is asked for, claims and replies live, hands back; then the bot answers."""
    from playwright.sync_api import expect

    expect.set_options(timeout=15_000)
    live = make_live()
    key = live.auth.add_agent("Dana")

    chat = browser.new_context(viewport={"width": 720, "height": 820}).new_page()
    chat.goto(f"{live.url}/")
    expect(chat.locator("#conversation")).to_have_text(re.compile(r"^c_[0-9a-f]+$"))
    cid = chat.locator("#conversation").inner_text()
    chat.fill("#text", PERSON)
    chat.click("#send")
    expect(chat.locator(".msg.customer")).to_have_text(re.compile("real person"))
    expect(chat.locator(".msg.bot")).to_contain_text("member of our support team")
    expect(chat.locator("#status")).to_have_text("Waiting for a person")

    # Two more customers wait in the queue, one of them urgent, one with an action to approve.
    for text in ("my card was stolen", DOUBLE_CHARGE):
        other, headers = live.customer()
        live.say(other, headers, text)

    console = browser.new_context(viewport={"width": 1360, "height": 820}).new_page()
    console.goto(f"{live.url}/console")
    console.fill("#key", key)
    console.click("#signin button")
    expect(console.locator("#me")).to_have_text("Signed in as Dana")
    expect(console.locator("#queue tr")).to_have_count(3)
    expect(console.locator("#queue tr").first).to_contain_text("urgent")
    console.locator(f'#queue tr[data-conversation="{cid}"]').click()
    expect(console.locator("#case-id")).to_have_text(cid)
    expect(console.locator("#transcript")).to_contain_text("real person")
    console.click("#claim")
    expect(console.locator("#case-owner")).to_have_text("Dana")
    expect(chat.locator("#status")).to_have_text("Dana is helping you")  # live, no reload

    console.fill("#reply-text", "Hi, I'm Dana from support. What can I do for you?")
    console.click("#reply button")
    expect(chat.locator(".msg.human")).to_contain_text("I'm Dana from support")  # live in the customer's page
    expect(console.locator("#transcript .msg.human")).to_contain_text("I'm Dana from support")
    live.clock.offset = 400  # the other two have now waited past the SLA
    expect(console.locator("#queue tr.breach")).to_have_count(2)
    console.screenshot(path=str(tmp_path / "console.png"))

    console.fill("#release-note", "Introduced myself; nothing else needed")
    console.click("#release button")
    expect(chat.locator("#status")).to_have_text("Assistant")
    expect(chat.locator(".note").last).to_contain_text("handed the conversation back")
    expect(console.locator(f'#queue tr[data-conversation="{cid}"]')).to_have_count(0)

    chat.fill("#text", "is the service down?")
    chat.locator("#text").press("Enter")
    expect(chat.locator(".msg.bot")).to_have_count(2)
    expect(chat.locator(".msg.bot").last).to_contain_text("INC-501")
    expect(chat.locator("#error")).to_be_hidden()
    chat.screenshot(path=str(tmp_path / "chat.png"))

    if os.environ.get("DESKLINE_UPDATE_SCREENSHOTS") == "1":
        DOCS.mkdir(exist_ok=True)
        for name in ("chat.png", "console.png"):
            shutil.copyfile(tmp_path / name, DOCS / name)


def test_the_chat_page_shows_the_desks_error_for_bad_input(make_live: MakeLive, browser: Any) -> None:
    """A message over the limit is refused with the desk's message; the text stays in the box."""
    from playwright.sync_api import expect

    live = make_live()
    chat = browser.new_page()
    chat.goto(f"{live.url}/")
    expect(chat.locator("#conversation")).to_have_text(re.compile(r"^c_"))
    chat.fill("#text", "x" * 4001)
    chat.click("#send")
    expect(chat.locator("#error")).to_contain_text("the limit is 4000")
    expect(chat.locator("#text")).to_have_value("x" * 4001)
    expect(chat.locator(".msg.customer")).to_have_count(0)


def test_a_chinese_conversation_in_the_chat_page_and_the_console(make_live: MakeLive, browser: Any) -> None:
    """A customer writes in Chinese: the desk answers in Chinese, the bubbles carry lang="zh", and
    when they ask for a person the console shows the conversation's language."""
    from playwright.sync_api import expect

    expect.set_options(timeout=15_000)
    live = make_live()
    key = live.auth.add_agent("Lin")
    from tests.test_api import customer_token

    chat = browser.new_context(viewport={"width": 720, "height": 820}, locale="zh-CN").new_page()
    chat.goto(f"{live.url}/#customer_token={customer_token()}")  # the host site vouches for its customer
    expect(chat.locator("#conversation")).to_have_text(re.compile(r"^c_[0-9a-f]+$"))
    cid = chat.locator("#conversation").inner_text()
    chat.fill("#text", "你好，我的发票INV-1001被扣了两次钱")
    chat.click("#send")
    expect(chat.locator(".msg.bot")).to_have_count(1)
    reply = chat.locator(".msg.bot").first
    expect(reply).to_have_attribute("lang", "zh")
    expect(reply).to_contain_text("INV-1001")
    assert re.search(r"[\u4e00-\u9fff]{4}", reply.inner_text()), reply.inner_text()
    chat.fill("#text", "我要转人工")
    chat.click("#send")
    expect(chat.locator("#status")).to_have_text("Waiting for a person")
    expect(chat.locator(".msg.bot")).to_have_count(2)
    assert re.search(r"[\u4e00-\u9fff]{4}", chat.locator(".msg.bot").nth(1).inner_text())

    console = browser.new_context(viewport={"width": 1360, "height": 820}).new_page()
    console.goto(f"{live.url}/console")
    console.fill("#key", key)
    console.click("#signin button")
    row = console.locator(f'#queue tr[data-conversation="{cid}"]')
    expect(row).to_contain_text("Chinese (zh)")
    row.click()
    expect(console.locator("#case-language")).to_have_text("Chinese (zh)")
    expect(console.locator("#case-summary")).to_contain_text("In Chinese (zh).")
    expect(console.locator("#transcript")).to_contain_text("我要转人工")
