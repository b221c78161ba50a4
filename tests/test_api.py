"""The web API over real HTTP: uvicorn on a loopback port, httpx as the client, SQLite per test.

The live-server helpers here (``LiveApp``, ``serve``, ``SseReader``) are also used by the fuzz
and browser tests.
"""

from __future__ import annotations

import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from deskline.api import AuthStore, WebSettings, create_app
from deskline.config import Settings
from deskline.errors import StoreUnavailable
from deskline.runtime import memory_desk

PERSON = "I want to talk to a real person"
JWT = {"jwt_secret": "s" * 32, "jwt_issuer": "https://shop.example", "jwt_audience": "deskline"}


def customer_token(customer: str = "C-1001", ttl_s: float = 300, now: float | None = None) -> str:
    """A token the host site signs for its signed-in customer."""
    from deskline.api.identity import mint_token

    return mint_token(customer, JWT["jwt_secret"], JWT["jwt_issuer"], JWT["jwt_audience"], ttl_s, now)
DOUBLE_CHARGE = "I was charged twice for invoice INV-1003"  # a $750 refund: over the approval limit


# --- live server -----------------------------------------------------------------------------


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """Run ``app`` under uvicorn in a thread on an ephemeral loopback port; yield its base URL."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=0.2,  # open event streams are cut, not awaited
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:  # uvicorn exposes no event to wait on; startup takes milliseconds
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.005)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


class FakeClock:
    """Wall-clock time plus an offset the test moves forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@dataclass
class LiveApp:
    url: str
    app: FastAPI
    http: httpx.Client
    clock: FakeClock
    agents: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def auth(self) -> AuthStore:
        return self.app.state.deskline.auth  # type: ignore[no-any-return]

    def agent(self, name: str) -> dict[str, str]:
        """Headers of a human agent (created on first use)."""
        if name not in self.agents:
            self.agents[name] = {"Authorization": f"Bearer {self.auth.add_agent(name)}"}
        return self.agents[name]

    def customer(self, anonymous: bool = False) -> tuple[str, dict[str, str]]:
        """A new conversation of the signed-in demo customer (or an anonymous one) and its headers."""
        r = self.http.post("/v1/conversations", json=None if anonymous else {"customer_token": customer_token()})
        assert r.status_code == 201, r.text
        return r.json()["id"], {"Authorization": f"Bearer {r.json()['token']}"}

    def say(self, cid: str, headers: dict[str, str], text: str, mid: str | None = None) -> dict[str, Any]:
        r = self.http.post(
            f"/v1/conversations/{cid}/messages",
            headers=headers,
            json={"text": text, "client_message_id": mid},
        )
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    def events(self, cid: str, headers: dict[str, str], after: int = 0) -> list[dict[str, Any]]:
        r = self.http.get(f"/v1/conversations/{cid}/events", headers=headers, params={"after": after})
        assert r.status_code == 200, r.text
        return r.json()["events"]  # type: ignore[no-any-return]

    def queue(self, agent: str = "dana") -> list[dict[str, Any]]:
        r = self.http.get("/v1/queue", headers=self.agent(agent))
        assert r.status_code == 200, r.text
        return r.json()["entries"]  # type: ignore[no-any-return]


MakeLive = Callable[..., LiveApp]


@contextmanager
def live_apps(database_url: str) -> Iterator[MakeLive]:
    """A factory of live apps on one database; every app it started is stopped on exit."""
    with ExitStack() as stack:

        def make(*, settings: Settings | None = None, desk: Any = None, **web: Any) -> LiveApp:
            clock = FakeClock()
            app = create_app(
                settings or Settings(database_url=database_url),
                desk,
                clock=clock,
                web=WebSettings(**{"poll_interval_s": 0.2, **JWT, **web}),
            )
            url = stack.enter_context(serve(app))
            client = stack.enter_context(httpx.Client(base_url=url, timeout=20))
            return LiveApp(url, app, client, clock)

        yield make


