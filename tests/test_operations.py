"""Operations: health and readiness, a hung database, slow clients, graceful shutdown.

The hung database is PostgreSQL behind a TCP proxy on loopback that the test pauses: it keeps
every connection open (and accepts new ones) but forwards nothing, as a stuck proxy or a
partitioned network does. Connection refused is the easy case; this one is what used to hang.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from deskline.api.app import create_app
from deskline.api.settings import WebSettings
from deskline.config import Settings
from deskline.testing.cluster import free_port, wait_healthy
from tests.test_api import JWT, customer_token, serve


class PausableProxy:
    """Forwards 127.0.0.1:port to ``target``; ``pause()`` stops moving bytes without closing."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.running = threading.Event()
        self.running.set()
        self.closed = False
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def pause(self) -> None:
        self.running.clear()

    def resume(self) -> None:
        self.running.set()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.sockets.append(client)
            threading.Thread(target=self._pipe, args=(client,), daemon=True).start()

    def _pipe(self, client: socket.socket) -> None:
        self.running.wait()  # a connection made while paused is accepted and left hanging
        if self.closed:
            return
        upstream = socket.create_connection(self.target)
        self.sockets.append(upstream)
        peers = {client: upstream, upstream: client}
        while not self.closed:
            ready, _, _ = select.select(list(peers), [], [], 0.1)
            if not self.running.is_set():
                continue  # paused: bytes stay in the kernel buffers, nobody answers
            for s in ready:
                try:
                    data = s.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    for p in peers:
                        p.close()
                    return
                peers[s].sendall(data)

    def close(self) -> None:
        self.closed = True
        self.running.set()
        self.listener.close()
        for s in self.sockets:
            with contextlib.suppress(OSError):
                s.close()


def _proxied(postgres_url: str, port: int) -> str:
    return postgres_url.replace("@127.0.0.1:5432/", f"@127.0.0.1:{port}/")


@pytest.fixture
def hung_app(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[httpx.Client, PausableProxy]]:
    monkeypatch.setenv("DESKLINE_DB_STATEMENT_TIMEOUT_S", "2")  # the client gives up after 3 s
    monkeypatch.setenv("DESKLINE_DB_CONNECT_TIMEOUT_S", "2")
    monkeypatch.setenv("DESKLINE_DB_POOL_TIMEOUT_S", "2")
    proxy = PausableProxy(("127.0.0.1", 5432))
    app = create_app(Settings(database_url=_proxied(postgres_url, proxy.port)),
                     web=WebSettings(event_channel="none", quotas=False, sweep_interval_s=0, **JWT))
    try:
        with serve(app) as url, httpx.Client(base_url=url, timeout=30) as http:
            yield http, proxy
    finally:
        proxy.close()


