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
from contextlib import contextmanager
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
DOUBLE_CHARGE = "I was charged twice for invoice INV-1003"  # a $750 refund: over the approval limit


# --- live server -----------------------------------------------------------------------------


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """Run ``app`` under uvicorn in a thread on an ephemeral loopback port; yield its base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on",
                            timeout_graceful_shutdown=1)
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

    def customer(self) -> tuple[str, dict[str, str]]:
        """A new conversation and the customer's headers for it."""
        r = self.http.post("/v1/conversations")
        assert r.status_code == 201, r.text
        return r.json()["id"], {"Authorization": f"Bearer {r.json()['token']}"}

    def say(self, cid: str, headers: dict[str, str], text: str, mid: str | None = None) -> dict[str, Any]:
        r = self.http.post(f"/v1/conversations/{cid}/messages", headers=headers,
                           json={"text": text, "client_message_id": mid})
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


@pytest.fixture
def make_live(sqlite_url: str) -> Iterator[MakeLive]:
    """Start apps on this test's SQLite file; each is stopped at the end of the test."""
    stack: list[Any] = []

    def make(*, settings: Settings | None = None, desk: Any = None, **web: Any) -> LiveApp:
        clock = FakeClock()
        app = create_app(settings or Settings(database_url=sqlite_url), desk, clock=clock,
                         web=WebSettings(**{"poll_interval_s": 0.2, **web}))
        ctx = serve(app)
        url = ctx.__enter__()
        stack.append(ctx)
        client = httpx.Client(base_url=url, timeout=20)
        stack.append(client)
        return LiveApp(url, app, client, clock)

    yield make
    for item in reversed(stack):
        if isinstance(item, httpx.Client):
            item.close()
        else:
            item.__exit__(None, None, None)


@pytest.fixture
def live(make_live: MakeLive) -> LiveApp:
    """The app on a fresh SQLite file with default web settings."""
    return make_live()


class SseReader:
    """Reads an event stream in a thread; frames arrive on a queue the test waits on."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.frames: queue.Queue[dict[str, Any]] = queue.Queue()
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
                    elif line.startswith(":"):
                        frame.setdefault("comments", []).append(line)
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
    assert set(body) == {"id", "token"} and body["token"].startswith("dkc_")
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
    first = live.http.post(f"/v1/conversations/{cid}/messages", headers=customer,
                           json={"text": "is the service down?", "client_message_id": "m-1"})
    count = len(live.events(cid, customer))
    again = live.http.post(f"/v1/conversations/{cid}/messages", headers=customer,
                           json={"text": "is the service down?", "client_message_id": "m-1"})
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
    assert {e["type"] for e in everything["events"]} == {"conversation_opened", "customer_messaged", "reply_sent"}
    assert everything["last_seq"] > later[0]["seq"] - 1  # internal events still advance the cursor


def test_a_token_opens_only_its_own_conversation(live: LiveApp) -> None:
    """Another conversation's token, a made-up token or a made-up id all answer 404; no token is 401."""
    a, customer_a = live.customer()
    b, _customer_b = live.customer()
    for method, path, body in (("GET", f"/v1/conversations/{b}/events", None),
                               ("POST", f"/v1/conversations/{b}/messages", {"text": "hello"})):
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
    for method, path in (("GET", "/v1/queue"), ("GET", "/v1/agents/me"), ("POST", f"/v1/conversations/{cid}/claim"),
                         ("GET", f"/v1/console/conversations/{cid}/events"),
                         ("POST", f"/v1/conversations/{cid}/release")):
        for headers in (customer, {}):
            r = live.http.request(method, path, headers=headers)
            assert r.status_code == 401, (method, path, r.text)
            assert r.headers["WWW-Authenticate"] == "Bearer"
    assert live.http.get("/v1/agents/me", headers=live.agent("dana")).json() == {"name": "dana"}
    # and an agent key does not open a customer's conversation
    assert live.http.get(f"/v1/conversations/{cid}/events", headers=live.agent("dana")).status_code == 404


# --- live events -----------------------------------------------------------------------------


def test_the_stream_delivers_a_human_reply_live_and_resumes_from_last_event_id(live: LiveApp) -> None:
    """SSE shows the bot's reply, the claim and the human reply as they happen; Last-Event-ID resumes."""
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


def test_the_stream_sees_events_appended_by_another_process(make_live: MakeLive) -> None:
    """A stream on one app receives a human reply made through a second app on the same database."""
    one, two = make_live(), make_live()
    cid, customer = one.customer()
    one.say(cid, customer, PERSON)
    stream = SseReader(f"{one.url}/v1/conversations/{cid}/events?after=3", customer)
    try:
        dana = two.agent("dana")
        two.http.post(f"/v1/conversations/{cid}/claim", headers=dana).raise_for_status()
        two.http.post(f"/v1/conversations/{cid}/human-messages", headers=dana,
                      json={"text": "from the other worker"}).raise_for_status()
        assert stream.until("human_replied")["data"]["text"] == "from the other worker"
    finally:
        stream.close()


# --- human console ---------------------------------------------------------------------------


def test_the_queue_lists_escalations_urgent_and_oldest_first_with_the_handoff(live: LiveApp) -> None:
    """Each entry carries the handoff payload; fraud (priority 1) comes before an older priority 2."""
    older, c1 = live.customer()
    live.say(older, c1, DOUBLE_CHARGE)
    urgent, c2 = live.customer()
    live.say(urgent, c2, "my card was stolen and someone made fraudulent payments, get me a person")
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
    assert lost.json() == {"error": "already_claimed", "message": lost.json()["message"], "claimed_by": "dana"}
    refused = live.http.post(f"/v1/conversations/{cid}/human-messages", headers=live.agent("lee"),
                             json={"text": "hi"})
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
    """The $750 refund waits for a person; approval runs it, the reply names it, a second approval is 409."""
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
    """While a person owns it the bot stays silent; after release with a note the bot answers again."""
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
