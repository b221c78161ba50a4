"""Runs a query dataset through a desk and scores every stage, with pydantic-evals as the record.

Each case runs on a fresh conversation of one in-memory desk per run (its own event store,
backend and route cache), turn after turn; what the desk did is read back from the events it
appended. The result is a pydantic-evals ``EvaluationReport``: the case outputs, one
``DeskChecks`` evaluator's assertions per case and the report evaluators' analyses (routing
confusion matrix, headline scores). Two engines build the same report:

* ``direct`` (the embedded default): a tight loop over the cases, then the same evaluators
  called on each case. ``Dataset.evaluate`` costs about 0.25 ms a case in spans and task groups,
  a quarter of what the desk itself takes, which would put 1,000 queries a second out of reach.
* ``pydantic-evals`` (the default when a models file is configured): ``Dataset.evaluate`` with
  up to ``concurrency`` cases at once, where model latency, not the harness, is the cost.
"""

from __future__ import annotations

import gc
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from pydantic_evals.evaluators import EvaluationResult, Evaluator, EvaluatorContext
from pydantic_evals.evaluators.report_evaluator import ReportEvaluator, ReportEvaluatorContext
from pydantic_evals.otel import SpanTreeRecordingError
from pydantic_evals.reporting import EvaluationReport, ReportCase
from pydantic_evals.reporting.analyses import ConfusionMatrix, ReportAnalysis, ScalarResult

from deskline.evals.dataset import Dialogue, EvalDataset, Expectation, entity_values
from deskline.evals.metrics import ABSTAIN, ERROR, Confusion, ModelCall, Scored, routing, summarise
from deskline.eventlog.events import EscalationRequested, HandoffSent, ModelCalled, PlanMade, ReplySent, TurnHeld
from deskline.handoffs.payload import RESERVED_DEPARTMENTS
from deskline.hierarchy.desk import SupportDesk
from deskline.i18n.detect import detect

Engine = Literal["auto", "direct", "pydantic-evals"]


@dataclass(frozen=True, slots=True)
class Observed:
    """What the desk did with one customer turn, read from its result and its events."""

    department: str
    mode: str
    stage: str
    intent: str = ""
    confidence: float = 0.0
    escalated: bool = False
    abstained: bool = False
    held: bool = False
    outcome: str = ""
    grounded: bool | None = None
    reply: str | None = None
    steps: tuple[str, ...] = ()  # the plan's skills, in plan order
    handed_off: tuple[tuple[str, str], ...] = ()  # (entity, value) carried by the handoffs
    escalation_summary: str = ""
    llm_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    error: str | None = None
    model_calls: tuple[ModelCall, ...] = ()  # each call the turn made: role, outcome, reason
    language: str | None = None  # the language the desk answered in
    reply_language: str | None = None  # the language the reply is written in (None: too short to tell)

    @property
    def label(self) -> str:
        """The routing decision as one label: a department, ``abstain`` or ``error``."""
        if self.error is not None:
            return ERROR
        if self.abstained:
            return ABSTAIN
        return "human" if self.held else self.department


async def run_turn(desk: SupportDesk, conversation_id: str, text: str) -> Observed:
    """One customer message through the desk; a turn that raises is recorded, not re-raised."""
    started = time.perf_counter()
    try:
        result = await desk.handle(conversation_id, text)
    except Exception as exc:  # an eval reports every failing turn and goes on to the next
        error = f"{type(exc).__name__}: {exc}"
        return Observed(department="other", mode="", stage="", latency_ms=_ms(started), error=error)
    latency = _ms(started)
    steps: tuple[str, ...] = ()
    handed: dict[tuple[str, str], None] = {}
    said: list[tuple[str, str]] = []
    summary, grounded, outcome, held = "", None, "", False
    calls = tokens_in = tokens_out = 0
    cost = 0.0
    made: list[ModelCall] = []
    for record in desk.store.load(conversation_id, after=result.message_seq):
        e = record.event
        if isinstance(e, PlanMade):
            steps = tuple(s.skill for s in e.plan.steps)
            said = _entity_pairs(e.entities)
        elif isinstance(e, HandoffSent):
            handed[("customer_id", e.handoff.case.customer_id)] = None
            handed.update(dict.fromkeys(_entity_pairs(e.handoff.case.entities)))
        elif isinstance(e, ModelCalled):
            calls, cost = calls + 1, cost + float(e.cost_usd)
            tokens_in, tokens_out = tokens_in + e.input_tokens, tokens_out + e.output_tokens
            made.append(ModelCall.of(e.role, e.ok, e.error, e.fallbacks))
        elif isinstance(e, EscalationRequested):
            summary = e.summary
        elif isinstance(e, ReplySent):
            grounded, outcome = e.grounded, e.outcome
            planner = [i for i, c in enumerate(made) if c.role == "planner" and c.ok]
            if e.refused and planner:  # the planner's question was not sent: its output was rejected
                made[planner[-1]] = ModelCall.of("planner", False, f"invalid output: question: {e.refused}")
        elif isinstance(e, TurnHeld):
            held, outcome = True, "held"
    if summary:  # a warm transfer carries what the customer named, in its summary
        handed.update(dict.fromkeys(said))
    return Observed(
        department=result.department, mode=result.mode, stage=result.stage, intent=result.intent,
        confidence=result.confidence, escalated=result.escalated or held, held=held,
        abstained=result.mode == "clarify" and result.stage == "fallback", outcome=outcome,
        grounded=grounded, reply=result.reply, steps=steps, handed_off=tuple(handed),
        escalation_summary=summary, llm_calls=calls, input_tokens=tokens_in,
        output_tokens=tokens_out, cost_usd=cost, latency_ms=latency, model_calls=tuple(made),
        language=result.language,
        reply_language=detect(result.reply, tuple(desk.definition.languages)).language if result.reply else None)


