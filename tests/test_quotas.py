"""Attack suite, part 2: limits, paging, key revocation and ids (findings 3, 4, 5 and 7), over real HTTP.

Every limit is set small in the test that exercises it, so each test takes a second or two. A
refusal must be a 429 with ``Retry-After`` and a body naming the quota, counted in
``deskline_quota_refusals_total``, and must append nothing.
"""

from __future__ import annotations

import secrets
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from deskline.api import AuthStore, WebSettings, create_app
from deskline.api.auth import InvalidAgentName
from deskline.config import Settings
from deskline.errors import ConfigError
from deskline.eventlog.database import make_engine
from deskline.eventlog.events import HumanReplied
from deskline.testing import FakeOpenAI
from deskline.testing.cluster import free_port
from tests.conftest import REDIS_URL, service_unavailable
from tests.test_api import PERSON, LiveApp, MakeLive, SseReader, customer_token, live_apps
from tests.test_models import GIBBERISH, models_file


@pytest.fixture
def make_live(sqlite_url: str) -> Iterator[MakeLive]:
    with live_apps(sqlite_url) as make:
        yield make


@pytest.fixture
def live(make_live: MakeLive) -> LiveApp:
    return make_live()


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A Redis key prefix of this test's own; its keys are deleted afterwards."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as exc:
        service_unavailable("Redis at 127.0.0.1:6379", exc)
    prefix = f"test-quotas-{uuid.uuid4().hex[:10]}"
    yield prefix
    keys = list(client.scan_iter(f"{prefix}:*"))
    if keys:
        client.delete(*keys)
    client.close()


def log_size(live: LiveApp, cid: str | None = None) -> int:
    """Events in one conversation's log, or conversations in the store."""
    store = live.app.state.deskline.desk.store
    return len(store.load(cid)) if cid is not None else len(store.conversation_ids())


