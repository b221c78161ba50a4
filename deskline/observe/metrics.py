"""Prometheus metrics for the desk, counted from the events a turn appends.

Counting from events (rather than sprinkling counters through the layers) keeps the numbers
consistent with the log: what ``/metrics`` says happened is what the log says happened. Each
process exposes its own registry; a Prometheus server sums the API processes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from deskline.eventlog.events import AgentCompleted, EscalationRequested, ModelCalled, PlanMade, Recorded, ReplySent

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
ESCALATION_REASONS = (
    ("failed bot turns", "failed_turns"),
    ("upset", "negative_sentiment"),
    ("approval limit", "approval"),
    ("no result holds", "grounding"),
    ("routed to a person", "triage"),
    ("model escalates", "model"),
)


def escalation_reason(reason: str) -> str:
    """A label for an escalation the desk decided itself (a rule's escalation has its name)."""
    low = reason.lower()
    return next((label for needle, label in ESCALATION_REASONS if needle in low), "agent_failure")


class DeskMetrics:
    """All of the desk's metrics in one registry (its own, unless one is given)."""

    def __init__(self, registry: Any = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.turns = Counter("deskline_turns", "Turns answered", ["department", "mode", "stage"], registry=r)
        self.turn_latency = Histogram("deskline_turn_latency_seconds", "Time to decide a turn",
                                      buckets=LATENCY_BUCKETS, registry=r)
        self.stage_latency = Histogram("deskline_stage_latency_seconds", "Time in each layer of a turn",
                                       ["stage"], buckets=LATENCY_BUCKETS, registry=r)
        self.model_calls = Counter("deskline_model_calls", "Model requests", ["role", "deployment", "ok"], registry=r)
        self.model_tokens = Counter("deskline_model_tokens", "Model tokens", ["role", "deployment", "direction"],
                                    registry=r)
        self.model_cost = Counter("deskline_model_cost_usd", "Model spend in USD", ["role", "deployment"], registry=r)
        self.fallbacks = Counter("deskline_model_fallbacks", "Model requests made after a fallback", ["role"],
                                 registry=r)
        self.escalations = Counter("deskline_escalations", "Escalations to a person", ["reason"], registry=r)
        self.skills = Counter("deskline_skill_results", "Skill results", ["skill", "status"], registry=r)
        self.append_latency = Histogram("deskline_store_append_seconds", "Event-store append time",
                                        buckets=LATENCY_BUCKETS, registry=r)
        self.conflicts = Counter("deskline_store_conflicts", "Optimistic-append conflicts", registry=r)
        self.queue_length = Gauge("deskline_queue_length", "Escalations waiting for or owned by a person",
                                  registry=r)
        self.sla_breaches = Gauge("deskline_sla_breaches", "Escalations unclaimed past their SLA", registry=r)
        self.quota_refusals = Counter("deskline_quota_refusals", "Requests refused (429) by a quota", ["limit"],
                                      registry=r)

    def appended(self, records: Sequence[Recorded]) -> None:
        stage = ""
        for r in records:
            e = r.event
            if isinstance(e, PlanMade):
                stage = e.plan.stage
            elif isinstance(e, ReplySent):
                self.turns.labels(e.department, e.mode, stage or "none").inc()
                if e.latency_ms:
                    self.turn_latency.observe(e.latency_ms / 1000)
            elif isinstance(e, ModelCalled):
                labels = (e.role, e.deployment or e.model_group)
                self.model_calls.labels(*labels, str(e.ok).lower()).inc()
                self.model_tokens.labels(*labels, "input").inc(e.input_tokens)
                self.model_tokens.labels(*labels, "output").inc(e.output_tokens)
                self.model_cost.labels(*labels).inc(float(e.cost_usd))
                if e.fallbacks:
                    self.fallbacks.labels(e.role).inc()
            elif isinstance(e, EscalationRequested):
                self.escalations.labels(e.rule or escalation_reason(e.reason)).inc()
            elif isinstance(e, AgentCompleted):
                self.skills.labels(e.result.skill, e.result.status).inc()

    def stage(self, name: str, seconds: float) -> None:
        self.stage_latency.labels(name).observe(seconds)

    def store_append(self, seconds: float, conflict: bool) -> None:
        if conflict:
            self.conflicts.inc()
        else:
            self.append_latency.observe(seconds)

    def queue(self, length: int, breaching: int) -> None:
        self.queue_length.set(length)
        self.sla_breaches.set(breaching)

    def scrape(self) -> bytes:
        from prometheus_client import generate_latest

        return bytes(generate_latest(self.registry))