def _entity_pairs(entities: Any) -> list[tuple[str, str]]:
    return [(n, v) for n in entities.values for v in entity_values(entities, n)]


async def run_dialogue(desk: SupportDesk, conversation_id: str,
                       dialogue: Dialogue) -> tuple[Observed, ...]:
    """A case's turns, in order, on one conversation."""
    return tuple([await run_turn(desk, conversation_id, text) for text in dialogue.texts])


def missing_entities(expect: Expectation, seen: Observed) -> tuple[str, ...]:
    """The required entities the turn's handoffs did not carry (by name, or name and value)."""
    missing = []
    for name, wanted in expect.entities:
        values = [v for n, v in seen.handed_off if n == name]
        if wanted is None:
            ok = bool(values)
        else:
            summary = seen.escalation_summary.lower()
            ok = any(_same_value(v, wanted) for v in values) or wanted.lower() in summary
        if not ok:
            missing.append(name if wanted is None else f"{name}={wanted}")
    return tuple(missing)


def _same_value(have: str, wanted: str) -> bool:
    squash = str.maketrans("", "", " ,$€£")
    return have.upper().translate(squash) == wanted.upper().translate(squash)


def missing_facts(expect: Expectation, seen: Observed) -> tuple[str, ...]:
    """The expected facts the reply does not contain (case-insensitive)."""
    reply = (seen.reply or "").lower()
    return tuple(f for f in expect.facts if f.lower() not in reply)


@dataclass(repr=False)
class DeskChecks(Evaluator[Dialogue, Any, dict[str, Any]]):
    """Per-case assertions: every labelled turn routed, escalated, planned, handed off and
    answered as the dataset expects (a check with nothing to check is left out)."""

    def evaluate(self, ctx: EvaluatorContext[Dialogue, Any, dict[str, Any]]) -> dict[str, bool]:
        checks: dict[str, bool] = {}
        for expect, seen in zip(ctx.expected_output or (), ctx.output, strict=False):
            for name, ok in turn_checks(expect, seen).items():
                checks[name] = checks.get(name, True) and ok
        return checks


def turn_checks(expect: Expectation, seen: Observed) -> dict[str, bool]:
    """The checks that apply to one turn, and whether each passed."""
    out: dict[str, bool] = {}
    if expect.department is not None:
        out["routed"] = seen.label == expect.department
    if expect.escalate is not None:
        out["escalation"] = seen.escalated == expect.escalate
    if expect.mode is not None:
        out["mode"] = seen.mode == expect.mode
    if expect.intent is not None:
        out["intent"] = seen.intent == expect.intent
    if expect.entities:
        out["entities"] = not missing_entities(expect, seen)
    if expect.facts:
        out["reply_facts"] = not missing_facts(expect, seen)
    if seen.grounded is not None:
        out["grounded"] = seen.grounded
    return out


@dataclass(repr=False)
class RoutingAnalyses(ReportEvaluator[Dialogue, Any, dict[str, Any]]):
    """The routing confusion matrix and headline scores of the whole run."""

    def evaluate(self, ctx: ReportEvaluatorContext[Dialogue, Any, dict[str, Any]]) -> list[Any]:
        return routing_analyses(scored_rows(ctx.report))


