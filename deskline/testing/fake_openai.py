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
import math
import random
import re
import signal
import sys
import threading
import time
import urllib.request
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from types import FrameType, TracebackType
from typing import Any, Literal, get_args

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

FaultKind = Literal["500", "429", "slow", "malformed_tool_call", "invalid_output"]
FAULT_KINDS: tuple[FaultKind, ...] = get_args(FaultKind)

_OWNER = "deskline-fake"
_ID_RE = re.compile(r"\b[A-Z]{2,4}-\d+\b")
_ID_PREFIXES = {"invoice": "INV", "payment": "PAY", "charge": "CH"}
_STOPWORDS = frozenset((
    "the", "and", "for", "with", "this", "that", "from", "your", "you", "are", "was", "were",
    "has", "have", "can", "could", "would", "should", "please", "into", "about", "what", "when",
    "where", "which", "who", "how", "why", "not", "but", "all", "any", "our", "their", "them",
))
_QUOTE_CHARS = 60
_MAX_SCHEMA_DEPTH = 12


# --------------------------------------------------------------------------------------------
# Replies


@dataclass(frozen=True)
class ToolCall:
    """One tool call in a reply; ``arguments`` is the raw JSON string sent on the wire."""

    name: str
    arguments: str
    id: str | None = None


@dataclass(frozen=True)
class Reply:
    """What the server answers to one chat-completion request.

    Build one with the class methods; ``status`` other than 200 makes it an error reply whose
    body is the OpenAI error JSON. ``delay`` seconds are slept before answering.
    """

    content: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    status: int = 200
    error_message: str | None = None
    retry_after: float | None = None
    delay: float = 0.0

    @classmethod
    def text(cls, content: str) -> Reply:
        """A plain assistant message."""
        return cls(content=content)

    @classmethod
    def tool_call(
        cls, name: str, arguments: Mapping[str, Any] | str, *, call_id: str | None = None
    ) -> Reply:
        """One tool call; a ``str`` for ``arguments`` is sent verbatim (valid JSON or not)."""
        raw = arguments if isinstance(arguments, str) else json.dumps(dict(arguments))
        return cls(tool_calls=(ToolCall(name=name, arguments=raw, id=call_id),))

    @classmethod
    def tool_calls_of(cls, *calls: ToolCall) -> Reply:
        """Several tool calls in one assistant message."""
        return cls(tool_calls=tuple(calls))

    @classmethod
    def json(cls, value: Any) -> Reply:
        """Content that is ``value`` dumped as JSON (a structured-output answer)."""
        return cls(content=json.dumps(value))

    @classmethod
    def error(
        cls, status: int, message: str | None = None, *, retry_after: float | None = None
    ) -> Reply:
        """An HTTP error with an OpenAI error body; 429 gets a ``retry-after`` header."""
        if status < 400:
            raise ValueError(f"an error reply needs a status >= 400, got {status}")
        return cls(status=status, error_message=message, retry_after=retry_after)

    def delayed(self, seconds: float) -> Reply:
        """The same reply, sent after ``seconds``."""
        return replace(self, delay=seconds)


Brain = Callable[[dict[str, Any]], Reply]


# --------------------------------------------------------------------------------------------
# Behaviour and records


@dataclass(frozen=True)
class ModelBehaviour:
    """How the server treats requests for one model name.

    ``always`` injects that fault on every request. Otherwise ``fault_rate``, ``fault_kinds``
    and ``slow_seconds`` override the server-wide values when set, and ``brain`` replaces the
    server's brain for this model.
    """

    always: FaultKind | None = None
    fault_rate: float | None = None
    fault_kinds: tuple[FaultKind, ...] | None = None
    slow_seconds: float | None = None
    brain: Brain | None = None

    def __post_init__(self) -> None:
        if self.always is not None:
            _check_kinds((self.always,))
        if self.fault_kinds is not None:
            _check_kinds(self.fault_kinds)
        if self.fault_rate is not None:
            _check_rate(self.fault_rate)


@dataclass(frozen=True)
class RequestRecord:
    """One chat-completion request the server saw; ``status`` is None while it is in flight."""

    seq: int
    model: str
    had_tools: bool
    had_response_format: bool
    fault: FaultKind | None
    scripted: bool
    status: int | None
    latency: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_kinds(kinds: Iterable[str]) -> None:
    unknown = [kind for kind in kinds if kind not in FAULT_KINDS]
    if unknown:
        raise ValueError(f"unknown fault kind(s) {unknown}; known: {list(FAULT_KINDS)}")