@pytest.fixture
def make_live(sqlite_url: str) -> Iterator[MakeLive]:
    """Start apps on this test's SQLite file; each is stopped at the end of the test."""
    with live_apps(sqlite_url) as make:
        yield make


@pytest.fixture
def live(make_live: MakeLive) -> LiveApp:
    """The app on a fresh SQLite file with default web settings."""
    return make_live()


class SseReader:
    """Reads an event stream in a thread; frames arrive on a queue the test waits on."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.frames: queue.Queue[dict[str, Any]] = queue.Queue()
        self.heartbeats: queue.Queue[str] = queue.Queue()
        self.status: int | None = None
        self.content_type = ""
        self._stop = threading.Event()
        self._client = httpx.Client(timeout=httpx.Timeout(20, read=30))
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(url, headers), daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "the stream did not open"

    def _run(self, url: str, headers: dict[str, str]) -> None:
        with self._client.stream("GET", url, headers={"Accept": "text/event-stream", **headers}) as r:
            self.status, self.content_type = r.status_code, r.headers.get("content-type", "")
            self._ready.set()
            frame: dict[str, Any] = {}
            try:
                for line in r.iter_lines():
                    if self._stop.is_set():
                        return
                    if not line:
                        if "data" in frame:
                            self.frames.put(frame)
                        frame = {}
                    elif line.startswith(": keep-alive"):
                        self.heartbeats.put(line)
                    elif line.startswith(":"):
                        continue
                    else:
                        name, _, value = line.partition(": ")
                        frame[name] = json.loads(value) if name == "data" else value
            except httpx.HTTPError:
                return

    def next(self, timeout: float = 10) -> dict[str, Any]:
        return self.frames.get(timeout=timeout)

    def until(self, kind: str, timeout: float = 10) -> dict[str, Any]:
        """The next frame of this event type, skipping others."""
        deadline = time.monotonic() + timeout
        while True:
            frame = self.next(max(0.01, deadline - time.monotonic()))
            if frame.get("event") == kind:
                return frame

    def close(self) -> None:
        self._stop.set()
        self._client.close()


def _wait_for(check: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


# --- customer API ----------------------------------------------------------------------------


def test_opening_a_conversation_returns_its_id_and_a_token(live: LiveApp) -> None:
    """POST /v1/conversations answers 201 with an id and a token that reads the new conversation."""
    r = live.http.post("/v1/conversations")
    assert r.status_code == 201
    body = r.json()
    assert set(body) == {"id", "token", "anonymous"} and body["token"].startswith("dkc_") and body["anonymous"]
    events = live.events(body["id"], {"Authorization": f"Bearer {body['token']}"})
    assert [e["type"] for e in events] == ["conversation_opened"]


def test_a_message_returns_the_turns_result(live: LiveApp) -> None:
    """The reply, department, mode, escalation flag and the message's sequence number come back."""
    cid, customer = live.customer()
    out = live.say(cid, customer, "I was charged twice for invoice INV-1001")
    assert (out["department"], out["mode"], out["escalated"]) == ("billing", "single", False)
    assert "INV-1001" in out["reply"] and out["message_seq"] == 2 and out["turn"] == 1


def test_resending_a_client_message_id_returns_the_first_result(live: LiveApp) -> None:
    """A resend answers with the first result, says so in a header, and appends nothing."""
    cid, customer = live.customer()
    first = live.http.post(
        f"/v1/conversations/{cid}/messages",
        headers=customer,
        json={"text": "is the service down?", "client_message_id": "m-1"},
    )
    count = len(live.events(cid, customer))
    again = live.http.post(
        f"/v1/conversations/{cid}/messages",
        headers=customer,
        json={"text": "is the service down?", "client_message_id": "m-1"},
    )
    assert again.status_code == 200 and again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers
    assert len(live.events(cid, customer)) == count


