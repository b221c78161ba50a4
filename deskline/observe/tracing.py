"""Spans for a turn: one per turn, with children for strategy, triage stages, each handoff and
skill, each model call (GenAI semantic conventions where they fit) and the writer.

``span(name, **attributes)`` is what the desk calls. It goes to the current tracer: a no-op by
default, an OpenTelemetry tracer when ``configure_tracing`` (``DESKLINE_OTEL=console|otlp``) or the
host application set one up, or a test's in-memory exporter.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol


class SpanLike(Protocol):
    def set_attribute(self, key: str, value: Any) -> None: ...


class _NullSpan:
    __slots__ = ()

    def set_attribute(self, key: str, value: Any) -> None:
        return None

    def __enter__(self) -> _NullSpan:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


_NULL_SPAN = _NullSpan()


class NullTracer:
    """Records nothing and costs next to nothing."""

    def span(self, name: str, attributes: dict[str, Any]) -> AbstractContextManager[SpanLike]:
        return _NULL_SPAN


class OtelTracer:
    """Spans through an OpenTelemetry tracer (API only; the SDK is the host's or ours)."""

    def __init__(self, tracer: Any) -> None:
        self._tracer = tracer

    @contextmanager
    def _span(self, name: str, attributes: dict[str, Any]) -> Iterator[SpanLike]:
        clean = {k: v for k, v in attributes.items() if v is not None}
        with self._tracer.start_as_current_span(name, attributes=clean) as s:
            yield s

    def span(self, name: str, attributes: dict[str, Any]) -> AbstractContextManager[SpanLike]:
        return self._span(name, attributes)


_current: NullTracer | OtelTracer = NullTracer()


def span(name: str, **attributes: Any) -> AbstractContextManager[SpanLike]:
    """A child of the current span (a root span when there is none)."""
    return _current.span(name, attributes)


def use_tracer(tracer: NullTracer | OtelTracer) -> None:
    global _current
    _current = tracer


def tracing_enabled() -> bool:
    return isinstance(_current, OtelTracer)


def configure_tracing(exporter: str | None = None) -> None:
    """Export spans to the console or an OTLP endpoint (``OTEL_EXPORTER_OTLP_ENDPOINT``).

    With neither asked for, spans go wherever the host's OpenTelemetry set-up sends them, if it
    has one, and nowhere otherwise.
    """
    exporter = exporter if exporter is not None else os.environ.get("DESKLINE_OTEL", "")
    if not exporter:
        return
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    provider = TracerProvider(resource=Resource.create({"service.name": "deskline"}))
    if exporter == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    elif exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    else:
        from deskline.errors import ConfigError

        raise ConfigError(f"DESKLINE_OTEL must be 'console' or 'otlp', not {exporter!r}")
    trace.set_tracer_provider(provider)
    use_tracer(OtelTracer(trace.get_tracer("deskline")))


def trace_ids() -> dict[str, str]:
    """The current trace and span ids, for log lines (empty when not tracing)."""
    if not tracing_enabled():
        return {}
    from opentelemetry import trace

    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return {}
    return {"trace_id": f"{ctx.trace_id:032x}", "span_id": f"{ctx.span_id:016x}"}