def _check_rate(rate: float) -> None:
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"fault_rate must be within [0, 1], got {rate}")


# --------------------------------------------------------------------------------------------
# Reading a request


def _text_of(content: Any) -> str:
    """The text of a message's ``content``: a string or a list of typed parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [part.get("text", "") for part in content if isinstance(part, dict)]
        return " ".join(str(part) for part in parts if part)
    return ""


def _messages(request: Mapping[str, Any]) -> list[dict[str, Any]]:
    messages = request.get("messages")
    if not isinstance(messages, list):
        return []
    return [message for message in messages if isinstance(message, dict)]


def _last_user_text(request: Mapping[str, Any]) -> str:
    for message in reversed(_messages(request)):
        if message.get("role") == "user":
            return _text_of(message.get("content"))
    return ""


def _function_tools(request: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The ``function`` objects of the request's tools (name, description, parameters)."""
    tools = request.get("tools")
    if not isinstance(tools, list):
        return []
    found = []
    for tool in tools:
        if isinstance(tool, dict) and isinstance(tool.get("function"), dict):
            function = tool["function"]
            if isinstance(function.get("name"), str):
                found.append(function)
    return found


def _response_schema(request: Mapping[str, Any]) -> dict[str, Any] | None:
    """The JSON schema of a ``json_schema`` response_format, else None."""
    response_format = request.get("response_format")
    if not isinstance(response_format, dict) or response_format.get("type") != "json_schema":
        return None
    spec = response_format.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    return schema if isinstance(schema, dict) else {}


def _wants_json_object(request: Mapping[str, Any]) -> bool:
    response_format = request.get("response_format")
    return isinstance(response_format, dict) and response_format.get("type") == "json_object"


def _rough_tokens(text: str) -> int:
    words = len(text.split())
    return math.ceil(words * 1.3) if words else 0


def _prompt_text(request: Mapping[str, Any]) -> str:
    parts = [_text_of(message.get("content")) for message in _messages(request)]
    for message in _messages(request):
        for call in message.get("tool_calls") or []:
            if isinstance(call, dict) and isinstance(call.get("function"), dict):
                parts.append(str(call["function"].get("arguments", "")))
    for function in _function_tools(request):
        parts.append(f"{function.get('name', '')} {function.get('description', '')}")
        parts.append(json.dumps(function.get("parameters", {})))
    return " ".join(parts)


# --------------------------------------------------------------------------------------------
# The default brain


def _words(text: str) -> set[str]:
    """Lower-case keywords of ``text``, split on non-letters and camelCase, plurals trimmed."""
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", text)
    words = set()
    for word in re.split(r"[^a-zA-Z0-9]+", spaced.lower()):
        if len(word) < 3 or word in _STOPWORDS:
            continue
        if len(word) > 4 and word.endswith("s"):
            word = word[:-1]
        words.add(word)
    return words


def _best_tool(tools: Sequence[dict[str, Any]], user_text: str) -> dict[str, Any]:
    """The tool whose name (counted twice) and description share most words with the text."""
    wanted = _words(user_text)

    def score(tool: dict[str, Any]) -> int:
        name_words = _words(str(tool.get("name", "")))
        description_words = _words(str(tool.get("description") or ""))
        return 2 * len(wanted & name_words) + len(wanted & description_words)

    return max(tools, key=score)  # max keeps the first of equal scores