def test_events_after_n_are_the_customers_view_of_the_log(live: LiveApp) -> None:
    """?after=N returns only later events, and never the desk's internal decisions."""
    cid, customer = live.customer()
    out = live.say(cid, customer, "I was charged twice for invoice INV-1001")
    later = live.events(cid, customer, after=out["message_seq"])
    assert [e["type"] for e in later] == ["reply_sent"]
    assert later[0]["seq"] > out["message_seq"] and later[0]["text"] == out["reply"]
    everything = live.http.get(f"/v1/conversations/{cid}/events", headers=customer).json()
    assert {e["type"] for e in everything["events"]} == {
        "conversation_opened",
        "customer_messaged",
        "reply_sent",
    }
    assert everything["last_seq"] > later[0]["seq"] - 1  # internal events still advance the cursor


def test_a_token_opens_only_its_own_conversation(live: LiveApp) -> None:
    """Another conversation's token, a forged token or an unknown id answer 404; none is 401."""
    a, customer_a = live.customer()
    b, _customer_b = live.customer()
    for method, path, body in (
        ("GET", f"/v1/conversations/{b}/events", None),
        ("POST", f"/v1/conversations/{b}/messages", {"text": "hello"}),
    ):
        assert live.http.request(method, path, headers=customer_a, json=body).status_code == 404
        assert live.http.request(method, path, json=body).status_code == 401
        forged = {"Authorization": "Bearer dkc_" + "A" * 43}
        assert live.http.request(method, path, headers=forged, json=body).status_code == 404
    r = live.http.get("/v1/conversations/c_0000000000000000/events", headers=customer_a)
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    assert live.events(a, customer_a)  # its own still opens


def test_console_endpoints_refuse_customer_tokens(live: LiveApp) -> None:
    """A customer token (or no key) gets 401 on every console endpoint; an agent key works."""
    cid, customer = live.customer()
    live.say(cid, customer, PERSON)
    for method, path in (
        ("GET", "/v1/queue"),
        ("GET", "/v1/agents/me"),
        ("POST", f"/v1/conversations/{cid}/claim"),
        ("GET", f"/v1/console/conversations/{cid}/events"),
        ("POST", f"/v1/conversations/{cid}/release"),
    ):
        for headers in (customer, {}):
            r = live.http.request(method, path, headers=headers)
            assert r.status_code == 401, (method, path, r.text)
            assert r.headers["WWW-Authenticate"] == "Bearer"
    assert live.http.get("/v1/agents/me", headers=live.agent("dana")).json() == {"name": "dana"}
    # and an agent key does not open a customer's conversation
    assert live.http.get(f"/v1/conversations/{cid}/events", headers=live.agent("dana")).status_code == 404


# --- live events -----------------------------------------------------------------------------


def test_the_stream_delivers_a_human_reply_live_and_resumes_from_last_event_id(
    live: LiveApp,
) -> None:
    """SSE shows the reply, the claim and the human reply as they happen; Last-Event-ID resumes."""
    cid, customer = live.customer()
    stream = SseReader(f"{live.url}/v1/conversations/{cid}/events", customer)
    try:
        assert stream.status == 200 and stream.content_type.startswith("text/event-stream")
        assert stream.next()["event"] == "conversation_opened"
        live.say(cid, customer, PERSON)
        assert stream.until("reply_sent")["data"]["escalated"] is True
        dana = live.agent("dana")
        assert live.http.post(f"/v1/conversations/{cid}/claim", headers=dana).status_code == 200
        claimed = stream.until("escalation_claimed")
        assert claimed["data"]["agent"] == "dana"
        live.http.post(f"/v1/conversations/{cid}/human-messages", headers=dana, json={"text": "Hi, Dana here."})
        replied = stream.until("human_replied")
        assert replied["data"]["text"] == "Hi, Dana here." and int(replied["id"]) > int(claimed["id"])
    finally:
        stream.close()
    resumed = SseReader(f"{live.url}/v1/conversations/{cid}/events", {**customer, "Last-Event-ID": claimed["id"]})
    try:
        first = resumed.next()
        assert (first["event"], first["id"]) == ("human_replied", replied["id"])
    finally:
        resumed.close()