def labels_of(rows: Sequence[Scored], departments: Sequence[str] = ()) -> list[str]:
    """The department labels of a run: the desk's, then any other the rows name, ``human`` and
    ``other`` last."""
    named = [d for r in rows for d in (r.expected, r.predicted) if d is not None and d not in ("abstain", "error")]
    labels = list(dict.fromkeys([*departments, *sorted(set(named))]))
    return [*(d for d in labels if d not in RESERVED_DEPARTMENTS), *(d for d in RESERVED_DEPARTMENTS if d in labels)]


def routing_analyses(rows: Sequence[Scored], departments: Sequence[str] = ()) -> list[ReportAnalysis]:
    """The pydantic-evals analyses of the routing: its confusion matrix, accuracy and macro-F1."""
    route = routing(rows, labels_of(rows, departments))
    matrix = route["confusion"]
    assert isinstance(matrix, Confusion)
    # pydantic-evals draws one label set on both axes: abstain/error rows are all zero.
    by_row = dict(zip(matrix.rows, matrix.matrix, strict=True))
    square = [list(by_row.get(label, (0,) * len(matrix.columns))) for label in matrix.columns]
    title = "Routing (rows expected, columns predicted)"
    analyses: list[ReportAnalysis] = [
        ConfusionMatrix(title=title, class_labels=list(matrix.columns), matrix=square)]
    for key in ("accuracy", "macro_f1"):
        if isinstance(value := route[key], float | int):
            analyses.append(ScalarResult(title=key, value=value))
    return analyses


def case_metrics(outputs: Sequence[Observed]) -> dict[str, float | int]:
    return {"llm_calls": sum(o.llm_calls for o in outputs),
            "cost_usd": sum(o.cost_usd for o in outputs),
            "latency_ms": sum(o.latency_ms for o in outputs),
            "tokens": sum(o.input_tokens + o.output_tokens for o in outputs)}


def scored_rows(report: EvaluationReport[Dialogue, Any, dict[str, Any]]) -> list[Scored]:
    """Every turn of the report as a ``Scored`` row: expectation joined with observation."""
    rows: list[Scored] = []
    for case in report.cases:
        meta = case.metadata or {}
        trained, ambiguous = meta.get("trained_on", ()), meta.get("ambiguous", ())
        extra = meta.get("extra", ())
        pairs = zip(case.expected_output or (), case.output, strict=False)
        for i, (expect, seen) in enumerate(pairs):
            rows.append(Scored(
                case=case.name, turn=i + 1, text=case.inputs.texts[i], expected=expect.department,
                predicted=seen.label, expected_escalate=expect.escalate, escalated=seen.escalated,
                confidence=seen.confidence, stage=seen.stage, intent=seen.intent,
                expected_intent=expect.intent, mode=seen.mode, expected_mode=expect.mode,
                entities_ok=(not missing_entities(expect, seen)) if expect.entities else None,
                facts_ok=(not missing_facts(expect, seen)) if expect.facts else None,
                grounded=seen.grounded, llm_calls=seen.llm_calls, input_tokens=seen.input_tokens,
                output_tokens=seen.output_tokens, cost_usd=seen.cost_usd,
                latency_ms=seen.latency_ms, error=seen.error, outcome=seen.outcome,
                trained_on=bool(trained[i]) if i < len(trained) else False,
                ambiguous=bool(ambiguous[i]) if i < len(ambiguous) else False, reply=seen.reply,
                model_calls=seen.model_calls, language=_language(extra[i] if i < len(extra) else {}, seen),
                reply_language=seen.reply_language))
    return rows


def _language(extra: Any, seen: Observed) -> str | None:
    """The message's language: the row's ``lang`` (or ``language``) label, else the desk's answer."""
    labelled = extra.get("lang") or extra.get("language") if isinstance(extra, dict) else None
    return str(labelled).strip().lower() if labelled else seen.language


@dataclass(frozen=True, slots=True)
class EvalRun:
    """One run of a dataset under one configuration."""

    report: EvaluationReport[Dialogue, Any, dict[str, Any]]
    rows: list[Scored]
    summary: dict[str, Any]
    elapsed_s: float
    engine: str

    @property
    def queries_per_s(self) -> float:
        return len(self.rows) / self.elapsed_s if self.elapsed_s else 0.0