class _SchemaFiller:
    """Builds a minimal value that validates against a JSON schema, ids taken from user text."""

    def __init__(self, root: Mapping[str, Any], user_text: str) -> None:
        self.root = root
        self.ids: list[str] = _ID_RE.findall(user_text)

    def resolve(self, schema: Any) -> dict[str, Any]:
        for _ in range(_MAX_SCHEMA_DEPTH):
            if not isinstance(schema, dict):
                return {}
            ref = schema.get("$ref")
            if not isinstance(ref, str) or not ref.startswith("#/"):
                return schema
            target: Any = self.root
            for key in ref[2:].split("/"):
                target = target.get(key, {}) if isinstance(target, dict) else {}
            schema = target
        return {}

    def value(self, schema: Any, name: str = "", sole_string: bool = False, depth: int = 0) -> Any:
        schema = self.resolve(schema)
        if depth > _MAX_SCHEMA_DEPTH:
            return None
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return schema["enum"][0]
        parts = schema.get("allOf")
        if isinstance(parts, list) and parts:
            merged = {key: val for key, val in schema.items() if key != "allOf"}
            for part in (self.resolve(part) for part in parts):
                merged.setdefault("properties", {}).update(part.get("properties") or {})
                merged["required"] = [*merged.get("required", []), *part.get("required", [])]
                merged.update({k: v for k, v in part.items()
                               if k not in ("properties", "required")})
            return self.value(merged, name, sole_string, depth + 1)
        for combinator in ("anyOf", "oneOf"):
            options = schema.get(combinator)
            if isinstance(options, list) and options:
                non_null = [o for o in options if self.resolve(o).get("type") != "null"]
                return self.value((non_null or options)[0], name, sole_string, depth + 1)
        kind = schema.get("type")
        if isinstance(kind, list):
            kinds = [k for k in kind if k != "null"]
            kind = kinds[0] if kinds else "null"
        if kind == "object" or (kind is None and "properties" in schema):
            return self.object(schema, depth)
        if kind == "array":
            return self.array(schema, name, depth)
        if kind in ("integer", "number"):
            return self.number(schema, kind)
        if kind == "boolean":
            return False
        if kind == "null":
            return None
        return self.string(schema, name, sole_string)

    def object(self, schema: dict[str, Any], depth: int) -> dict[str, Any]:
        properties = schema.get("properties")
        properties = properties if isinstance(properties, dict) else {}
        required = [key for key in schema.get("required") or [] if isinstance(key, str)]
        strings = [key for key in required if self._is_string(properties.get(key, {}))]
        return {
            key: self.value(properties.get(key, {}), key, strings == [key], depth + 1)
            for key in required
        }

    def array(self, schema: dict[str, Any], name: str, depth: int) -> list[Any]:
        count = int(schema.get("minItems", 1))
        if "maxItems" in schema:
            count = min(count, int(schema["maxItems"]))
        items = schema.get("items", {})
        first = self.value(items, name, False, depth + 1)
        values = [first]
        for index in range(1, count):
            values.append(f"{first}-{index}" if isinstance(first, str) else first)
        return values[:count]

    @staticmethod
    def number(schema: dict[str, Any], kind: str) -> int | float:
        value: float = 0
        if isinstance(schema.get("minimum"), int | float):
            value = max(value, schema["minimum"])
        if isinstance(schema.get("exclusiveMinimum"), int | float):
            value = max(value, schema["exclusiveMinimum"] + 1)
        if isinstance(schema.get("maximum"), int | float):
            value = min(value, schema["maximum"])
        return math.ceil(value) if kind == "integer" else float(value)

    def string(self, schema: dict[str, Any], name: str, sole_string: bool) -> str:
        pattern = schema.get("pattern")
        candidates = self.ids
        if isinstance(pattern, str):
            candidates = [found for found in self.ids if re.search(pattern, found)]
        lowered = name.lower()
        for word, prefix in _ID_PREFIXES.items():
            if word in lowered:
                for found in candidates:
                    if found.startswith(prefix + "-"):
                        return found
        id_like = bool(re.search(r"(^|_)ids?$", lowered) or re.search(r"[a-z]Ids?$", name))
        if candidates and (id_like or sole_string or isinstance(pattern, str)):
            return str(candidates[0])
        formats = {"date": "2026-01-01", "date-time": "2026-01-01T00:00:00Z",
                   "email": "fake@example.com", "uri": "https://example.com/fake"}
        if schema.get("format") in formats:
            return formats[str(schema["format"])]
        placeholder = f"fake-{name or 'value'}"
        min_length = schema.get("minLength")
        if isinstance(min_length, int) and len(placeholder) < min_length:
            placeholder = placeholder.ljust(min_length, "x")
        max_length = schema.get("maxLength")
        if isinstance(max_length, int):
            placeholder = placeholder[:max_length]
        return placeholder

    def _is_string(self, schema: Any) -> bool:
        resolved = self.resolve(schema)
        kind = resolved.get("type")
        return kind == "string" or (isinstance(kind, list) and "string" in kind)


def schema_example(schema: Mapping[str, Any], user_text: str = "") -> Any:
    """A minimal value that validates against ``schema``, with ids lifted from ``user_text``."""
    return _SchemaFiller(schema, user_text).value(dict(schema))


def schema_violation(schema: Mapping[str, Any]) -> Any:
    """A JSON value that does not validate against ``schema`` (best effort for odd schemas)."""
    resolved = _SchemaFiller(schema, "").resolve(dict(schema))
    required = resolved.get("required")
    if resolved.get("type") == "object" or "properties" in resolved:
        if isinstance(required, list) and required:
            return {"fake_unexpected_field": "invalid output"}  # every required key missing
        return "invalid output: not an object"
    if resolved.get("type") == "string" or "enum" in resolved or "const" in resolved:
        return {"invalid": "output"}
    return "invalid output"