def test_an_idle_stream_sends_heartbeats(make_live: MakeLive) -> None:
    """A stream with nothing to say sends a comment line on the heartbeat interval."""
    live = make_live(heartbeat_s=0.3)
    cid, customer = live.customer()
    stream = SseReader(f"{live.url}/v1/conversations/{cid}/events?after=1", customer)
    try:
        assert stream.heartbeats.get(timeout=5) == ": keep-alive"
        assert stream.frames.empty()
    finally:
        stream.close()


def test_the_stream_sees_events_appended_by_another_process(make_live: MakeLive) -> None:
    """A stream on one app receives a human reply made through a second app on the same database."""
    one, two = make_live(), make_live()
    cid, customer = one.customer()
    one.say(cid, customer, PERSON)
    stream = SseReader(f"{one.url}/v1/conversations/{cid}/events?after=3", customer)
    try:
        dana = two.agent("dana")
        two.http.post(f"/v1/conversations/{cid}/claim", headers=dana).raise_for_status()
        two.http.post(
            f"/v1/conversations/{cid}/human-messages",
            headers=dana,
            json={"text": "from the other worker"},
        ).raise_for_status()
        assert stream.until("human_replied")["data"]["text"] == "from the other worker"
    finally:
        stream.close()


# --- human console ---------------------------------------------------------------------------


def test_the_queue_lists_escalations_urgent_and_oldest_first_with_the_handoff(
    live: LiveApp,
) -> None:
    """Entries carry the handoff payload; fraud (priority 1) precedes an older priority 2."""
    older, c1 = live.customer()
    live.say(older, c1, DOUBLE_CHARGE)
    urgent, c2 = live.customer()
    live.say(urgent, c2, "my card was stolen")
    calm, c3 = live.customer()
    live.say(calm, c3, "is the service down?")
    entries = live.queue()
    ids = [e["conversation_id"] for e in entries]
    assert calm not in ids
    assert ids.index(urgent) < ids.index(older), entries
    entry = next(e for e in entries if e["conversation_id"] == older)
    assert entry["priority"] == 2 and "approval limit" in entry["reason"]
    assert "INV-1003" in entry["summary"] and entry["actions_taken"]
    assert entry["pending_action"]["amount"] == "$750.00" and entry["claimed_by"] is None
    assert entry["sla_breached"] is False and entry["requested_at"] > 0


def test_two_agents_cannot_claim_the_same_conversation(live: LiveApp) -> None:
    """The second claim is a 409 naming the owner; the loser cannot reply (403)."""
    cid, customer = live.customer()
    live.say(cid, customer, PERSON)
    won = live.http.post(f"/v1/conversations/{cid}/claim", headers=live.agent("dana"))
    assert won.status_code == 200 and won.json()["events"][0]["type"] == "escalation_claimed"
    lost = live.http.post(f"/v1/conversations/{cid}/claim", headers=live.agent("lee"))
    assert lost.status_code == 409
    assert lost.json() == {
        "error": "already_claimed",
        "message": lost.json()["message"],
        "claimed_by": "dana",
    }
    refused = live.http.post(f"/v1/conversations/{cid}/human-messages", headers=live.agent("lee"), json={"text": "hi"})
    assert refused.status_code == 403 and refused.json()["error"] == "not_claimed_by_you"
    assert next(e for e in live.queue() if e["conversation_id"] == cid)["claimed_by"] == "dana"