async def evaluate(dataset: EvalDataset, desk: SupportDesk, *, engine: Engine = "auto",
                   concurrency: int = 8, progress: bool = False) -> EvalRun:
    """Every case of ``dataset`` through ``desk`` (fresh: nothing else should have used it)."""
    chosen = engine if engine != "auto" else ("pydantic-evals" if desk.settings.models_path else "direct")
    tag = uuid.uuid4().hex[:8]
    started = time.perf_counter()
    if chosen == "direct":
        with _collector_paused():
            report = await _direct(dataset, desk, tag, progress)
        rows = scored_rows(report)
        report.analyses.extend(routing_analyses(rows, desk.definition.all_departments))  # what RoutingAnalyses gives, rows made once
    else:
        report = await _framework(dataset, desk, tag, concurrency, progress)
        rows = scored_rows(report)
    summary = summarise(rows, labels_of(rows, desk.definition.all_departments))
    elapsed = time.perf_counter() - started  # running and scoring: what "queries per second" counts
    failed = [{"case": f.name, "turn": None, "text": "", "error": f.error_message}
              for f in report.failures]
    summary["failures"] = [*summary["failures"], *failed]
    return EvalRun(report=report, rows=rows, summary=summary, elapsed_s=elapsed, engine=chosen)


async def _framework(dataset: EvalDataset, desk: SupportDesk, tag: str, concurrency: int,
                     progress: bool) -> EvaluationReport[Dialogue, Any, dict[str, Any]]:
    from pydantic_evals import Dataset, increment_eval_metric

    ids = {id(case.inputs): f"eval-{tag}-{i}" for i, case in enumerate(dataset.cases)}

    async def task(dialogue: Dialogue) -> tuple[Observed, ...]:
        outputs = await run_dialogue(desk, ids.get(id(dialogue)) or f"eval-{tag}-{uuid.uuid4().hex[:8]}", dialogue)
        for key, value in case_metrics(outputs).items():
            increment_eval_metric(key, value)
        return outputs

    framed = Dataset(name=dataset.name, cases=dataset.cases, evaluators=[DeskChecks()],
                     report_evaluators=[RoutingAnalyses()])
    # pydantic-evals draws its bar on stdout: only on a terminal, never into a piped --json
    return await framed.evaluate(task, name=dataset.name, max_concurrency=max(1, concurrency),
                                 progress=progress and sys.stdout.isatty())


async def _direct(dataset: EvalDataset, desk: SupportDesk, tag: str,
                  progress: bool) -> EvaluationReport[Dialogue, Any, dict[str, Any]]:
    checks = DeskChecks()
    spec, version = checks.as_spec(), checks.get_evaluator_version()
    no_spans = SpanTreeRecordingError("the direct engine records no spans")
    bar = _Progress(len(dataset.cases), dataset.name) if progress else None
    cases: list[ReportCase[Dialogue, Any, dict[str, Any]]] = []
    for i, case in enumerate(dataset.cases):
        started = time.perf_counter()
        outputs = await run_dialogue(desk, f"eval-{tag}-{i}", case.inputs)
        duration = time.perf_counter() - started
        ctx = EvaluatorContext[Dialogue, Any, dict[str, Any]](
            name=case.name, inputs=case.inputs, metadata=case.metadata, output=outputs,
            expected_output=case.expected_output, duration=duration, _span_tree=no_spans,
            attributes={}, metrics={})
        assertions = {name: EvaluationResult(name=name, value=value, reason=None, source=spec,
                                             evaluator_version=version)
                      for name, value in checks.evaluate(ctx).items()}
        cases.append(ReportCase(
            name=case.name or "", inputs=case.inputs, metadata=case.metadata, output=outputs,
            expected_output=case.expected_output, metrics=case_metrics(outputs), attributes={},
            scores={}, labels={}, assertions=assertions, task_duration=duration,
            total_duration=duration))
        if bar is not None:
            bar.advance(i + 1)
    if bar is not None:
        bar.close()
    return EvaluationReport[Dialogue, Any, dict[str, Any]](name=dataset.name, cases=cases, dataset_name=dataset.name)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """No cyclic garbage collection during a tight run: the desk allocates many small, acyclic
    objects, and the collector's passes over the growing event store cost ~15% of the run."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class _Progress:
    """A rich progress bar on stderr, redrawn every few cases so it costs next to nothing."""

    def __init__(self, total: int, name: str) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                             MofNCompleteColumn(), TimeElapsedColumn(),
                             console=Console(stderr=True), transient=True)
        self._bar.start()
        self._task = self._bar.add_task(f"evaluating {name}", total=total)
        self._every = max(1, total // 200)

    def advance(self, done: int) -> None:
        if done % self._every == 0:
            self._bar.update(self._task, completed=done)

    def close(self) -> None:
        self._bar.stop()


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
