"""Observability: traces (OpenTelemetry), metrics (Prometheus) and trace ids in the logs.

Nothing here is imported from OpenTelemetry or prometheus-client unless it is configured: the
default tracer is a no-op that costs well under a microsecond a span.
"""

from deskline.observe.tracing import NullTracer, OtelTracer, configure_tracing, span, use_tracer

__all__ = ["NullTracer", "OtelTracer", "configure_tracing", "span", "use_tracer"]