def test_claiming_what_is_not_escalated_or_does_not_exist_is_refused(live: LiveApp) -> None:
    """A conversation the bot handles is 409 not_escalated; an unknown one is 404."""
    cid, customer = live.customer()
    live.say(cid, customer, "is the service down?")
    r = live.http.post(f"/v1/conversations/{cid}/claim", headers=live.agent("dana"))
    assert r.status_code == 409 and r.json()["error"] == "not_escalated"
    r = live.http.post("/v1/conversations/c_ffffffffffffffff/claim", headers=live.agent("dana"))
    assert r.status_code == 404 and r.json()["error"] == "unknown_conversation"
    r = live.http.get("/v1/console/conversations/c_ffffffffffffffff/events", headers=live.agent("dana"))
    assert r.status_code == 404


def test_approving_the_pending_refund_runs_it_once_and_tells_the_customer(live: LiveApp) -> None:
    """The $750 refund waits for a person; approval runs it once and tells the customer."""
    cid, customer = live.customer()
    out = live.say(cid, customer, DOUBLE_CHARGE)
    assert out["escalated"] is True and "$750.00" in out["reply"]
    dana = live.agent("dana")
    assert live.http.post(f"/v1/conversations/{cid}/approve", headers=dana).status_code == 403  # claim first
    live.http.post(f"/v1/conversations/{cid}/claim", headers=dana).raise_for_status()
    r = live.http.post(f"/v1/conversations/{cid}/approve", headers=dana)
    assert r.status_code == 200, r.text
    kinds = [e["type"] for e in r.json()["events"]]
    assert kinds[0] == "action_decided" and "action_completed" in kinds and kinds[-1] == "human_replied"
    assert r.json()["events"][0]["data"]["approved"] is True
    assert "$750.00" in live.events(cid, customer)[-1]["text"]
    assert next(e for e in live.queue() if e["conversation_id"] == cid)["pending_action"] is None
    again = live.http.post(f"/v1/conversations/{cid}/approve", headers=dana)
    assert again.status_code == 409 and again.json()["error"] == "no_pending_action"


def test_rejecting_the_pending_action_is_recorded(live: LiveApp) -> None:
    """A rejection appends action_decided(approved=false) and runs nothing."""
    cid, customer = live.customer()
    live.say(cid, customer, DOUBLE_CHARGE)
    dana = live.agent("dana")
    live.http.post(f"/v1/conversations/{cid}/claim", headers=dana).raise_for_status()
    r = live.http.post(f"/v1/conversations/{cid}/reject", headers=dana)
    assert [e["type"] for e in r.json()["events"]] == ["action_decided"]
    assert r.json()["events"][0]["data"]["approved"] is False
    seen = live.events(cid, customer)[-1]
    assert (seen["type"], seen["approved"], seen["agent"]) == ("action_decided", False, "dana")


def test_hand_back_returns_the_conversation_to_the_bot(live: LiveApp) -> None:
    """While a person owns it the bot is silent; after release with a note it answers again."""
    cid, customer = live.customer()
    live.say(cid, customer, PERSON)
    dana = live.agent("dana")
    live.http.post(f"/v1/conversations/{cid}/claim", headers=dana).raise_for_status()
    held = live.say(cid, customer, "hello? anyone there?")
    assert held["reply"] is None
    r = live.http.post(f"/v1/conversations/{cid}/release", headers=dana, json={"note": "customer sorted"})
    assert r.status_code == 200 and r.json()["events"][0]["data"]["note"] == "customer sorted"
    assert cid not in [e["conversation_id"] for e in live.queue()]
    after = live.say(cid, customer, "is the service down?")
    assert after["reply"] and after["department"] == "tech"
    released = [e for e in live.events(cid, customer) if e["type"] == "escalation_released"]
    assert released and "note" not in released[0] and released[0]["agent"] == "dana"
    console = live.http.get(f"/v1/console/conversations/{cid}/events", headers=dana).json()["events"]
    kinds = [e["type"] for e in console]
    assert {"escalation_claimed", "turn_held", "escalation_released", "plan_made"} <= set(kinds)