def refusals(live: LiveApp, quota: str) -> float:
    """deskline_quota_refusals_total{limit=quota} on the app's /metrics."""
    for line in live.http.get("/metrics").text.splitlines():
        if line.startswith(f'deskline_quota_refusals_total{{limit="{quota}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def assert_refused(live: LiveApp, r: httpx.Response, quota: str, error: str = "rate_limited") -> None:
    """A 429 naming the quota, with an integer Retry-After of at least a second, counted in /metrics."""
    assert r.status_code == 429, r.text
    assert int(r.headers["Retry-After"]) >= 1
    body = r.json()
    assert (body["error"], body["quota"]) == (error, quota) and body["message"]
    assert body["retry_after_s"] == int(r.headers["Retry-After"])
    assert refusals(live, quota) >= 1


def open_conversation(live: LiveApp, **headers: str) -> httpx.Response:
    return live.http.post("/v1/conversations", headers=headers)


def post(live: LiveApp, cid: str, headers: dict[str, str], text: str, mid: str | None = None) -> httpx.Response:
    return live.http.post(f"/v1/conversations/{cid}/messages", headers=headers,
                          json={"text": text, "client_message_id": mid})


def wrong_key(key_id: str | None = None) -> dict[str, str]:
    """An agent key of the right shape that is not anyone's (of ``key_id``, or of a random one)."""
    return {"Authorization": f"Bearer dka_{key_id or secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"}


def ended(stream: SseReader, within: float) -> bool:
    """The server closed the stream within ``within`` seconds."""
    stream._thread.join(within)
    return not stream._thread.is_alive()


# --- conversations and messages ---------------------------------------------------------------


def test_new_conversations_per_address_are_limited(make_live: MakeLive) -> None:
    """The fourth conversation from one address in a minute is refused, and opens nothing."""
    live = make_live(conversations_per_ip_minute=3)
    assert [open_conversation(live).status_code for _ in range(3)] == [201, 201, 201]
    r = open_conversation(live)
    assert_refused(live, r, "conversations_per_ip_minute")
    assert log_size(live) == 3


def test_the_daily_conversation_cap_is_a_second_window(make_live: MakeLive) -> None:
    """With a per-day cap below the per-minute one, the day's window refuses first."""
    live = make_live(conversations_per_ip_minute=10, conversations_per_ip_day=2)
    assert [open_conversation(live).status_code for _ in range(2)] == [201, 201]
    assert_refused(live, open_conversation(live), "conversations_per_ip_day")
    assert log_size(live) == 2


@contextmanager
def serve_direct(app: Any) -> Iterator[str]:
    """Like tests.test_api.serve, but uvicorn leaves X-Forwarded-For alone (as `deskline serve` does),
    so the app alone decides whom to believe."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on",
                                           proxy_headers=False, timeout_graceful_shutdown=0.2))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.005)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)


def test_forwarded_for_is_believed_only_from_a_trusted_proxy(sqlite_url: str) -> None:
    """Behind a listed proxy each X-Forwarded-For client has its own count; from anyone else the header is ignored."""

    def opened(trusted: tuple[str, ...], forwarded: list[str]) -> list[int]:
        web = WebSettings(conversations_per_ip_minute=1, trusted_proxies=trusted)
        app = create_app(Settings(database_url=sqlite_url), web=web)
        with serve_direct(app) as url:
            return [httpx.post(f"{url}/v1/conversations", headers={"X-Forwarded-For": f}).status_code
                    for f in forwarded]

    forwarded = ["203.0.113.5", "198.51.100.1, 203.0.113.5", "203.0.113.6", "127.0.0.1, 203.0.113.7"]
    assert opened(("127.0.0.1/32",), forwarded) == [201, 429, 201, 201]
    assert opened((), forwarded) == [201, 429, 429, 429]


def test_messages_per_conversation_per_minute_are_limited(make_live: MakeLive) -> None:
    """The fourth message in a minute is refused and appends nothing; a resend of a taken message still answers."""
    live = make_live(messages_per_conversation_minute=3)
    cid, customer = live.customer()
    for i in range(3):
        assert post(live, cid, customer, f"is the service down? #{i}", f"m-{i}").status_code == 200
    size = log_size(live, cid)
    assert_refused(live, post(live, cid, customer, "and now?", "m-3"), "messages_per_conversation_minute")
    assert log_size(live, cid) == size
    again = post(live, cid, customer, "is the service down? #0", "m-0")
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    other, other_headers = live.customer()  # another conversation has its own count
    assert post(live, other, other_headers, "is the service down?").status_code == 200


def test_a_conversation_has_a_lifetime_cap_of_turns(make_live: MakeLive) -> None:
    """After its last allowed turn a conversation refuses messages with quota_exceeded."""
    live = make_live(turns_per_conversation=2)
    cid, customer = live.customer()
    for text in ("is the service down?", "and the app?"):
        assert post(live, cid, customer, text).status_code == 200
    size = log_size(live, cid)
    r = post(live, cid, customer, "one more")
    assert_refused(live, r, "turns_per_conversation", "quota_exceeded")
    assert "new conversation" in r.json()["message"] and log_size(live, cid) == size


def test_a_conversation_has_a_lifetime_cap_of_bytes(make_live: MakeLive) -> None:
    """Customer text past the conversation's byte cap is refused; a bad message is a 422 that costs nothing."""
    live = make_live(bytes_per_conversation=60)
    cid, customer = live.customer()
    assert post(live, cid, customer, "é" * 15 + " is the app down").status_code == 200  # 46 bytes
    assert post(live, cid, customer, "   ").json()["error"] == "empty_message"
    size = log_size(live, cid)
    assert_refused(live, post(live, cid, customer, "is the app down?"), "bytes_per_conversation", "quota_exceeded")
    assert log_size(live, cid) == size


def test_actions_per_signed_in_customer_are_limited(make_live: MakeLive) -> None:
    """A customer whose actions for the hour are spent is refused in every conversation; anonymous chat is not."""
    live = make_live(actions_per_customer_hour=1)
    cid, customer = live.customer()
    assert "unlocked" in live.say(cid, customer, "my account is locked, please unlock it")["reply"]
    size = log_size(live, cid)
    assert_refused(live, post(live, cid, customer, "please reset my password"), "actions_per_customer_hour")
    assert log_size(live, cid) == size
    other, other_headers = live.customer()  # the same customer in a new conversation
    assert post(live, other, other_headers, "unlock my account").status_code == 429
    anonymous, anonymous_headers = live.customer(anonymous=True)
    assert post(live, anonymous, anonymous_headers, "is the app down?").status_code == 200


def test_verify_counts_against_the_conversations_message_rate(make_live: MakeLive) -> None:
    """/verify appends too, so it shares the message rate: the third call in a minute is refused."""
    live = make_live(messages_per_conversation_minute=2)
    cid, customer = live.customer()
    url = f"/v1/conversations/{cid}/verify"
    for _ in range(2):
        assert live.http.post(url, headers=customer, json={"customer_token": customer_token()}).status_code == 204
    size = log_size(live, cid)
    r = live.http.post(url, headers=customer, json={"customer_token": customer_token()})
    assert_refused(live, r, "messages_per_conversation_minute")
    assert log_size(live, cid) == size


@pytest.mark.parametrize(("limit", "quota"), [({"model_calls_per_minute": 1}, "model_calls_per_minute"),
                                              ({"model_spend_per_day_usd": 0.000001}, "model_spend_per_day_usd")])
def test_the_desk_wide_model_budget_refuses_turns_once_spent(
    make_live: MakeLive, sqlite_url: str, tmp_path: Path, limit: dict[str, Any], quota: str
) -> None:
    """With a models file, once the desk's model calls or spend for the window are used up, turns are refused."""
    with FakeOpenAI() as server:
        path = models_file(tmp_path, server, writer=None)
        path.write_text(path.read_text().replace("timeout: 5", "timeout: 30"))  # a loaded machine is no fault
        settings = Settings(database_url=sqlite_url, models_path=path, abstain_threshold=0.99999)
        live = make_live(settings=settings, **limit)
        cid, customer = live.customer()
        first = live.say(cid, customer, GIBBERISH)
        assert first["llm_calls"] >= 1 and server.count() == first["llm_calls"]
        other, other_headers = live.customer()
        r = post(live, other, other_headers, GIBBERISH)
        assert_refused(live, r, quota, "quota_exceeded")
        assert server.count() == first["llm_calls"] and log_size(live, other) == 1  # no call, nothing appended


# --- streams ------------------------------------------------------------------------------------


def _stream(live: LiveApp, cid: str, headers: dict[str, str], console: bool = False) -> SseReader:
    path = "console/conversations" if console else "conversations"
    return SseReader(f"{live.url}/v1/{path}/{cid}/events", headers)


def test_open_streams_per_conversation_are_capped_and_released(make_live: MakeLive) -> None:
    """A third stream on one token is refused while two are open; closing one frees its slot."""
    live = make_live(streams_per_conversation=2, heartbeat_s=0.3)
    cid, customer = live.customer()
    first, second = _stream(live, cid, customer), _stream(live, cid, customer)
    third = _stream(live, cid, customer)
    try:
        assert (first.status, second.status) == (200, 200)
        assert second.heartbeats.get(timeout=5)  # idle streams still beat, and still count
        assert third.status == 429
        r = live.http.get(f"/v1/conversations/{cid}/events", headers={**customer, "Accept": "text/event-stream"})
        assert_refused(live, r, "streams_per_conversation", "quota_exceeded")
        first.close()
        quotas = live.app.state.deskline.quotas
        deadline = time.monotonic() + 10
        while quotas.open_streams("streams_per_conversation", cid) > 1:
            assert time.monotonic() < deadline, "the closed stream kept its slot"
            time.sleep(0.05)
        fourth = _stream(live, cid, customer)
        assert fourth.status == 200
        fourth.close()
    finally:
        for s in (first, second, third):
            s.close()


def test_open_streams_per_address_count_customers_and_agents(make_live: MakeLive) -> None:
    """The per-address cap counts every stream from the address, a customer's or an agent's."""
    live = make_live(streams_per_ip=2)
    a, customer_a = live.customer()
    b, customer_b = live.customer()
    live.say(b, customer_b, PERSON)
    streams = [_stream(live, a, customer_a), _stream(live, b, live.agent("dana"), console=True)]
    try:
        assert [s.status for s in streams] == [200, 200]
        r = live.http.get(f"/v1/conversations/{b}/events", headers={**customer_b, "Accept": "text/event-stream"})
        assert_refused(live, r, "streams_per_ip", "quota_exceeded")
    finally:
        for s in streams:
            s.close()


def test_a_stream_ends_when_its_token_stops_opening_the_conversation(make_live: MakeLive) -> None:
    """A stream whose conversation token was deleted ends at its next re-check."""
    live = make_live(stream_recheck_s=0.3)
    cid, customer = live.customer()
    stream = _stream(live, cid, customer)
    try:
        assert stream.next()["event"] == "conversation_opened"
        with live.auth.engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM conversation_tokens WHERE conversation_id = ?", (cid,))
        assert ended(stream, within=5)
    finally:
        stream.close()


def test_a_removed_agents_open_stream_ends_within_seconds(make_live: MakeLive, sqlite_url: str) -> None:
    """`deskline agents remove` in another process ends the agent's open console stream within seconds."""
    live = make_live(stream_recheck_s=0.5)
    cid, customer = live.customer()
    live.say(cid, customer, PERSON)
    dana = live.agent("dana")
    stream = _stream(live, cid, dana, console=True)
    try:
        assert stream.until("escalation_requested")
        assert AuthStore(make_engine(sqlite_url)).remove_agent("dana")  # as `deskline agents remove dana` does
        removed_at = time.monotonic()
        assert ended(stream, within=5), "the revoked key's stream stayed open"
        assert time.monotonic() - removed_at < 3
        assert live.http.get("/v1/agents/me", headers=dana).status_code == 401  # and the key opens nothing new
    finally:
        stream.close()


# --- agent keys ---------------------------------------------------------------------------------


def test_wrong_agent_keys_from_one_address_are_limited(make_live: MakeLive) -> None:
    """Past the address's wrong keys for the minute, keys are not checked (429); a key verified here still works."""
    live = make_live(key_failures_per_ip_minute=3, key_failures_per_key_minute=0)
    dana = live.agent("dana")
    assert live.http.get("/v1/agents/me", headers=dana).status_code == 200
    assert [live.http.get("/v1/queue", headers=wrong_key()).status_code for _ in range(3)] == [401, 401, 401]
    checks = live.auth.slow_checks
    assert_refused(live, live.http.get("/v1/queue", headers=wrong_key()), "key_failures_per_ip_minute")
    assert live.auth.slow_checks == checks  # refused before any hashing
    lee = {"Authorization": f"Bearer {live.auth.add_agent('lee')}"}
    assert live.http.get("/v1/agents/me", headers=lee).status_code == 429  # a fresh key waits too
    assert live.http.get("/v1/agents/me", headers=dana).json() == {"name": "dana"}


def test_wrong_secrets_for_one_key_id_are_limited(make_live: MakeLive) -> None:
    """Guessing one agent's secret is limited per key id; other key ids and the agent's own session are not affected."""
    live = make_live(key_failures_per_ip_minute=0, key_failures_per_key_minute=2)
    dana_key = live.auth.add_agent("dana")
    dana = {"Authorization": f"Bearer {dana_key}"}
    assert live.http.get("/v1/agents/me", headers=dana).status_code == 200
    dana_id = dana_key.split("_")[1]
    assert [live.http.get("/v1/queue", headers=wrong_key(dana_id)).status_code for _ in range(2)] == [401, 401]
    assert_refused(live, live.http.get("/v1/queue", headers=wrong_key(dana_id)), "key_failures_per_key_minute")
    assert live.http.get("/v1/queue", headers=wrong_key()).status_code == 401
    assert live.http.get("/v1/agents/me", headers=dana).status_code == 200


def test_known_and_unknown_key_ids_do_the_same_hashing(make_live: MakeLive) -> None:
    """A wrong secret for a real key id and a made-up key id both cost exactly one scrypt and both answer 401."""
    live = make_live(key_failures_per_ip_minute=0, key_failures_per_key_minute=0)
    known_id = live.auth.add_agent("dana").split("_")[1]
    for headers in (wrong_key(known_id), wrong_key(), wrong_key(known_id), wrong_key()):
        before = live.auth.slow_checks
        assert live.http.get("/v1/agents/me", headers=headers).status_code == 401
        assert live.auth.slow_checks == before + 1


# --- paging -------------------------------------------------------------------------------------


def _pages(live: LiveApp, path: str, headers: dict[str, str], limit: int) -> tuple[list[dict[str, Any]], int]:
    """Every event by following next_after; and how many pages it took."""
    events: list[dict[str, Any]] = []
    after: int | None = 0
    pages = 0
    while after is not None:
        r = live.http.get(path, headers=headers, params={"after": after, "limit": limit})
        assert r.status_code == 200, r.text
        body = r.json()
        events += body["events"]
        pages += 1
        after = body["next_after"]
        if after is not None:
            assert r.headers["Link"] == f'<{path}?after={after}&limit={limit}>; rel="next"'
            assert body["last_seq"] == after
        else:
            assert "Link" not in r.headers
    return events, pages


def test_event_reads_are_paged_and_paging_returns_the_whole_conversation(live: LiveApp) -> None:
    """?limit pages the customer's and the console's reads; following next_after gives what one big read gives."""
    cid, customer = live.customer()
    for text in (PERSON, "hello?", "still there?"):
        live.say(cid, customer, text)
    dana = live.agent("dana")
    total = log_size(live, cid)
    for path, headers in ((f"/v1/conversations/{cid}/events", customer),
                          (f"/v1/console/conversations/{cid}/events", dana)):
        whole = live.http.get(path, headers=headers, params={"limit": 1000}).json()
        assert whole["next_after"] is None and whole["last_seq"] == total
        paged, pages = _pages(live, path, headers, limit=3)
        assert paged == whole["events"] and pages == -(-total // 3)
        first = live.http.get(path, headers=headers).json()  # the default page holds them all here
        assert first["next_after"] is None
        for bad in (0, 1001):
            assert live.http.get(path, headers=headers, params={"limit": bad}).status_code == 422


def test_a_stream_delivers_a_long_conversation_page_by_page(live: LiveApp) -> None:
    """A stream on a conversation longer than one read (450 events) delivers every event once, in order."""
    cid, customer = live.customer()
    store = live.app.state.deskline.desk.store
    store.append(cid, 1, 1, [HumanReplied(agent_name="ops", text=f"line {i}") for i in range(450)])
    stream = _stream(live, cid, customer)
    try:
        seqs = [int(stream.next()["id"]) for _ in range(451)]
    finally:
        stream.close()
    assert seqs == list(range(1, 452))


# --- ids ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["m\x00-1", "m\x1b[31m", "m\n2", "m\x85"])
def test_control_characters_in_ids_are_a_422_on_every_database(database_url: str, bad: str) -> None:
    """A NUL or other control character in client_message_id, a path id or an agent name is a clear 422."""
    with live_apps(database_url) as make:
        live = make(settings=Settings(database_url=database_url))
        cid, customer = live.customer()
        size = log_size(live, cid)
        r = post(live, cid, customer, "is the service down?", bad)
        assert r.status_code == 422 and r.json()["error"] == "invalid_request", r.text
        assert "client_message_id must not contain control characters" in r.json()["message"]
        assert log_size(live, cid) == size
        assert post(live, cid, customer, "is the service down?", "m-ok").status_code == 200  # the connection lives
        assert live.http.get(f"/v1/conversations/{cid[:4]}%00{cid[4:]}/events", headers=customer).status_code == 422
        path_id = urllib.parse.quote(f"c{bad}", safe="")
        assert live.http.post(f"/v1/conversations/{path_id}/claim", headers=live.agent("dana")).status_code == 422
        for call in (live.auth.add_agent, live.auth.remove_agent):
            with pytest.raises(InvalidAgentName, match="control characters"):
                call(f"dana{bad}")


# --- shared counts ------------------------------------------------------------------------------


def test_two_apps_on_one_redis_share_their_counts(sqlite_url: str, redis_prefix: str) -> None:
    """Two apps (two processes' worth) on one database and one Redis count conversations and streams together."""
    shared = {"rate_limit_storage": REDIS_URL, "rate_limit_prefix": redis_prefix}
    with live_apps(sqlite_url) as make:
        one = make(conversations_per_ip_minute=3, streams_per_conversation=1, **shared)
        two = make(conversations_per_ip_minute=3, streams_per_conversation=1, **shared)
        opened = [open_conversation(app) for app in (one, two, one)]
        assert [r.status_code for r in opened] == [201, 201, 201]
        assert_refused(two, open_conversation(two), "conversations_per_ip_minute")
        assert open_conversation(one).status_code == 429
        cid, customer = opened[1].json()["id"], {"Authorization": f"Bearer {opened[1].json()['token']}"}
        first = _stream(one, cid, customer)
        try:
            assert first.status == 200
            r = two.http.get(f"/v1/conversations/{cid}/events", headers={**customer, "Accept": "text/event-stream"})
            assert_refused(two, r, "streams_per_conversation", "quota_exceeded")
        finally:
            first.close()
    import redis

    assert list(redis.Redis.from_url(REDIS_URL).scan_iter(f"{redis_prefix}:*"))  # the counts really were in Redis


def test_with_redis_unreachable_each_process_still_counts(make_live: MakeLive) -> None:
    """When the quota Redis does not answer, the limits hold per process instead of failing open."""
    live = make_live(conversations_per_ip_minute=2, rate_limit_storage=f"redis://127.0.0.1:{free_port()}/0")
    assert [open_conversation(live).status_code for _ in range(3)] == [201, 201, 429]


def test_quota_settings_are_read_from_the_environment() -> None:
    """Every DESKLINE_* quota variable is read, 0 turns one off, and impossible values are refused."""
    web = WebSettings.from_env({"DESKLINE_MESSAGES_PER_CONVERSATION_MINUTE": "7", "DESKLINE_STREAMS_PER_IP": "0",
                                "DESKLINE_MODEL_SPEND_PER_DAY_USD": "2.5",
                                "DESKLINE_TRUSTED_PROXIES": "10.0.0.0/8, ::1",
                                "DESKLINE_RATE_LIMIT_STORAGE": REDIS_URL, "DESKLINE_STREAM_RECHECK_S": "2"})
    assert (web.messages_per_conversation_minute, web.streams_per_ip, web.model_spend_per_day_usd) == (7, 0, 2.5)
    assert web.trusted_proxies == ("10.0.0.0/8", "::1") and web.quota_storage == REDIS_URL
    assert web.stream_recheck_s == 2.0 and web.quotas is True
    defaults = WebSettings.from_env({})
    assert (defaults.conversations_per_ip_minute, defaults.turns_per_conversation, defaults.quota_storage) == (
        20, 500, "memory://")
    assert WebSettings.from_env({"DESKLINE_REDIS_URL": REDIS_URL}).quota_storage == REDIS_URL
    assert WebSettings.from_env({"DESKLINE_QUOTAS": "off"}).quotas is False
    for bad in ({"DESKLINE_TURNS_PER_CONVERSATION": "-1"}, {"DESKLINE_RATE_LIMIT_STORAGE": "memcached://x"},
                {"DESKLINE_TRUSTED_PROXIES": "proxy.example"}, {"DESKLINE_QUOTAS": "maybe"},
                {"DESKLINE_STREAMS_PER_IP": "many"}):
        with pytest.raises(ConfigError):
            WebSettings.from_env(bad)
