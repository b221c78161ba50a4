"""structlog set-up: readable on a terminal, JSON when asked, personal data masked.

Logs go to stderr so a command's own output (``deskline ask --json``) stays machine-readable.
Conversation and turn ids are bound by the desk; ``mask_pii`` runs on every event dict.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_CARD = re.compile(r"\b(?:\d[ -]?){9,15}(\d{4})\b")  # 13 to 19 digits: every card network
_EMAIL = re.compile(r"\b([\w.+-])[\w.+-]*@([\w-]+(?:\.[\w-]+)+)\b")
_PHONE = re.compile(r"(?<![\w-])\+?\d{1,3}?[ .-]?\(?\d{2,4}\)?[ .-]?\d{3,4}[ .-]?\d{3,4}\b")


def mask(text: str) -> str:
    """Card numbers, emails and phone numbers with all but a hint removed."""
    text = _CARD.sub(lambda m: "**** **** **** " + m.group(1), text)
    text = _EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", text)
    return _PHONE.sub(lambda m: "***-***-" + re.sub(r"\D", "", m.group(0))[-2:], text)


def _mask_value(value: Any) -> Any:
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, dict):
        return {k: _mask_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_mask_value(v) for v in value)
    return value


def mask_pii(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in list(event_dict.items()):
        event_dict[key] = _mask_value(value)
    return event_dict


def add_trace_ids(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """The current trace and span ids, so a log line joins its trace and its events."""
    from deskline.observe.tracing import trace_ids

    event_dict.update(trace_ids())
    return event_dict


def configure(fmt: str = "console", level: str = "warning") -> None:
    """Configure structlog once per process; ``fmt`` is ``console`` or ``json``."""
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            add_trace_ids,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            mask_pii,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


def ensure_configured(fmt: str = "console", level: str = "warning") -> None:
    """Configure structlog unless the application already did (structlog's own default prints
    every level to stdout, which a library must not do to its host)."""
    if not structlog.is_configured():
        configure(fmt, level)
