"""Scale-out: several real ``deskline serve`` processes on one PostgreSQL schema, and shared state.

Live events must reach a customer whichever process holds the stream and whichever took the
message: the processes wake each other through PostgreSQL LISTEN/NOTIFY or Redis pub/sub
(``deskline.api.bus``). The streams' poll is set to 30 s here, so an event that arrives within
about a second was carried by the channel, not found by the poll. The litellm Router's shared
state (cooldowns, usage) goes through Redis when the models file's ``router_settings`` name it.
"""

from __future__ import annotations

import asyncio
import queue
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from deskline.api import AuthStore, WebSettings, create_app
from deskline.config import Settings
from deskline.eventlog.database import make_engine
from deskline.eventlog.events import HumanReplied
from deskline.eventlog.store import SqlEventStore
from deskline.testing.cluster import ServeCluster, free_port
from tests.conftest import REDIS_URL, service_unavailable
from tests.test_api import PERSON, SseReader, serve

PROMPT = 1.5  # seconds: "within about a second", with room for a loaded 2-core machine
SLOW_POLL = {"DESKLINE_POLL_INTERVAL_S": "30", "DESKLINE_CHANNEL_POLL_INTERVAL_S": "30"}


def _redis() -> Any:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as exc:
        service_unavailable("Redis at 127.0.0.1:6379", exc)
    return client


@pytest.fixture
def cluster_env(postgres_url: str, tmp_path: Path) -> dict[str, str]:
    """The environment of `deskline serve` processes on this test's PostgreSQL schema."""
    return {"DESKLINE_DATABASE_URL": postgres_url, "DESKLINE_LOG_LEVEL": "warning", **SLOW_POLL}


def _open(url: str) -> tuple[str, dict[str, str]]:
    r = httpx.post(f"{url}/v1/conversations", timeout=20)
    assert r.status_code == 201, r.text
    return r.json()["id"], {"Authorization": f"Bearer {r.json()['token']}"}


def _arrives(stream: SseReader, kind: str, since: float) -> tuple[dict[str, Any], float]:
    """The next frame of this type, and the seconds from ``since`` until it was read."""
    frame = stream.until(kind, timeout=10)
    return frame, time.monotonic() - since


@pytest.mark.postgres
@pytest.mark.parametrize("channel", ["postgres", "redis"])
def test_a_stream_on_one_process_gets_what_another_process_appended_at_once(
    channel: str, cluster_env: dict[str, str], postgres_url: str, tmp_path: Path
) -> None:
    """Stream from A, talk and reply through B: each event reaches A's stream within ~1 s, by the channel."""
    if channel == "redis":
        _redis()
    env = {**cluster_env, "DESKLINE_EVENT_CHANNEL": channel, "DESKLINE_REDIS_URL": REDIS_URL}
    with ServeCluster(2, env=env, log_dir=tmp_path, grace=0.5) as cluster:
        a, b = cluster.urls
        cid, customer = _open(b)
        key = AuthStore(make_engine(postgres_url)).add_agent("dana")
        dana = {"Authorization": f"Bearer {key}"}
        stream = SseReader(f"{a}/v1/conversations/{cid}/events", customer)
        try:
            assert stream.next()["event"] == "conversation_opened"
            took: dict[str, float] = {}  # from B's answer (the events are committed) to A's stream
            r = httpx.post(f"{b}/v1/conversations/{cid}/messages", headers=customer,
                           json={"text": PERSON, "client_message_id": "m-1"}, timeout=20)
            done = time.monotonic()
            assert r.status_code == 200 and r.json()["escalated"] is True
            _, took["customer_messaged"] = _arrives(stream, "customer_messaged", done)
            _, took["reply_sent"] = _arrives(stream, "reply_sent", done)
            httpx.post(f"{b}/v1/conversations/{cid}/claim", headers=dana, timeout=20).raise_for_status()
            claimed, took["escalation_claimed"] = _arrives(stream, "escalation_claimed", time.monotonic())
            httpx.post(f"{b}/v1/conversations/{cid}/human-messages", headers=dana,
                       json={"text": "Dana here, from process B."}, timeout=20).raise_for_status()
            replied, took["human_replied"] = _arrives(stream, "human_replied", time.monotonic())
        finally:
            stream.close()
    assert claimed["data"]["agent"] == "dana" and replied["data"]["text"] == "Dana here, from process B."
    assert max(took.values()) < PROMPT, took


