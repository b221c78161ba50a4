"""A fake OpenAI-compatible chat-completions server for tests and fault-injection scripts.

Why it exists: the model layer (litellm's Router, pydantic-ai, the openai SDK) talks HTTP to an
OpenAI-compatible endpoint, and the interesting behaviour -- fallbacks, retries, timeouts, bad
tool calls, structured output that does not validate -- only shows when that endpoint misbehaves
on cue. Mocks inside litellm (``mock_response``) skip the HTTP layer and the SDK's error mapping;
this server does not. It is stdlib only (``http.server``), binds 127.0.0.1 on an ephemeral port
and starts in milliseconds, so a test can run one per case::

    with FakeOpenAI(models={"bad-model": ModelBehaviour(always="500")}) as server:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        server.script(Reply.tool_call("refund", {"invoice_id": "INV-1"}))
        ...
        assert server.count("bad-model") == 1

Each answer comes from, in order: an injected fault (per-model ``ModelBehaviour`` first, then the
global ``fault_rate`` drawn from a seeded RNG), the queue of scripted replies, then the brain
(``default_brain`` unless one is passed). A ``slow`` fault delays the normal answer; the other
faults replace it and leave the script queue untouched. The model name is the request's ``model``
field, so a litellm config can point several deployments at one server with different behaviours.
Prices are not this server's business: litellm takes them from its config.

Run it standalone for scripts in another process, which can read what it saw from
``GET /_fake/stats`` (see ``remote_stats``)::

    python -m deskline.testing.fake_openai --port 8999 --fault-rate 0.3 --seed 1
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import threading
import time
import urllib.request
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from types import FrameType, TracebackType
from typing import Any

from deskline.testing.fake_brain import (
    _OWNER,
    FAULT_KINDS,
    Brain,
    FaultKind,
    ModelBehaviour,
    Reply,
    RequestRecord,
    ToolCall,
    _check_kinds,
    _check_rate,
    _error_body,
    _fault_reply,
    _prompt_text,
    _rejection,
    _rough_tokens,
    default_brain,
    schema_example,
    schema_violation,
)

__all__ = [
    "FAULT_KINDS",
    "Brain",
    "FakeOpenAI",
    "FaultKind",
    "ModelBehaviour",
    "Reply",
    "RequestRecord",
    "ToolCall",
    "default_brain",
    "main",
    "remote_reset",
    "remote_stats",
    "schema_example",
    "schema_violation",
]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], fake: FakeOpenAI) -> None:
        self.fake = fake
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse DNS lookup we do not need.
        TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that time out and hang up are expected here; anything else stays visible.
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "deskline-fake-openai/1"
    timeout = 60
    disable_nagle_algorithm = True  # header and body are two writes; no 40 ms delayed-ACK stall

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: tests read ``FakeOpenAI.requests`` instead of an access log."""

    def _path(self) -> str:
        path = self.path.split("?", 1)[0].rstrip("/")
        return path[3:] if path.startswith("/v1/") else path

    def do_GET(self) -> None:
        path = self._path()
        if path == "/models":
            self.send_json(200, self.server.fake.models_payload())
        elif path == "/_fake/stats":
            self.send_json(200, self.server.fake.stats())
        else:
            self.send_json(404, _error_body(404, f"fake-openai: no route GET {self.path}"))

    def do_POST(self) -> None:
        path = self._path()
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if path == "/chat/completions":
            self.server.fake._handle_chat(self, body)
        elif path == "/_fake/reset":
            self.server.fake.reset()
            self.send_json(200, {"reset": True})
        else:
            self.send_json(404, _error_body(404, f"fake-openai: no route POST {self.path}"))

    def send_json(
        self, status: int, payload: Any, headers: Mapping[str, str] | None = None
    ) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (e.g. its timeout fired)


# --------------------------------------------------------------------------------------------
# The server