def _quote(user_text: str) -> str:
    return user_text[:_QUOTE_CHARS]


def _tool_reply(tool: Mapping[str, Any], user_text: str) -> Reply:
    parameters = tool.get("parameters")
    arguments = schema_example(parameters if isinstance(parameters, dict) else {}, user_text)
    if not isinstance(arguments, dict):
        arguments = {}
    return Reply.tool_call(str(tool["name"]), arguments)


def default_brain(request: dict[str, Any]) -> Reply:
    """Answer like a compliant but simple model.

    With tools (and ``tool_choice`` not "none"), call the named tool or the one whose name and
    description best overlap the last user message, arguments built from its JSON schema (ids
    such as ``INV-12``, ``PAY-3``, ``CH-7`` lifted from the text, else placeholders). After a
    tool result it calls a ``final_result*`` output tool if there is one (pydantic-ai's
    structured output), else answers. With a ``json_schema`` response_format, content is a
    minimal JSON value that validates; otherwise a short text quoting the last user message.
    """
    tools = _function_tools(request)
    user_text = _last_user_text(request)
    tool_choice = request.get("tool_choice")
    messages = _messages(request)
    after_tool = bool(messages) and messages[-1].get("role") == "tool"

    if isinstance(tool_choice, dict) and isinstance(tool_choice.get("function"), dict):
        forced = tool_choice["function"].get("name")
        for tool in tools:
            if tool["name"] == forced:
                return _tool_reply(tool, user_text)
    if tools and tool_choice != "none":
        if not after_tool:
            return _tool_reply(_best_tool(tools, user_text), user_text)
        outputs = [tool for tool in tools if str(tool["name"]).startswith("final_result")]
        if outputs:
            return _tool_reply(outputs[0], user_text)
        if tool_choice == "required":
            return _tool_reply(_best_tool(tools, user_text), user_text)

    schema = _response_schema(request)
    if schema is not None:
        return Reply.json(schema_example(schema, user_text))
    if _wants_json_object(request):
        return Reply.json({"reply": _quote(user_text)})
    return Reply.text(f'Fake reply to: "{_quote(user_text)}"')


def _fault_reply(kind: FaultKind, request: dict[str, Any], retry_after: float) -> Reply:
    """The reply that stands for an injected fault (``slow`` is handled by the caller)."""
    if kind == "500":
        return Reply.error(500, "fake-openai: injected internal server error")
    if kind == "429":
        return Reply.error(429, "fake-openai: injected rate limit", retry_after=retry_after)
    tools = _function_tools(request)
    user_text = _last_user_text(request)
    if kind == "malformed_tool_call":
        good = _tool_reply(_best_tool(tools, user_text), user_text) if tools else None
        call = good.tool_calls[0] if good else ToolCall(name="fake_tool", arguments="{}")
        return Reply.tool_call(call.name, call.arguments[:-1])  # no closing brace: not JSON
    schema = _response_schema(request)
    if schema is not None:
        return Reply.json(schema_violation(schema))
    return Reply.tool_call("fake_tool_that_does_not_exist", {})


# --------------------------------------------------------------------------------------------
# HTTP


def _error_body(status: int, message: str | None) -> dict[str, Any]:
    kinds = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
             429: "requests", 500: "server_error", 503: "server_error"}
    codes = {429: "rate_limit_exceeded", 500: "internal_error"}
    try:
        default = HTTPStatus(status).phrase
    except ValueError:
        default = "error"
    return {"error": {"message": message or f"fake-openai: {default}",
                      "type": kinds.get(status, "server_error" if status >= 500 else
                                        "invalid_request_error"),
                      "param": None, "code": codes.get(status)}}


def _rejection(request: Any) -> str | None:
    """Why a chat-completion body is refused with a 400, or None when it is served."""
    if not isinstance(request, dict):
        return "fake-openai: body must be a JSON object"
    if request.get("stream"):
        return "fake-openai: stream=true is not supported; send a non-streaming request"
    if not request.get("model"):
        return "fake-openai: 'model' is required"
    if not isinstance(request.get("messages"), list):
        return "fake-openai: 'messages' must be a list"
    return None


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
                fault=fault, scripted=queued is not None, status=None, latency=None)
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