def test_an_unclaimed_escalation_past_the_sla_is_flagged(make_live: MakeLive) -> None:
    """An entry is flagged once it has waited longer than the SLA, and unflagged when claimed."""
    live = make_live(sla_seconds=120)
    cid, customer = live.customer()
    live.say(cid, customer, PERSON)
    assert live.queue()[0]["sla_breached"] is False
    live.clock.offset = 121
    entry = live.queue()[0]
    assert entry["sla_breached"] is True and entry["waiting_s"] >= 120
    live.http.post(f"/v1/conversations/{cid}/claim", headers=live.agent("dana")).raise_for_status()
    assert live.queue()[0]["sla_breached"] is False


# --- bad input -------------------------------------------------------------------------------


def test_bad_bodies_get_a_clear_4xx_and_append_nothing(make_live: MakeLive) -> None:
    """Malformed JSON, unknown fields, oversized bodies and bad text are a clear 4xx, never 5xx."""
    live = make_live(max_body_bytes=8 * 1024)
    cid, customer = live.customer()
    url = f"/v1/conversations/{cid}/messages"
    as_json = {**customer, "Content-Type": "application/json"}
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"content": b'{"text": "hi"'}, 400, "malformed_json"),
        ({"content": b'{"text": "caf\xe9"}'}, 400, "invalid_encoding"),
        ({"content": b"[1, 2]"}, 422, "invalid_request"),
        ({"json": {"text": "hi", "priority": "urgent"}}, 422, "invalid_request"),
        ({"json": {"txt": "hi"}}, 422, "invalid_request"),
        ({"json": {"text": 42}}, 422, "invalid_request"),
        ({"json": {"text": "hi", "client_message_id": "x" * 129}}, 422, "invalid_request"),
        ({"json": {"text": "   "}}, 422, "empty_message"),
        ({"json": {"text": "x" * 4001}}, 422, "message_too_long"),
        ({"content": rb'{"text": "\ud800"}'}, 422, "invalid_encoding"),
        ({"content": b'{"text": "' + b"x" * 9000 + b'"}'}, 413, "body_too_large"),
        ({"content": iter([b'{"text": "', b"x" * 9000, b'"}'])}, 413, "body_too_large"),  # chunked
    ]
    for kwargs, status, error in cases:
        r = live.http.post(url, headers=as_json, **kwargs)
        assert (r.status_code, r.json()["error"]) == (status, error), (kwargs.keys(), r.text)
        assert r.json()["message"] and "Traceback" not in r.text
    unknown = live.http.post(url, headers=customer, json={"text": "hi", "priority": "urgent"}).json()
    assert unknown["message"] == "priority: unknown field"
    too_long = live.http.post(url, headers=customer, json={"text": "x" * 4001}).json()
    assert (too_long["length"], too_long["limit"]) == (4001, 4000)
    bad_after = live.http.get(f"/v1/conversations/{cid}/events?after=-1", headers=customer)
    assert bad_after.status_code == 422
    assert [e["type"] for e in live.events(cid, customer)] == ["conversation_opened"]


def test_bad_console_bodies_get_a_clear_4xx(live: LiveApp) -> None:
    """An empty or oversized human reply and an unknown release field are 422."""
    cid, customer = live.customer()
    live.say(cid, customer, PERSON)
    dana = live.agent("dana")
    live.http.post(f"/v1/conversations/{cid}/claim", headers=dana).raise_for_status()
    url = f"/v1/conversations/{cid}"
    assert live.http.post(f"{url}/human-messages", headers=dana, json={"text": " "}).json()["error"] == "empty_message"
    r = live.http.post(f"{url}/human-messages", headers=dana, json={"text": "y" * 4001})
    assert (r.status_code, r.json()["error"]) == (422, "message_too_long")
    r = live.http.post(f"{url}/release", headers=dana, json={"note": "ok", "to": "bot"})
    assert (r.status_code, r.json()["message"]) == (422, "to: unknown field")
    r = live.http.post("/v1/conversations/bad id!/claim", headers=dana)
    assert r.status_code == 422