class FakeOpenAI:
    """An OpenAI-compatible chat-completions server in a background thread.

    Use as a context manager (or ``start()``/``stop()``); ``base_url`` ends in ``/v1`` and is
    what an OpenAI client or a litellm ``api_base`` wants.
    """

    def __init__(
        self,
        *,
        brain: Brain | None = None,
        models: Mapping[str, ModelBehaviour] | None = None,
        fault_rate: float = 0.0,
        fault_kinds: Sequence[FaultKind] = FAULT_KINDS,
        slow_seconds: float = 2.0,
        retry_after: float = 1.0,
        seed: int | None = 0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        _check_rate(fault_rate)
        _check_kinds(fault_kinds)
        if not fault_kinds:
            raise ValueError("fault_kinds must name at least one kind")
        self.brain: Brain = brain or default_brain
        self.fault_rate = fault_rate
        self.fault_kinds: tuple[FaultKind, ...] = tuple(fault_kinds)
        self.slow_seconds = slow_seconds
        self.retry_after = retry_after
        self.seed = seed
        self._host = host
        self._port = port
        self._lock = threading.Lock()
        self._behaviours: dict[str, ModelBehaviour] = dict(models or {})
        self._script: deque[Reply] = deque()
        self._records: dict[int, RequestRecord] = {}
        self._seq = 0
        self._rng = random.Random(seed)
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakeOpenAI:
        """Bind and serve in a daemon thread; returns self."""
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = _Server((self._host, self._port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"fake-openai:{self.port}", daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; requests sleeping in a ``slow`` fault wake up and finish at once."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeOpenAI is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The root URL (``/_fake/stats`` lives here)."""
        return f"http://{self._host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI base URL: ``http://127.0.0.1:PORT/v1``."""
        return f"{self.url}/v1"

    # scripting and behaviour -------------------------------------------------------------

    def script(self, *replies: Reply) -> None:
        """Queue replies, consumed in order by the next clean requests before the brain."""
        with self._lock:
            self._script.extend(replies)

    @property
    def pending_script(self) -> int:
        """How many scripted replies are still queued."""
        with self._lock:
            return len(self._script)

    def set_behaviour(self, model: str, behaviour: ModelBehaviour | None) -> None:
        """Set (or with None, clear) the behaviour for requests naming ``model``."""
        with self._lock:
            if behaviour is None:
                self._behaviours.pop(model, None)
            else:
                self._behaviours[model] = behaviour

    def behaviour(self, model: str) -> ModelBehaviour | None:
        with self._lock:
            return self._behaviours.get(model)

    # counting ----------------------------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        """A snapshot of the chat-completion requests seen since start or ``reset()``."""
        with self._lock:
            return list(self._records.values())

    def count(self, model: str | None = None) -> int:
        """How many chat-completion requests arrived (for ``model``, or all)."""
        with self._lock:
            return sum(1 for r in self._records.values() if model is None or r.model == model)

    def reset(self) -> None:
        """Forget the records and the script queue, and re-seed the fault RNG."""
        with self._lock:
            self._records.clear()
            self._script.clear()
            self._rng = random.Random(self.seed)

    def stats(self) -> dict[str, Any]:
        """The counts as plain JSON-able data (also served at ``GET /_fake/stats``)."""
        records = self.requests
        by_model: dict[str, dict[str, Any]] = {}
        for record in records:
            entry = by_model.setdefault(record.model, {"total": 0, "faults": {}})
            entry["total"] += 1
            if record.fault is not None:
                entry["faults"][record.fault] = entry["faults"].get(record.fault, 0) + 1
        return {
            "total": len(records),
            "in_flight": sum(1 for r in records if r.status is None),
            "by_model": by_model,
            "by_fault": dict(Counter(r.fault for r in records if r.fault is not None)),
            "by_status": {str(k): v for k, v in Counter(
                r.status for r in records if r.status is not None).items()},
            "requests": [record.as_dict() for record in records],
        }

    def models_payload(self) -> dict[str, Any]:
        with self._lock:
            names = set(self._behaviours) | {r.model for r in self._records.values()}
        names.add("fake-model")
        return {"object": "list", "data": [
            {"id": name, "object": "model", "created": 0, "owned_by": _OWNER}
            for name in sorted(names)]}

    # handling ----------------------------------------------------------------------------

    def _pick_fault(self, behaviour: ModelBehaviour | None) -> FaultKind | None:
        """Called under the lock: the fault for this request, drawing from the seeded RNG."""
        if behaviour is not None and behaviour.always is not None:
            return behaviour.always
        rate = self.fault_rate
        kinds = self.fault_kinds
        if behaviour is not None:
            rate = behaviour.fault_rate if behaviour.fault_rate is not None else rate
            kinds = behaviour.fault_kinds or kinds
        if rate <= 0.0:
            return None
        if self._rng.random() < rate:
            return self._rng.choice(kinds)
        return None

    def _handle_chat(self, handler: _Handler, body: bytes) -> None:
        started = time.perf_counter()
        request: Any
        rejection: str | None
        try:
            request = json.loads(body or b"{}")
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            request, rejection = {}, f"fake-openai: body is not JSON: {exc}"
        else:
            rejection = _rejection(request)
        if not isinstance(request, dict):
            request = {}
        model = str(request.get("model") or "")

        with self._lock:
            self._seq += 1
            seq = self._seq
            behaviour = self._behaviours.get(model)
            fault = None if rejection else self._pick_fault(behaviour)
            queued: Reply | None = None
            if not rejection and fault in (None, "slow") and self._script:
                queued = self._script.popleft()
            record = RequestRecord(
                seq=seq, model=model, had_tools=bool(request.get("tools")),
                had_response_format=request.get("response_format") is not None,
                fault=fault, scripted=queued is not None, status=None, latency=None,
                tool_choice=str(request["tool_choice"]) if isinstance(request.get("tool_choice"), str) else None)
            self._records[seq] = record

        def finish(status: int, payload: dict[str, Any], headers: Mapping[str, str]) -> None:
            handler.send_json(status, payload, headers)
            with self._lock:
                if seq in self._records:  # a reset() while in flight drops the record
                    self._records[seq] = replace(
                        record, status=status, latency=time.perf_counter() - started)

        if rejection:
            finish(400, _error_body(400, rejection), {})
            return
        if fault not in (None, "slow"):
            reply = _fault_reply(fault, request, self.retry_after)
        elif queued is not None:
            reply = queued
        else:
            brain = behaviour.brain if behaviour and behaviour.brain else self.brain
            try:
                reply = brain(request)
            except Exception as exc:
                # Answer so the client does not hang, then re-raise: handle_error prints it.
                finish(500, _error_body(500, f"fake-openai: the brain raised {exc!r}"), {})
                raise
        delay = reply.delay
        if fault == "slow":
            slow = behaviour.slow_seconds if behaviour is not None else None
            delay += slow if slow is not None else self.slow_seconds
        if delay > 0:
            self._stopping.wait(delay)
        finish(*self._render(reply, request, model, seq))

    def _render(
        self, reply: Reply, request: dict[str, Any], model: str, seq: int
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        headers = {"x-request-id": f"req_fake_{seq}"}
        if reply.status != 200:
            if reply.status == 429:
                after = reply.retry_after if reply.retry_after is not None else self.retry_after
                headers["retry-after"] = f"{after:g}"
            return reply.status, _error_body(reply.status, reply.error_message), headers
        message: dict[str, Any] = {"role": "assistant", "content": reply.content}
        completion_text = reply.content or ""
        if reply.tool_calls:
            message["tool_calls"] = [
                {"id": call.id or f"call_fake_{seq}_{index}", "type": "function",
                 "function": {"name": call.name, "arguments": call.arguments}}
                for index, call in enumerate(reply.tool_calls)]
            completion_text += " " + " ".join(
                f"{call.name} {call.arguments}" for call in reply.tool_calls)
        prompt_tokens = _rough_tokens(_prompt_text(request))
        completion_tokens = _rough_tokens(completion_text)
        payload = {
            "id": f"chatcmpl-fake-{seq}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": "fp_deskline_fake",
            "choices": [{
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": "tool_calls" if reply.tool_calls else "stop",
            }],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }
        return 200, payload, headers


# --------------------------------------------------------------------------------------------
# Talking to a server in another process


def _root(base_url: str) -> str:
    root = base_url.rstrip("/")
    return root[:-3] if root.endswith("/v1") else root


def remote_stats(base_url: str, timeout: float = 5.0) -> dict[str, Any]:
    """``GET /_fake/stats`` of a server started elsewhere (base URL with or without ``/v1``)."""
    with urllib.request.urlopen(f"{_root(base_url)}/_fake/stats", timeout=timeout) as response:
        data: dict[str, Any] = json.load(response)
    return data


def remote_reset(base_url: str, timeout: float = 5.0) -> None:
    """``POST /_fake/reset`` on a server started elsewhere."""
    request = urllib.request.Request(f"{_root(base_url)}/_fake/reset", data=b"", method="POST")
    with urllib.request.urlopen(request, timeout=timeout):
        pass


# --------------------------------------------------------------------------------------------
# CLI


def _model_rule(text: str) -> tuple[str, FaultKind]:
    name, sep, kind = text.rpartition("=")
    if not sep or not name or kind not in FAULT_KINDS:
        raise argparse.ArgumentTypeError(
            f"expected MODEL=KIND with KIND one of {', '.join(FAULT_KINDS)}, got {text!r}")
    return name, kind


def _kinds(text: str) -> tuple[FaultKind, ...]:
    kinds = tuple(kind.strip() for kind in text.split(",") if kind.strip())
    try:
        _check_kinds(kinds)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return kinds  # type: ignore[return-value]  # checked against FAULT_KINDS above


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGINT/SIGTERM, after printing the base URL on one line."""
    parser = argparse.ArgumentParser(
        prog="python -m deskline.testing.fake_openai",
        description="Fake OpenAI-compatible chat-completions server with fault injection.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--fault-rate", type=float, default=0.0)
    parser.add_argument("--fault-kinds", type=_kinds, default=FAULT_KINDS,
                        help=f"comma-separated, from {','.join(FAULT_KINDS)}")
    parser.add_argument("--slow-seconds", type=float, default=2.0)
    parser.add_argument("--retry-after", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model-fault", type=_model_rule, action="append", default=[],
                        metavar="MODEL=KIND", help="always inject KIND for MODEL (repeatable)")
    args = parser.parse_args(argv)

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    models = {name: ModelBehaviour(always=kind) for name, kind in args.model_fault}
    with FakeOpenAI(models=models, fault_rate=args.fault_rate, fault_kinds=args.fault_kinds,
                    slow_seconds=args.slow_seconds, retry_after=args.retry_after,
                    seed=args.seed, host=args.host, port=args.port) as server:
        print(server.base_url, flush=True)
        while not stop.wait(0.2):
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