@pytest.mark.postgres
@pytest.mark.slow
def test_a_hung_database_gives_503_within_the_bound_and_readyz_fails_while_healthz_passes(
    hung_app: tuple[httpx.Client, PausableProxy],
) -> None:
    http, proxy = hung_app
    r = http.post("/v1/conversations", json={"customer_token": customer_token()})
    assert r.status_code == 201, r.text
    cid, headers = r.json()["id"], {"Authorization": f"Bearer {r.json()['token']}"}
    assert http.post(f"/v1/conversations/{cid}/messages", headers=headers,
                     json={"text": "where is my invoice"}).status_code == 200
    assert http.get("/readyz").status_code == 200

    proxy.pause()
    results: list[tuple[int, float, str]] = []

    def read() -> None:
        started = time.monotonic()
        r = http.get(f"/v1/conversations/{cid}/events", headers=headers, params={"after": 0})
        results.append((r.status_code, time.monotonic() - started, r.text))

    def say() -> None:  # a customer turn: its store calls go through the turns' face of the store
        started = time.monotonic()
        r = http.post(f"/v1/conversations/{cid}/messages", headers=headers, json={"text": "and my refund?"})
        results.append((r.status_code, time.monotonic() - started, r.text))

    readers = [threading.Thread(target=read) for _ in range(12)]  # more than the thread pool's share
    readers += [threading.Thread(target=say) for _ in range(3)]
    for t in readers:
        t.start()
    time.sleep(0.2)
    started = time.monotonic()
    health = http.get("/healthz")
    assert health.status_code == 200 and time.monotonic() - started < 0.5
    started = time.monotonic()
    ready = http.get("/readyz")
    ready_s = time.monotonic() - started
    assert ready.status_code == 503 and ready.json()["checks"]["database"] in ("timeout", "error")
    assert ready_s < 3.0
    for t in readers:
        t.join(30)
    assert len(results) == 15
    slowest = max(s for _, s, _ in results)
    print(f"hung database: {len(results)} requests (12 reads, 3 messages), all 503 within {slowest:.2f} s "
          f"(median {sorted(s for _, s, _ in results)[7]:.2f} s); /readyz 503 in {ready_s:.2f} s")
    assert all(code == 503 for code, _, _ in results), results
    assert slowest <= 8.0  # 3 s round-trip deadline, then 2-3 s connect / pool wait for the queued ones
    port = str(proxy.port)
    assert not any(port in body or "127.0.0.1" in body for _, _, body in results)
    metrics = http.get("/metrics", timeout=15)
    assert metrics.status_code == 200 and port not in metrics.text

    proxy.resume()
    deadline = time.monotonic() + 15
    while http.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "not ready again after the database came back"
        time.sleep(0.2)
    assert http.get(f"/v1/conversations/{cid}/events", headers=headers).status_code == 200


def test_healthz_and_readyz_on_a_working_database(sqlite_url: str) -> None:
    app = create_app(Settings(database_url=sqlite_url), web=WebSettings(**JWT))
    with serve(app) as url, httpx.Client(base_url=url) as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        ready = http.get("/readyz")
        assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok"}


def test_readyz_fails_when_the_configured_redis_does_not_answer(sqlite_url: str) -> None:
    dead = free_port()
    app = create_app(Settings(database_url=sqlite_url),
                     web=WebSettings(redis_url=f"redis://127.0.0.1:{dead}/0", event_channel="none",
                                     rate_limit_storage="memory://", **JWT))
    with serve(app) as url, httpx.Client(base_url=url) as http:
        ready = http.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"] == {"database": "ok", "redis": "error"}
        assert str(dead) not in ready.text
        assert http.get("/healthz").status_code == 200


# --- real `deskline serve` processes ----------------------------------------------------------


