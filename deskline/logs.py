"""structlog set-up: readable on a terminal, JSON when asked, personal data masked.

Logs go to stderr so a command's own output (``deskline ask --json``) stays machine-readable.
Conversation and turn ids are bound by the desk; ``mask_pii`` runs on every event dict, with the
rules of ``deskline.privacy.mask`` (before the timestamp and trace ids are added, which it would
only slow down on).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from deskline.privacy import mask

__all__ = ["add_trace_ids", "configure", "ensure_configured", "mask", "mask_pii"]


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


class _Stderr:
    """``sys.stderr`` as it is when a line is written, not when logging was configured: a harness
    that swaps it (click's ``CliRunner``, pytest) and closes its own must not break later lines."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


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
            mask_pii,
            add_trace_ids,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(file=_Stderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )


def ensure_configured(fmt: str = "console", level: str = "warning") -> None:
    """Configure structlog unless the application already did (structlog's own default prints
    every level to stdout, which a library must not do to its host)."""
    if not structlog.is_configured():
        configure(fmt, level)