def test_a_database_that_is_down_is_a_503_not_a_500(make_live: MakeLive) -> None:
    """When the event store cannot be reached, the API says so with 503 and a clear body."""

    class DownStore:
        """An event store whose database is unreachable."""

        def __getattr__(self, name: str) -> Any:
            def fail(*_args: Any, **_kwargs: Any) -> Any:
                raise StoreUnavailable("cannot reach the database: connection refused")

            return fail

    desk = memory_desk()
    desk.store = DownStore()  # type: ignore[assignment]
    live = make_live(desk=desk)
    r = live.http.post("/v1/conversations")
    assert r.status_code == 503 and r.json()["error"] == "store_unavailable"


# --- schema, CORS, pages ---------------------------------------------------------------------


def test_the_openapi_schema_is_served_and_states_the_limits(make_live: MakeLive, sqlite_url: str) -> None:
    """The schema names every endpoint, forbids unknown fields and carries the configured limit."""
    live = make_live(settings=Settings(database_url=sqlite_url, max_message_chars=500))
    schema = live.http.get("/openapi.json").json()
    assert {
        "/v1/conversations",
        "/v1/conversations/{conversation_id}/messages",
        "/v1/conversations/{conversation_id}/events",
        "/v1/queue",
        "/v1/conversations/{conversation_id}/claim",
        "/v1/conversations/{conversation_id}/human-messages",
        "/v1/conversations/{conversation_id}/release",
        "/v1/conversations/{conversation_id}/approve",
        "/v1/conversations/{conversation_id}/reject",
    } <= set(schema["paths"])
    message = schema["components"]["schemas"]["MessageIn"]
    assert message["additionalProperties"] is False and message["properties"]["text"]["maxLength"] == 500
    assert set(schema["components"]["securitySchemes"]) == {"conversationToken", "agentKey"}
    events = schema["paths"]["/v1/conversations/{conversation_id}/events"]["get"]["responses"]["200"]
    assert {"application/json", "text/event-stream"} <= set(events["content"])
    cid, customer = live.customer()
    r = live.http.post(f"/v1/conversations/{cid}/messages", headers=customer, json={"text": "x" * 501})
    assert r.json()["limit"] == 500