@pytest.mark.postgres
def test_without_a_channel_the_other_process_waits_for_the_poll(cluster_env: dict[str, str], tmp_path: Path) -> None:
    """The control: with the channel off and a 30 s poll, B's reply does not reach A's stream within the window."""
    with ServeCluster(2, env={**cluster_env, "DESKLINE_EVENT_CHANNEL": "none"}, log_dir=tmp_path, grace=0.5) as cluster:
        a, b = cluster.urls
        cid, customer = _open(b)
        stream = SseReader(f"{a}/v1/conversations/{cid}/events", customer)
        try:
            assert stream.next()["event"] == "conversation_opened"
            httpx.post(f"{b}/v1/conversations/{cid}/messages", headers=customer,
                       json={"text": PERSON}, timeout=20).raise_for_status()
            with pytest.raises(queue.Empty):  # nothing arrived in the window
                stream.next(timeout=PROMPT)
        finally:
            stream.close()


@pytest.mark.postgres
def test_serve_with_two_workers_streams_every_message_promptly(cluster_env: dict[str, str], tmp_path: Path) -> None:
    """`deskline serve --workers 2`: whichever worker takes each message, the stream gets it within ~1 s."""
    with ServeCluster(1, env=cluster_env, log_dir=tmp_path, workers=2, grace=0.5) as cluster:
        url = cluster.urls[0]
        cid, customer = _open(url)
        stream = SseReader(f"{url}/v1/conversations/{cid}/events?after=1", customer)
        try:
            for i in range(6):  # a fresh connection each time, so the kernel picks the worker
                with httpx.Client(timeout=20) as http:
                    http.post(f"{url}/v1/conversations/{cid}/messages", headers=customer,
                              json={"text": f"is the service down? #{i}"}).raise_for_status()
                _frame, took = _arrives(stream, "reply_sent", time.monotonic())
                assert took < PROMPT, (i, took)
        finally:
            stream.close()


def test_streams_fall_back_to_the_poll_when_the_channel_is_down(sqlite_url: str) -> None:
    """With the Redis channel unreachable the app still serves, and a stream finds another writer's event by polling."""
    settings = Settings(database_url=sqlite_url)
    web = WebSettings(event_channel="redis", redis_url=f"redis://127.0.0.1:{free_port()}/0", poll_interval_s=0.2)
    app = create_app(settings, web=web)
    with serve(app) as url:
        bus_store = app.state.deskline.desk.store
        assert type(bus_store).__name__ == "PublishingStore" and not bus_store.bus.live
        cid, customer = _open(url)
        stream = SseReader(f"{url}/v1/conversations/{cid}/events?after=1", customer)
        try:
            other = SqlEventStore(make_engine(sqlite_url))  # another process, e.g. a script
            other.append(cid, 1, 1, [HumanReplied(agent_name="ops", text="written elsewhere")])
            assert stream.until("human_replied", timeout=5)["data"]["text"] == "written elsewhere"
        finally:
            stream.close()


# --- the model router's shared state -------------------------------------------------------


@pytest.fixture
def router_keys() -> Iterator[tuple[Any, str]]:
    """A Redis client and a unique deployment-id tag; the tag's keys are deleted afterwards."""
    client = _redis()
    tag = uuid.uuid4().hex[:10]
    yield client, tag
    keys = list(client.scan_iter(f"*{tag}*"))
    if keys:
        client.delete(*keys)