def _serve(tmp_path: Path, env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    log = (tmp_path / f"serve-{port}.log").open("ab")
    return subprocess.Popen([sys.executable, "-m", "deskline.cli", "serve", "--port", str(port)],
                            env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)


@pytest.mark.slow
def test_slow_clients_are_closed_by_the_read_deadline(tmp_path: Path) -> None:
    port = free_port()
    env = {"DESKLINE_DATABASE_URL": f"sqlite:///{tmp_path}/desk.db", "DESKLINE_REQUEST_READ_TIMEOUT_S": "2",
           "DESKLINE_QUOTAS": "off"}
    proc = _serve(tmp_path, env, port)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc)
        kinds = {"silent": [b""], "headers": [b"GET /healthz HTTP/1.1\r\n", b"Host: x\r\n", b"X-A: 1\r\n"],
                 "body": [b"POST /v1/conversations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                          b"Content-Length: 100\r\n\r\n{", b'"a', b'":', b"1"]}
        socks: dict[str, list[socket.socket]] = {k: [] for k in kinds}
        for kind in kinds:
            for _ in range(20):
                s = socket.create_connection(("127.0.0.1", port))
                socks[kind].append(s)
        started = time.monotonic()
        closed_at: dict[str, float] = {}
        step = 0
        while len(closed_at) < len(kinds) and time.monotonic() - started < 12:
            for kind, parts in kinds.items():
                if kind in closed_at:
                    continue
                try:
                    part = parts[min(step, len(parts) - 1)]
                    for s in socks[kind]:
                        if part:
                            s.sendall(part)
                except OSError:  # the server closed it: a write to a closed socket fails
                    closed_at[kind] = time.monotonic() - started
                    continue
                ready, _, _ = select.select(socks[kind], [], [], 0)
                if len(ready) == len(socks[kind]) and all(s.recv(1024) == b"" for s in ready):
                    closed_at[kind] = time.monotonic() - started
            step += 1
            time.sleep(0.5)  # a byte every half second: it would never finish on its own
        assert set(closed_at) == set(kinds), closed_at
        assert all(1.5 <= t <= 5 for t in closed_at.values()), closed_at
        # and the server still serves everyone else
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        for group in socks.values():
            for s in group:
                s.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


@pytest.mark.slow
def test_sigterm_finishes_the_turns_in_flight_then_exits(tmp_path: Path) -> None:
    from deskline.testing import FakeOpenAI, ModelBehaviour

    with FakeOpenAI(models={"slow-model": ModelBehaviour(always="slow", slow_seconds=2.5)}) as fake:
        params = {"model": "openai/slow-model", "api_base": fake.base_url, "api_key": "x", "timeout": 20}
        models = tmp_path / "models.yaml"
        models.write_text(yaml.safe_dump({"model_list": [{"model_name": "planner", "litellm_params": params}]}))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        db = f"sqlite:///{tmp_path}/desk.db"
        env = {"DESKLINE_DATABASE_URL": db, "DESKLINE_MODELS": str(models), "DESKLINE_ABSTAIN_THRESHOLD": "0.99999",
               "DESKLINE_QUOTAS": "off", "DESKLINE_GRACEFUL_SHUTDOWN_S": "20"}
        proc = _serve(tmp_path, env, port)
        try:
            wait_healthy(url, proc)
            opened = httpx.post(f"{url}/v1/conversations").json()
            cid, headers = opened["id"], {"Authorization": f"Bearer {opened['token']}"}
            answers: list[httpx.Response] = []

            def turn(i: int) -> None:
                answers.append(httpx.post(f"{url}/v1/conversations/{cid}/messages", headers=headers, timeout=30,
                                          json={"text": f"zorp the flibber quux {i}", "client_message_id": f"m{i}"}))

            sender = threading.Thread(target=turn, args=(1,))
            sender.start()
            deadline = time.monotonic() + 15
            while fake.count() == 0:  # the turn reached the (slow) model: it is in flight now
                assert time.monotonic() < deadline, (tmp_path / f"serve-{port}.log").read_text()
                time.sleep(0.05)
            time.sleep(0.3)
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            with pytest.raises(httpx.ConnectError):  # no longer accepting
                httpx.get(f"{url}/healthz", timeout=2)
            sender.join(30)
            code = proc.wait(30)
            took = time.monotonic() - started
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    assert code == 0, (tmp_path / f"serve-{port}.log").read_text()
    assert len(answers) == 1 and answers[0].status_code == 200, answers and answers[0].text
    assert took < 20
    from deskline.eventlog.database import make_engine
    from deskline.eventlog.store import SqlEventStore

    store = SqlEventStore(make_engine(db))
    assert store.unfinished() == []  # the turn was answered, not left for recovery
    types = [r.event.type for r in store.load(cid)]
    assert "customer_messaged" in types and types[-1] != "customer_messaged", types


# --- settings ----------------------------------------------------------------------------------


def test_database_timeouts_reach_the_drivers(postgres_url: str, sqlite_url: str) -> None:
    from sqlalchemy import text

    from deskline.eventlog.database import DbTimeouts, make_engine

    engine = make_engine(postgres_url, DbTimeouts(statement_s=1.5, connect_s=2))
    with engine.connect() as conn:
        assert conn.execute(text("SHOW statement_timeout")).scalar() == "1500ms"
        started = time.monotonic()
        with pytest.raises(Exception, match="statement timeout"):
            conn.execute(text("SELECT pg_sleep(5)"))
        assert time.monotonic() - started < 3
    assert engine.pool.timeout() == 3.0  # type: ignore[attr-defined]
    engine.dispose()
    lite = make_engine(sqlite_url, DbTimeouts(busy_s=0.5))
    with lite.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 500
    lite.dispose()


def test_bad_timeout_settings_are_refused_with_the_variable_named() -> None:
    from deskline.api.server_limits import ServerLimits
    from deskline.errors import ConfigError
    from deskline.eventlog.database import DbTimeouts

    assert DbTimeouts.from_env({"DESKLINE_DB_STATEMENT_TIMEOUT_S": "2.5"}).round_trip_s == 3.5
    with pytest.raises(ConfigError, match="DESKLINE_DB_POOL_TIMEOUT_S"):
        DbTimeouts.from_env({"DESKLINE_DB_POOL_TIMEOUT_S": "soon"})
    with pytest.raises(ConfigError, match="DESKLINE_DB_CONNECT_TIMEOUT_S"):
        DbTimeouts.from_env({"DESKLINE_DB_CONNECT_TIMEOUT_S": "0"})
    os.environ["DESKLINE_LIMIT_CONCURRENCY"] = "-1"
    try:
        with pytest.raises(ConfigError, match="DESKLINE_LIMIT_CONCURRENCY"):
            ServerLimits.from_env()
    finally:
        del os.environ["DESKLINE_LIMIT_CONCURRENCY"]
    assert ServerLimits().uvicorn_options()["limit_concurrency"] == 1000


def test_a_served_app_freezes_what_start_up_left_alive(tmp_path: Path) -> None:
    """The app ``deskline serve`` builds (``create_app_from_env``) takes its start-up objects out
    of full garbage collections once its lifespan starts; an app made with ``create_app`` (a host
    embedding deskline, the tests) leaves the collector alone. In a process of its own: a freeze
    lasts for the life of the process."""
    script = (
        "import gc\n"
        "from fastapi.testclient import TestClient\n"
        "from deskline.api.app import create_app, create_app_from_env\n"
        "from deskline.config import Settings\n"
        "with TestClient(create_app(Settings(database_url='sqlite://'))):\n"
        "    embedded = gc.get_freeze_count()\n"
        "with TestClient(create_app_from_env()):\n"
        "    served = gc.get_freeze_count()\n"
        "print(embedded, served)\n"
    )
    env = {**os.environ, "DESKLINE_DATABASE_URL": f"sqlite:///{tmp_path / 'desk.db'}"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    embedded, served = map(int, out.stdout.split()[-2:])
    assert embedded == 0
    assert served > 10_000  # the imported modules alone are tens of thousands of objects


@pytest.mark.postgres
def test_the_built_in_system_of_record_answers_a_hung_database_with_backend_unavailable(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The built-in system of record's reads run on the driver (no SQLAlchemy between): a database
    that stops answering still gives the operation layer's transient ``BackendUnavailable`` within
    the round-trip bound, not a driver error, and the same backend reads again once it answers."""
    from deskline.agents.builtin.backend import BackendUnavailable
    from deskline.agents.builtin.backend.sql import SqlBackend

    monkeypatch.setenv("DESKLINE_DB_STATEMENT_TIMEOUT_S", "1")  # the client gives up after 2 s
    proxy = PausableProxy(("127.0.0.1", 5432))
    backend = SqlBackend.from_url(_proxied(postgres_url, proxy.port))
    try:
        assert backend.customer("C-1001") is not None
        proxy.pause()
        started = time.monotonic()
        with pytest.raises(BackendUnavailable):
            backend.customer("C-1001")
        assert time.monotonic() - started < 4
        proxy.resume()
        assert backend.customer("C-1001") is not None  # the dropped connection was replaced
    finally:
        proxy.close()
        backend.engine.dispose()