def test_cors_allows_only_the_configured_origins(make_live: MakeLive) -> None:
    """A configured origin may call the API from a browser (preflight included); others may not."""
    live = make_live(cors_origins=("https://shop.example",))
    preflight = live.http.options(
        "/v1/conversations",
        headers={
            "Origin": "https://shop.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://shop.example"
    r = live.http.post("/v1/conversations", headers={"Origin": "https://shop.example"})
    assert r.headers["access-control-allow-origin"] == "https://shop.example"
    r = live.http.post("/v1/conversations", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers
    assert "https://shop.example" in live.http.get("/").headers["content-security-policy"]


def test_both_pages_and_their_scripts_are_served(live: LiveApp) -> None:
    """/ is the chat page and /console the console, with a strict content security policy."""
    chat, console = live.http.get("/"), live.http.get("/console")
    assert chat.status_code == console.status_code == 200
    assert 'id="compose"' in chat.text and 'id="queue"' in console.text
    assert "script-src 'self'" in chat.headers["content-security-policy"]
    assert console.headers["x-frame-options"] == "DENY"
    for asset in ("live.js", "chat.js", "console.js", "style.css"):
        assert live.http.get(f"/static/{asset}").status_code == 200


def test_the_package_exports_what_it_names() -> None:
    """deskline.api.__all__ names create_app, and every name resolves."""
    import deskline.api

    assert "create_app" in deskline.api.__all__
    assert all(hasattr(deskline.api, name) for name in deskline.api.__all__)


# --- the command line and the logs -----------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_deskline_serve_with_agent_keys_from_the_cli_masks_pii_in_its_logs(tmp_path: Path) -> None:
    """Keys from `deskline agents add` work on `deskline serve`; its logs mask card/email/phone."""
    env = {
        **os.environ,
        "DESKLINE_DATABASE_URL": f"sqlite:///{tmp_path}/desk.db",
        "DESKLINE_LOG_FORMAT": "json",
        "DESKLINE_LOG_LEVEL": "info",
    }
    cli = [sys.executable, "-m", "deskline.cli"]
    added = subprocess.run([*cli, "agents", "add", "dana"], env=env, capture_output=True, text=True, timeout=60)
    assert added.returncode == 0, added.stderr
    key = added.stdout.strip()
    assert key.startswith("dka_") and "cannot be shown again" in added.stderr
    listed = subprocess.run([*cli, "agents", "list", "--json"], env=env, capture_output=True, text=True, timeout=60)
    assert [a["name"] for a in json.loads(listed.stdout)] == ["dana"] and key not in listed.stdout
    dup = subprocess.run([*cli, "agents", "add", "dana"], env=env, capture_output=True, text=True, timeout=60)
    assert dup.returncode == 1 and "already exists" in dup.stderr

    port = _free_port()
    log_path = tmp_path / "server.log"
    with log_path.open("w") as log_file:
        server = subprocess.Popen(
            [*cli, "serve", "--port", str(port)], env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_for(lambda: _answers(f"{base}/healthz"), timeout=30)
        with httpx.Client(base_url=base, timeout=20) as http:
            assert http.get("/v1/agents/me", headers={"Authorization": f"Bearer {key}"}).json() == {"name": "dana"}
            created = http.post("/v1/conversations").json()
            customer = {"Authorization": f"Bearer {created['token']}"}
            pii = "card 4111 1111 1111 1111, mail jane.doe@example.com, call +1 415 555 0123"
            r = http.post(f"/v1/conversations/{created['id']}/messages", headers=customer, json={"text": pii})
            assert r.status_code == 200
    finally:
        server.terminate()
        server.wait(20)
    logs = log_path.read_text()
    assert "api.message" in logs, logs
    for secret in ("4111 1111 1111 1111", "jane.doe@example.com", "415 555 0123"):
        assert secret not in logs
    assert "**** **** **** 1111" in logs and "j***@example.com" in logs


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.postgres
def test_the_contract_holds_on_postgresql(make_live: MakeLive, postgres_url: str) -> None:
    """Tokens, agent keys, messages and a claim work the same on PostgreSQL."""
    live = make_live(settings=Settings(database_url=postgres_url))
    cid, customer = live.customer()
    assert live.say(cid, customer, PERSON)["escalated"] is True
    other, _ = live.customer()
    assert live.http.get(f"/v1/conversations/{other}/events", headers=customer).status_code == 404
    r = live.http.post(f"/v1/conversations/{cid}/claim", headers=live.agent("dana"))
    assert r.status_code == 200
    assert live.http.post(f"/v1/conversations/{cid}/claim", headers=live.agent("lee")).status_code == 409


def test_metrics_endpoint_counts_the_turns_it_served(live: LiveApp) -> None:
    """GET /metrics over HTTP shows the turns, escalations and queue length the requests caused."""
    cid, headers = live.customer()
    live.say(cid, headers, "I was charged twice for invoice INV-1001")
    other, other_headers = live.customer()
    live.say(other, other_headers, "I want to talk to a real person")
    r = live.http.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'deskline_turns_total{department="billing",mode="single",stage="classifier"} 1.0' in text
    assert 'deskline_escalations_total{reason="asked_for_person"} 1.0' in text
    assert "deskline_queue_length 1.0" in text
    assert "deskline_sla_breaches 0.0" in text