def test_two_model_routers_share_a_cooldown_through_redis(tmp_path: Path, router_keys: tuple[Any, str]) -> None:
    """router_settings.redis_url passes through ModelRouter to litellm: B skips the deployment A saw rate-limited."""
    from deskline.routing.llm_config import load_models
    from deskline.routing.models import ModelRouter
    from deskline.testing import FakeOpenAI, ModelBehaviour

    client, tag = router_keys
    request = {"messages": [{"role": "user", "content": "hello"}]}
    with FakeOpenAI(models={"limited-model": ModelBehaviour(always="429")}, retry_after=60) as server:

        def deployment(model: str) -> dict[str, Any]:
            params = {"model": f"openai/{model}", "api_base": server.base_url, "api_key": "x", "timeout": 5}
            return {"model_name": "planner", "litellm_params": params, "model_info": {"id": f"{model}-{tag}"}}

        doc = {"model_list": [deployment("limited-model"), deployment("good-model")],
               "router_settings": {"redis_url": REDIS_URL, "routing_strategy": "simple-shuffle"}}
        shared_file, local_file = tmp_path / "shared.yaml", tmp_path / "local.yaml"
        shared_file.write_text(yaml.safe_dump(doc))
        local_file.write_text(yaml.safe_dump({**doc, "router_settings": {"routing_strategy": "simple-shuffle"}}))

        async def calls(router: ModelRouter, n: int, stop_on_error: bool = False) -> int:
            """Requests to the limited deployment among ``n`` calls (or until the first error)."""
            before = server.count("limited-model")
            for _ in range(n):
                try:
                    await router.complete("planner", "planner", request)
                except Exception:
                    if stop_on_error:
                        break
            return server.count("limited-model") - before

        async def scenario() -> tuple[int, int]:
            first = ModelRouter(load_models(shared_file))
            assert await calls(first, 40, stop_on_error=True) == 1  # A meets the 429 (1/2 chance per call)
            second = ModelRouter(load_models(shared_file))  # its own in-memory cache: only Redis is shared
            third = ModelRouter(load_models(local_file))  # the control: no Redis
            return await calls(second, 12), await calls(third, 24)

        seen_by_shared, seen_by_local = asyncio.run(scenario())
    assert client.get(f"deployment:limited-model-{tag}:cooldown") is not None  # litellm's own key, in Redis
    assert 0 < client.ttl(f"deployment:limited-model-{tag}:cooldown") <= 60
    assert seen_by_shared == 0  # the cooldown A caused kept B off the deployment
    assert seen_by_local >= 1  # without Redis a router has no idea, and keeps trying it


def test_the_channel_settings_are_read_from_the_environment() -> None:
    """DESKLINE_EVENT_CHANNEL, DESKLINE_REDIS_URL and both poll intervals are read, and bad values refused."""
    from deskline.api.bus import PostgresTransport, RedisTransport, transport_for
    from deskline.errors import ConfigError

    web = WebSettings.from_env({"DESKLINE_EVENT_CHANNEL": "Redis", "DESKLINE_REDIS_URL": REDIS_URL,
                                "DESKLINE_POLL_INTERVAL_S": "2", "DESKLINE_CHANNEL_POLL_INTERVAL_S": "20"})
    assert (web.event_channel, web.redis_url, web.poll_interval_s, web.channel_poll_interval_s) == (
        "redis", REDIS_URL, 2.0, 20.0)
    pg, lite = Settings(database_url="postgresql+psycopg://u@h/db"), Settings(database_url="sqlite://")
    assert isinstance(transport_for(lite, web), RedisTransport)
    assert isinstance(transport_for(pg, WebSettings()), PostgresTransport)  # auto: the database's own
    assert transport_for(lite, WebSettings()) is None  # one process on SQLite needs no channel
    assert transport_for(pg, WebSettings(event_channel="none")) is None
    for bad in ({"DESKLINE_EVENT_CHANNEL": "kafka"}, {"DESKLINE_CHANNEL_POLL_INTERVAL_S": "0"}):
        with pytest.raises(ConfigError):
            WebSettings.from_env(bad)
    with pytest.raises(ConfigError, match="DESKLINE_REDIS_URL"):
        transport_for(lite, WebSettings(event_channel="redis"))
