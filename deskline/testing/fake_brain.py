"""The fake provider's side of a conversation: replies, faults and the default brain.

What ``FakeOpenAI`` answers (``Reply``), how it misbehaves per model (``ModelBehaviour``), what it
records (``RequestRecord``), and ``default_brain``, which answers like a cooperative model: a
tool call built from the tools' JSON schemas, structured output that validates, or text. Kept
apart from the HTTP server in ``deskline.testing.fake_openai``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from http import HTTPStatus
from typing import Any, Literal, get_args

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
    tool_choice: str | None = None  # what the request asked ("auto", "required"...), if it offered tools

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
