"""Attack suite, part 1: who the customer is (findings 1 of the trust issue), over real HTTP.

An anonymous visitor must not act as the account holder; the host site vouches for its customer
with a short-lived signed token, and sensitive actions need a recent verification.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.test_api import JWT, LiveApp, MakeLive, customer_token, live_apps


@pytest.fixture
def make_live(sqlite_url: str) -> Iterator[MakeLive]:
    with live_apps(sqlite_url) as make:
        yield make


@pytest.fixture
def live(make_live: MakeLive) -> LiveApp:
    return make_live()


def kinds(live: LiveApp, cid: str, headers: dict[str, str] | None = None) -> list[str]:
    """Every event type the log holds for the conversation (the customer sees fewer)."""
    return [r.event.type for r in live.app.state.deskline.desk.store.load(cid)]


@pytest.mark.parametrize("text", ["my account is locked, please unlock it", "please retry PAY-3002",
                                  "my transfer to my landlord hasn't arrived", "please refund charge CH-2003",
                                  "what's my balance?"])
def test_an_anonymous_visitor_takes_no_action_and_sees_no_account_data(live: LiveApp, text: str) -> None:
    """Without a customer token: no action is recorded, no record is shown, and the reply says to sign in."""
    cid, headers = live.customer(anonymous=True)
    turn = live.say(cid, headers, text)
    assert turn["reply"] == "I can answer general questions here, but to look at your account or change anything " \
                            "you need to sign in first."
    assert not {"action_requested", "action_completed"} & set(kinds(live, cid))
    events = live.events(cid, headers)
    assert "PAY-300" not in str(events).replace(text, "") and "Maple" not in str(events)


def test_an_anonymous_visitor_still_gets_general_answers(live: LiveApp) -> None:
    """Public skills (service status) and a person still work for an anonymous visitor."""
    cid, headers = live.customer(anonymous=True)
    assert "sign in" not in live.say(cid, headers, "is the app down?")["reply"]
    assert live.say(cid, headers, "I want to talk to a real person")["escalated"] is True


def test_a_signed_in_customer_acts_on_their_own_account(live: LiveApp) -> None:
    """With the host site's token the conversation is that customer's: the unlock runs."""
    cid, headers = live.customer()
    turn = live.say(cid, headers, "my account is locked, please unlock it")
    assert "unlocked" in turn["reply"]
    assert "action_completed" in kinds(live, cid, headers)


@pytest.mark.parametrize(("token", "message"), [
    (lambda: customer_token(now=time.time() - 3600), "expired"),
    (lambda: customer_token(ttl_s=86_400), "lives longer than"),
    (lambda: customer_token()[:-3] + "abc", "not valid"),
    (lambda: __import__("jwt").encode({"sub": "C-1001", "iss": JWT["jwt_issuer"], "aud": "other", "iat": int(time.time()),
                                       "exp": int(time.time()) + 60}, JWT["jwt_secret"]), "not valid"),
    (lambda: __import__("jwt").encode({"sub": "C-1001", "iss": JWT["jwt_issuer"], "aud": JWT["jwt_audience"],
                                       "iat": int(time.time()), "exp": int(time.time()) + 60}, "x" * 32), "not valid"),
    (lambda: __import__("jwt").encode({"sub": "C-1001", "iss": JWT["jwt_issuer"], "aud": JWT["jwt_audience"],
                                       "iat": int(time.time()), "exp": int(time.time()) + 60}, "", algorithm="none"),
     "not valid"),
])
def test_a_bad_customer_token_is_refused_and_opens_nothing(live: LiveApp, token: Any, message: str) -> None:
    """Expired, too long-lived, tampered, wrong audience, wrong key or unsigned: 401 with the reason."""
    before = live.app.state.deskline.desk.store.conversation_ids()
    r = live.http.post("/v1/conversations", json={"customer_token": token()})
    assert r.status_code == 401 and r.json()["error"] == "invalid_customer_token"
    assert message in r.json()["message"]
    assert live.app.state.deskline.desk.store.conversation_ids() == before


def test_a_sensitive_action_needs_a_recent_verification(make_live: MakeLive) -> None:
    """A sign-in older than the skill allows gets 'sign in again'; a fresh token through /verify unlocks it."""
    live = make_live(jwt_max_age_s=3600)
    old = customer_token(now=time.time() - 1200, ttl_s=1800)  # signed 20 minutes ago, still valid
    r = live.http.post("/v1/conversations", json={"customer_token": old})
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    headers = {"Authorization": f"Bearer {r.json()['token']}"}
    stale = live.say(cid, headers, "my account is locked, please unlock it")
    assert "sign in again" in stale["reply"] and "action_completed" not in kinds(live, cid, headers)
    again = live.http.post(f"/v1/conversations/{cid}/verify", headers=headers,
                           json={"customer_token": customer_token()})
    assert again.status_code == 204
    assert "unlocked" in live.say(cid, headers, "please unlock my account")["reply"]


def test_verify_refuses_another_customers_token(live: LiveApp) -> None:
    """A fresh token naming someone else cannot take over a conversation: 403, nothing appended."""
    cid, headers = live.customer()
    count = len(live.events(cid, headers))
    r = live.http.post(f"/v1/conversations/{cid}/verify", headers=headers,
                       json={"customer_token": customer_token("C-1002")})
    assert r.status_code == 403 and r.json()["error"] == "customer_mismatch"
    assert len(live.events(cid, headers)) == count


def test_an_anonymous_conversation_becomes_the_customers_after_sign_in(live: LiveApp) -> None:
    """Signing in mid-conversation (/verify) lets the same conversation act for the customer."""
    cid, headers = live.customer(anonymous=True)
    assert "sign in" in live.say(cid, headers, "my account is locked, please unlock it")["reply"]
    assert live.http.post(f"/v1/conversations/{cid}/verify", headers=headers,
                          json={"customer_token": customer_token()}).status_code == 204
    assert "unlocked" in live.say(cid, headers, "please unlock my account")["reply"]


def test_without_a_configured_key_every_web_conversation_is_anonymous(make_live: MakeLive) -> None:
    """A desk with no JWT key refuses tokens (it cannot check them) and opens anonymous conversations."""
    live = make_live(jwt_secret=None, jwt_issuer=None, jwt_audience=None)
    r = live.http.post("/v1/conversations", json={"customer_token": customer_token()})
    assert r.status_code == 401 and "accepts no customer tokens" in r.json()["message"]
    assert live.http.post("/v1/conversations").json()["anonymous"] is True


# -- finding 2: money moves only by policy ------------------------------------------------------


def test_a_refund_of_a_legitimate_charge_waits_for_a_person(live: LiveApp) -> None:
    """'Please refund CH-2003' (the invoice's only charge): no refund, a person's approval with the reason."""
    cid, headers = live.customer()
    turn = live.say(cid, headers, "Please refund charge CH-2003")
    assert turn["escalated"] is True and "approval" in turn["reply"]
    assert "action_completed" not in kinds(live, cid)
    entry = next(e for e in live.queue() if e["conversation_id"] == cid)
    assert "not a repeat of an earlier charge" in str(entry)


def test_refunding_the_original_then_the_duplicate_never_empties_a_paid_invoice(live: LiveApp) -> None:
    """'refund CH-2001' (the original charge) waits for a person; the duplicate review refunds only CH-2002."""
    cid, headers = live.customer()
    first = live.say(cid, headers, "please refund CH-2001")
    assert first["escalated"] is True and "action_completed" not in kinds(live, cid)
    other, headers2 = live.customer()
    second = live.say(other, headers2, "I was charged twice for INV-1001")
    assert "refunded the duplicate charge CH-2002" in second["reply"]
    records = live.app.state.deskline.desk.records
    assert [c.status for c in records.charges("C-1001", "INV-1001")] == ["captured", "refunded"]


def test_the_policy_is_declared_in_the_desk_definition() -> None:
    """A desk's action policy refuses by its own reason; validation catches a policy for a skill with no action."""
    import dataclasses

    from deskline import DeskDefinitionError, Policies, validate
    from deskline.agents.builtin import desk as builtin

    policies = dataclasses.replace(builtin.policies, actions={"tech.check_account": lambda *_: "no"})
    with pytest.raises(DeskDefinitionError, match="action policy for 'tech.check_account', which takes no action"):
        validate(dataclasses.replace(builtin, policies=policies))
    assert isinstance(builtin.policies, Policies) and "billing.refund_charge" in builtin.policies.actions


# -- finding 8: races between conversations ------------------------------------------------------


def test_a_refund_raced_by_another_conversation_answers_from_the_new_state() -> None:
    """The duplicate is refunded by another conversation between this step's read and its act: the
    step reads again and says it was already refunded, instead of failing and escalating."""
    import asyncio

    from deskline.agents.builtin.backend.memory import MemoryBackend
    from deskline.runtime import memory_desk

    class Racing(MemoryBackend):
        raced = False

        def refund_charge(self, key: str, customer_id: str, charge_id: str) -> Any:
            if not self.raced:  # the other conversation gets there first
                self.raced = True
                super().refund_charge("other-conversation:1:s1", customer_id, charge_id)
            return super().refund_charge(key, customer_id, charge_id)

    desk = memory_desk()
    desk.operator.backend = Racing()
    result = asyncio.run(desk.handle("c1", "I was charged twice for invoice INV-1001"))
    assert not result.escalated
    assert "already refunded" in (result.reply or "") and "CH-2002" in (result.reply or "")
    assert [c.status for c in desk.records.charges("C-1001", "INV-1001")] == ["captured", "refunded"]
    assert desk.records.recorded("c1:1:s1") is None  # this conversation's step took no action


@pytest.mark.postgres
def test_the_same_duplicate_claimed_in_two_conversations_at_once_refunds_once(postgres_url: str) -> None:
    """Two desks (two processes' worth) on one PostgreSQL database, two conversations of one customer
    at once: exactly one refund, and neither conversation is escalated."""
    import asyncio
    import threading

    from deskline import Settings
    from deskline.runtime import open_desk

    desks = [open_desk(Settings(database_url=postgres_url)) for _ in range(2)]
    results: list[Any] = [None, None]
    start = threading.Barrier(2)

    def run(i: int) -> None:
        start.wait()
        results[i] = asyncio.run(desks[i].handle(f"race-{i}", "I was charged twice for invoice INV-1001"))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(r is not None and not r.escalated for r in results)
    charges = desks[0].records.charges("C-1001", "INV-1001")
    assert [c.status for c in charges] == ["captured", "refunded"]
    replies = sorted(r.reply for r in results)
    assert sum("I've refunded" in r for r in replies) == 1 and sum("already refunded" in r for r in replies) == 1


# -- finding 4 (the write side): events refer to history instead of copying it --------------------


def test_handoffs_refer_to_the_history_window_instead_of_copying_it() -> None:
    """Forty long messages: every handoff event stays the same small size; an approval reads the
    window back from the log by seq."""
    import asyncio
    import json

    from deskline.eventlog.events import HandoffSent
    from deskline.eventlog.projections import history_at
    from deskline.runtime import memory_desk

    desk = memory_desk()
    filler = "is the app down? " + "x" * 3800
    for i in range(40):
        asyncio.run(desk.handle("long", f"{filler} #{i}"))
    records = desk.store.load("long")
    sizes = [len(json.dumps(r.event.model_dump(mode="json"))) for r in records if isinstance(r.event, HandoffSent)]
    assert len(sizes) == 40 and max(sizes) < 2_000  # a copied window of 10 messages would be ~40 kB
    last = [r.event for r in records if isinstance(r.event, HandoffSent)][-1]
    window = history_at(records, last.history_seqs)
    assert len(window) == 10 and window[-1].role == "customer" and window[-1].text.endswith("#39")


def test_customer_token_command_signs_what_the_desk_accepts(monkeypatch: pytest.MonkeyPatch, make_live: MakeLive) -> None:
    """`deskline customer-token C-1001` prints a token the desk (same settings) opens a conversation with."""
    from typer.testing import CliRunner

    from deskline.cli import app

    for name, value in JWT.items():
        monkeypatch.setenv(f"DESKLINE_{name.upper()}", value)
    printed = CliRunner().invoke(app, ["customer-token", "C-1001"])
    assert printed.exit_code == 0, printed.output
    live = make_live()
    r = live.http.post("/v1/conversations", json={"customer_token": printed.output.strip()})
    assert r.status_code == 201 and r.json()["anonymous"] is False
    monkeypatch.delenv("DESKLINE_JWT_SECRET")
    refused = CliRunner().invoke(app, ["customer-token", "C-1001"])
    assert refused.exit_code == 1 and "DESKLINE_JWT_SECRET" in refused.output
