"""SupportDesk: one customer turn, strategy -> tactical -> operation -> writer.

    handle(conversation, message)
      1. accept   append CustomerMessaged (idempotent on the client message id),
                  leased to this desk                                               committed alone
      2. state    the conversation's fold, continued with the events since the last turn
      3. strategy decide(state, message)                                            pure
      4. plan     tactician.plan(...)                                               cascade
      5. execute  operator.execute(plan)                                            no model calls
      6. reply    writer.write(plan, results) + grounding check
      7. append   every event of steps 3-6 in one transaction, at the seq read in 2, only
                  while this desk still holds the turn's lease

The accepted message is durable before any decision is made; the decisions are appended
together or not at all. If another writer moved the conversation on first, the turn is decided
again on the new state, and if that writer already answered this message its answer is returned.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import structlog

from deskline.config import Settings
from deskline.definition import Desk
from deskline.errors import (
    BudgetExceeded,
    ConcurrencyConflict,
    LeaseLost,
    StoreError,
)
from deskline.eventlog.events import (
    ConversationOpened,
    CustomerMessaged,
    EscalationRequested,
    Event,
    ModelCalled,
    PlanMade,
    Recorded,
    ReplySent,
    StrategyDecided,
    TurnHeld,
)
from deskline.eventlog.nonblocking import AsyncEventStore, nonblocking
from deskline.eventlog.projections import ConversationState, TurnView, advance
from deskline.eventlog.states import ConversationStates
from deskline.eventlog.store import EventStore
from deskline.handoffs import escalation
from deskline.handoffs.payload import HUMAN, OTHER, AgentResult, Case, Entities, Offer, Topic
from deskline.handoffs.plan import Plan
from deskline.hierarchy import conversation
from deskline.hierarchy import strategy as strategy_rules
from deskline.hierarchy.dialogue import Move
from deskline.hierarchy.offloop import blocking, call_off_loop
from deskline.hierarchy.operation import Execution, Operator
from deskline.hierarchy.strategy import Strategy
from deskline.hierarchy.tactical import Tactician
from deskline.hierarchy.turn import TurnResult, clean_text, new_conversation_id, result_of
from deskline.hierarchy.writer import Reply, TemplateWriter
from deskline.i18n.detect import detect, resolve
from deskline.i18n.formats import language_names
from deskline.logs import ensure_configured
from deskline.observe.hooks import NullObserver, Observer
from deskline.observe.tracing import span
from deskline.routing.cache import RouteCache
from deskline.routing.models import ModelGateway, TurnBudget

log = structlog.get_logger("deskline.desk")
MAX_ATTEMPTS = 60  # one customer rarely races themself; many processes on one conversation might


class SupportDesk:
    """A desk definition at work: its turns on an event store, its skills on a system of record.

    ``records`` is the object the skills receive (default: the definition's, in memory);
    ``classifier`` the local router (default: the definition's router file)."""

    def __init__(self, *, store: EventStore, desk: Desk, records: Any = None, classifier: object = None,
                 settings: Settings | None = None, models: ModelGateway | None = None,
                 cache: RouteCache | None = None, observer: Observer | None = None) -> None:
        settings = settings or Settings()
        self.settings = settings.with_(
            approval_limit=settings.approval_limit if settings.approval_limit is not None
            else desk.policies.approval_limit,
            default_customer=settings.default_customer or desk.default_customer)
        self.definition = desk
        self.holder = "desk_" + uuid.uuid4().hex[:12]  # names this desk in turn leases
        self.observer: Observer = observer or NullObserver()
        ensure_configured(self.settings.log_format, self.settings.log_level)
        self.models = models
        self.store = store
        self._aio: tuple[EventStore, AsyncEventStore] | None = None
        self.states = ConversationStates(store, self.settings.state_cache)
        self.registry = desk.registry
        if classifier is None:
            classifier = desk.classifier(self.settings.abstain_threshold)
        if records is None:
            records = desk.system_of_record()
        self.tactician = Tactician(desk, classifier, cache if cache is not None else RouteCache(),  # type: ignore[arg-type]
                                   models)
        self.operator = Operator(self.registry, records, self.settings.step_timeout_s, self.settings.step_retries,
                                 frozenset(desk.extractor.by_name), desk.policies.actions, off_loop=blocking(records))
        self.writers = {lang: TemplateWriter(desk, lang) for lang in desk.languages or (desk.default_language,)}
        self.writer = self.writers[desk.default_language]

    def writer_for(self, language: str | None) -> TemplateWriter:
        """The template writer of ``language`` (the desk's default for one it does not speak)."""
        return self.writers.get(language or "", self.writer)

    @property
    def records(self) -> Any:
        """The system of record the skills use."""
        return self.operator.backend

    async def handle(self, conversation_id: str | None, text: str | bytes,
                     client_message_id: str | None = None, *, structured_only: bool = False) -> TurnResult:
        """Answer one customer message (see the module docstring for the steps).

        ``structured_only`` skips the model writer: the reply is the template's, one model call
        at most (the planner's), for callers that want the structured results only.
        """
        message = clean_text(text, self.settings.max_message_chars)
        cid = conversation_id or new_conversation_id()
        for attempt in range(MAX_ATTEMPTS):
            state = await self.states.aload(cid, self.aio)
            seen = state.turn_for_message(client_message_id) if client_message_id else None
            if seen is not None and seen.complete:
                return result_of(state, seen, appended=0, duplicate=True)
            if seen is None and state.open_turn() is not None:
                await self._finish(state)  # an earlier message was accepted, never answered
                await _backoff(attempt)
                continue
            if seen is not None:
                return _waited(await self._finish(state, duplicate=True, target=seen.turn))
            opening: list[Event] = ([] if state.last_seq else  # the caller (CLI, code) is a trusted operator
                                    [ConversationOpened(customer_id=self.settings.default_customer or "",
                                                        verified_at=time.time(), verified_by="operator")])
            try:
                accepted = await self.append_async(cid, state.last_seq, state.turn_count + 1,
                                                   [*opening, self._message(state, message, client_message_id)],
                                                   leased=True)
            except ConcurrencyConflict:
                self.states.forget(cid)
                await _backoff(attempt)
                continue
            mine = await self.states.aextend(cid, accepted, self.aio)
            return _waited(await self._finish(mine, accepted=len(accepted),
                                              structured_only=structured_only, target=mine.turns[-1].turn,
                                              leased=True))
        raise ConcurrencyConflict(f"conversation {cid} kept moving; gave up after {MAX_ATTEMPTS} attempts",
                                  conversation_id=cid)

    def _message(self, state: ConversationState, text: str, client_message_id: str | None) -> CustomerMessaged:
        """The message as accepted: with its own language and the one the desk answers it in."""
        languages = tuple(self.definition.languages)
        found = detect(text, languages)
        return CustomerMessaged(text=text, client_message_id=client_message_id, detected=found.language,
                                language=resolve(found.language, state.language, languages, found.guess))

    async def recover(self, conversation_id: str, *, wait: bool = True) -> TurnResult | None:
        """Finish the conversation's accepted but unanswered message, if it has one.

        With ``wait``, a turn another desk holds is waited for (its lease runs out if that desk
        died); without, it is left to its holder.
        """
        state = await self.states.aload(conversation_id, self.aio)
        if state.open_turn() is None:
            return None
        return await self._finish(state, wait=wait)

    async def recover_all(self, accepted_before: float | None = None, *, wait: bool = True) -> list[TurnResult]:
        """Finish every unfinished turn in the store (at start-up, after a crash)."""
        done = []
        for conversation_id, _turn in await self.aio.unfinished(accepted_before):
            result = await self.recover(conversation_id, wait=wait)
            if result is not None:
                done.append(result)
        return done

    @property
    def aio(self) -> AsyncEventStore:
        """The store as the turns use it: awaitable, never blocking the loop (``nonblocking``);
        it follows ``store`` when the API wraps that to publish appends."""
        if self._aio is None or self._aio[0] is not self.store:
            self._aio = (self.store, nonblocking(self.store))
        return self._aio[1]

    async def append_async(self, cid: str, expected: int, turn: int, events: list[Event], *,
                           leased: bool = False) -> list[Recorded]:
        """``append`` through the awaitable store: what the turns use."""
        with self._observed_append():
            appended = await self.aio.append(cid, expected, turn, events, **self._lease(leased))
        self.observer.appended(appended)
        return appended

    def append(self, cid: str, expected: int, turn: int, events: list[Event], *,
               leased: bool = False) -> list[Recorded]:
        """Append through the synchronous store (human commands and API handlers in worker
        threads, the CLI), telling the observer how long it took and what went in.

        ``leased``: the turn is this desk's (a message it accepts) or must still be (a decision).
        """
        with self._observed_append():
            appended = self.store.append(cid, expected, turn, events, **self._lease(leased))
        self.observer.appended(appended)
        return appended

    def _lease(self, leased: bool) -> dict[str, Any]:
        """The append's lease arguments: this desk's, when the turn must be (or become) its own."""
        return {"holder": self.holder, "ttl_s": self.settings.turn_lease_s} if leased else {}

    @contextmanager
    def _observed_append(self) -> Iterator[None]:
        """Tell the observer how long an append took, and whether it lost a race."""
        started = time.perf_counter()
        try:
            yield
        except ConcurrencyConflict:
            self.observer.store_append(time.perf_counter() - started, conflict=True)
            raise
        self.observer.store_append(time.perf_counter() - started, conflict=False)

    async def _finish(self, state: ConversationState, *, accepted: int = 0,
                      duplicate: bool = False, structured_only: bool = False, wait: bool = True,
                      target: int | None = None, leased: bool = False) -> TurnResult | None:
        """Decide turn ``target`` (default: the open one) under its lease and append its events.

        Another desk holding the turn's lease is deciding it: wait for its answer (or for its
        lease to run out, if it died) rather than deciding beside it. ``wait=False`` (recovery
        sweeps) leaves such a turn to its holder and returns None. Only ``target`` is ever
        decided or returned: turns complete in order, so while it is unanswered it is the open one.
        ``leased``: this desk took the lease when it accepted the message.
        """
        cid = state.conversation_id
        if target is None:
            opened = state.open_turn()
            if opened is None:
                return result_of(state, state.turns[-1], appended=accepted, duplicate=duplicate)
            target = opened.turn
        deadline = time.monotonic() + self.settings.turn_wait_s
        attempt = 0
        while True:
            attempt += 1
            turn = next(t for t in state.turns if t.turn == target)
            if turn.complete:  # answered, by this desk's append or another's
                return result_of(state, turn, appended=accepted, duplicate=duplicate)
            if not leased and not await self.aio.lease(cid, turn.turn, self.holder, self.settings.turn_lease_s):
                if not wait:
                    return None
                if time.monotonic() > deadline:
                    raise ConcurrencyConflict(f"turn {turn.turn} of {cid} is still being decided elsewhere",
                                              conversation_id=cid, turn=turn.turn)
                await asyncio.sleep(min(0.2, 0.01 * attempt))
                state = await self.states.aload(cid, self.aio)
                continue
            leased = False  # a later round takes the lease again
            bound = log.bind(conversation_id=cid, turn=turn.turn)
            events = await self._decide_leased(state, turn, structured_only)
            try:
                # Appended only while the lease is still ours: a stall past it lets another desk
                # take the turn, and then its decision stands and this one is dropped (actions
                # repeat nothing: idempotency keys).
                appended = await self.append_async(cid, state.last_seq, turn.turn, events, leased=True)
            except LeaseLost:
                bound.warning("turn.lease_lost")
                self.states.forget(cid)
                state = await self.states.aload(cid, self.aio)
                continue
            except ConcurrencyConflict:
                bound.info("turn.conflict", expected_seq=state.last_seq)
                if time.monotonic() > deadline:
                    raise
                await _backoff(attempt)
                self.states.forget(cid)
                state = await self.states.aload(cid, self.aio)
                continue
            self.states.record(cid, appended)
            done = advance(turn, appended)
            bound.info("turn.done", department=done.department, mode=done.mode, events=len(appended) + accepted)
            return result_of(state, done, appended=len(appended) + accepted, duplicate=duplicate)

    async def _decide_leased(self, state: ConversationState, turn: TurnView, structured_only: bool) -> list[Event]:
        """The turn's events, decided while the lease is kept alive, timed and traced."""
        cid = state.conversation_id
        renewing = _LeaseKeeper(self, cid, turn.turn)
        try:
            with span("deskline.turn", **{"deskline.conversation_id": cid, "deskline.turn": turn.turn}) as sp:
                started = time.perf_counter()
                events = await self.decide_or_fail(state, turn, structured_only=structured_only)
                if isinstance(events[-1], ReplySent):
                    took = round((time.perf_counter() - started) * 1000, 3)
                    events[-1] = events[-1].model_copy(update={"latency_ms": took})
                    sp.set_attribute("deskline.department", events[-1].department)
                    sp.set_attribute("deskline.mode", events[-1].mode)
        finally:
            renewing.stop()
        return events

    async def decide_or_fail(self, state: ConversationState, turn: TurnView, **options: Any) -> list[Event]:
        """``decide``, or, if deciding raised, a turn that ends in a person's hands.

        A bug in a skill or a template must not leave the message accepted and unanswered
        forever (every later touch would hit the same error): the turn ends with the holding
        reply and an escalation naming the error, and the traceback goes to the log.
        """
        try:
            return self._in_language(turn, await self.decide(state, turn, **options))
        except Exception as exc:
            log.exception("turn.failed", conversation_id=state.conversation_id, turn=turn.turn)
            reason = f"the desk failed to decide this turn ({type(exc).__name__})"
            return self._in_language(turn, [
                *self._escalate(turn.text, "", state.entities, [], (reason,)),
                ReplySent(text=self.writer_for(turn.language).texts.holding, department=HUMAN, mode="escalate",
                          escalated=True, outcome="failed")])

    def _in_language(self, turn: TurnView, events: list[Event]) -> list[Event]:
        """Escalations marked with the conversation's language, named in the summary when it is
        not the desk's default, so the person who takes it knows before opening it."""
        language = turn.language
        if language is None:
            return events
        note = "" if language == self.definition.default_language else \
            f"In {language_names((language,), 'en')} ({language}). "
        return [e.model_copy(update={"language": language, "summary": note + e.summary})
                if isinstance(e, EscalationRequested) else e for e in events]

    async def decide(self, state: ConversationState, turn: TurnView, *, operator: Operator | None = None,
                     models: ModelGateway | None = None, cache: RouteCache | None = None,
                     structured_only: bool = False) -> list[Event]:
        """Every event of one turn's decisions, from the state before them. No store writes.

        Replay passes an ``operator`` that hands back recorded results, ``models`` that hand back
        recorded model outputs, and a ``cache`` that hits exactly where the live cache did.
        ``structured_only`` skips the model writer (one call a turn).
        """
        operator = operator or self.operator
        models = models if models is not None else self.models
        text = turn.text
        writer = self.writer_for(turn.language)
        speaking = writer.desk  # the definition in the turn's language: its texts and replies
        said = self.definition.extractor(text)
        referred = await self._referred(state, text, said)
        said = said.merged(referred) if not referred.is_empty() else said
        entities = state.entities.merged(said)
        clock = time.perf_counter()
        with span("deskline.strategy"):
            strategy = strategy_rules.decide(state, text, said, self.settings, speaking)
        clock = self._lap("strategy", clock)
        events: list[Event] = [StrategyDecided(owner=strategy.owner, action=strategy.action,
                                               reasons=strategy.reasons, constraints=strategy.constraints,
                                               sentiment=strategy.sentiment)]
        if strategy.action == "hold":
            return [*events, TurnHeld(reason=strategy.reasons[0])]
        if turn.detected and turn.detected not in self.definition.languages and strategy.action != "escalate":
            return [*events, ReplySent(text=self._unsupported(), department=OTHER, mode="clarify", outcome="unclear")]
        budget = TurnBudget(max_calls=strategy.constraints.max_llm_calls,
                            max_cost_usd=strategy.constraints.max_cost_usd,
                            conversation_spent_usd=state.spent_usd,
                            conversation_cap_usd=self.settings.max_conversation_cost_usd)
        tactician = self.tactician
        if models is not self.models or cache is not None:
            tactician = replace(tactician, models=models, cache=cache if cache is not None else tactician.cache)
        move = self._dialogue(tactician, state, turn, text, said, referred, strategy, entities)
        with span("deskline.triage") as triage_span:
            if move is not None:
                plan, found, entities = move[0], Entities(), entities.merged(move[1].entities)
            else:
                plan, found = await tactician.plan(state, text, entities, strategy, budget, named=said)
            triage_span.set_attribute("deskline.stage", plan.stage)
            triage_span.set_attribute("deskline.plan.mode", plan.mode)
        clock = self._lap("triage", clock)
        closes_offer = move is not None and move[1].closes_offer
        events.extend(_model_events(budget, "planner"))
        if plan.stage == "resume" and state.pending is not None:
            entities = state.pending.entities.merged(entities)
        entities = entities.merged(found)
        events.append(PlanMade(plan=plan, entities=entities if plan.stage in ("resume", "dialogue")
                               else said.merged(found)))
        if plan.mode == "escalate":
            reasons = strategy.reasons if strategy.action == "escalate" else (plan.reason,)
            said_reply = strategy.reply if strategy.action == "escalate" else speaking.escalation_reply()
            rule = strategy.rule if strategy.action == "escalate" else ""
            return [*events, *self._escalate(text, plan.intent, entities, [], reasons, strategy.priority, rule),
                    ReplySent(text=said_reply, department=HUMAN, mode="escalate",
                              escalated=True, outcome="escalated", llm_calls=budget.calls)]
        if plan.mode == "clarify":
            said_text, refused = (move[1].reply, "") if move is not None else self._question(writer, plan, text)
            outcome = "unclear" if plan.stage in ("fallback", "llm") else "answered"
            return [*events, ReplySent(text=said_text, department=plan.department, mode="clarify",
                                       outcome=outcome, llm_calls=budget.calls, offer_closed=closes_offer,
                                       refused=refused)]
        case = Case(conversation_id=state.conversation_id, turn=turn.turn, customer_id=state.customer_id,
                    intent=plan.intent, department=plan.department, entities=entities,
                    actions_taken=state.actions_taken, history=state.history[-10:],
                    anonymous=state.anonymous, verified_age_s=_verified_age(state, turn))
        with span("deskline.operation", **{"deskline.plan.mode": plan.mode}):
            run = await operator.execute(plan, case, strategy.constraints)
        clock = self._lap("operation", clock)
        events.extend(run.events)
        with span("deskline.writer") as writer_span:
            plan, run, reply = await self._write(writer, models, tactician, operator, state, text, entities,
                                                 strategy, budget, case, plan, run, events, structured_only)
            writer_span.set_attribute("deskline.grounded", reply.grounded)
        self._lap("writer", clock)
        topic = conversation.topic_of(self.definition, plan, entities, run.results, turn.turn)
        offer = conversation.offer_of(self.definition, run.results)
        return [*events, *self._reply(writer, text, plan, entities, run, reply, budget.calls, topic, offer,
                                      closes_offer)]

    def _lap(self, stage: str, since: float) -> float:
        now = time.perf_counter()
        self.observer.stage(stage, now - since)
        return now

    async def _write(self, writer: TemplateWriter, models: ModelGateway | None, tactician: Tactician,
                     operator: Operator, state: ConversationState, text: str, entities: Entities,
                     strategy: Strategy, budget: TurnBudget, case: Case, plan: Plan, run: Execution,
                     events: list[Event],
                     structured_only: bool) -> tuple[Plan, Execution, Reply]:
        """The template reply, verified (and re-planned or re-run if the model says so), then
        rewritten by the model writer when one is configured."""
        reply = writer.write(plan, run.results, text)
        if not reply.grounded and models is not None and models.has("planner"):
            plan, run, reply = await self._verify(writer, models, tactician, operator, state, text, entities,
                                                  strategy, budget, case, plan, run, reply, events)
        seen_before_writer = len(budget.attempts)
        if (reply.grounded and not run.escalations and not run.needs_info and not structured_only
                and models is not None and models.has("writer")):
            reply = await self._model_reply(models, text, run, reply, budget, writer.language)
        events.extend(_model_events(budget, "writer", start=seen_before_writer))
        return plan, run, reply

    async def _verify(self, writer: TemplateWriter, models: ModelGateway, tactician: Tactician, operator: Operator,
                      state: ConversationState, text: str, entities: Entities, strategy: Strategy,
                      budget: TurnBudget, case: Case, plan: Plan, run: Execution, reply: Reply,
                      events: list[Event]) -> tuple[Plan, Execution, Reply]:
        """Bounded rounds of 'what next?' for a reply that failed verification."""
        from deskline.hierarchy.verifier import NextStep, next_step

        for _ in range(self.settings.verify_rounds):
            seen = len(budget.attempts)
            results, problems = run.results, reply.problems

            async def ask(model: Any, results: list[AgentResult] = results,
                          problems: tuple[str, ...] = problems) -> NextStep:
                return await next_step(model, text, results, problems)

            try:
                outcome = await models.call("verifier", ask, budget)
            except BudgetExceeded:
                break
            events.extend(_model_events(budget, "verifier", start=seen))
            if outcome.value in (None, "escalate", "complete"):
                break
            if outcome.value == "re_plan":
                seen = len(budget.attempts)
                replanned, _found = await tactician.plan(state, text, entities, strategy, budget)
                events.extend(_model_events(budget, "planner", start=seen))
                if not replanned.steps:
                    break
                plan = replanned
                events.append(PlanMade(plan=plan, entities=entities))
            run = await operator.execute(plan, case, strategy.constraints)
            events.extend(run.events)
            reply = writer.write(plan, run.results, text)
            if reply.grounded:
                break
        return plan, run, reply

    async def _model_reply(self, models: ModelGateway, text: str, run: Execution, draft: Reply,
                           budget: TurnBudget, language: str) -> Reply:
        """The model writer's reply when it answers and stays grounded; else the template draft."""
        from deskline.hierarchy.model_writer import write_with_model

        try:
            outcome = await models.call("writer",
                                        lambda m: write_with_model(m, text, run.results, draft.text, language),
                                        budget)
        except BudgetExceeded:
            return draft
        return Reply(outcome.value) if outcome.value is not None else draft

    def _reply(self, writer: TemplateWriter, text: str, plan: Plan, entities: Entities, run: Execution, reply: Reply,
               llm_calls: int, topic: Topic | None = None, offer: Offer | None = None,
               closes_offer: bool = False) -> list[Event]:
        department, mode = plan.department, plan.mode
        if not reply.grounded:
            log.warning("reply.ungrounded", problems=reply.problems)
            esc = self._escalate(text, plan.intent, entities, run.results,
                                 (f"the reply named facts no result holds: {', '.join(reply.problems)}",))
            return [*esc, ReplySent(text=writer.texts.holding, department=department, mode=mode,
                                    escalated=True, grounded=False, outcome="failed", llm_calls=llm_calls)]
        if run.escalations:
            reasons = run.escalation_reasons  # with what was undone and what could not be
            return [*self._escalate(text, plan.intent, entities, run.results, reasons),
                    ReplySent(text=reply.text, department=department, mode=mode, escalated=True,
                              outcome="escalated", llm_calls=llm_calls, topic=topic, offer_closed=closes_offer)]
        outcome = "needs_info" if run.needs_info else "answered"
        return [ReplySent(text=reply.text, department=department, mode=mode, outcome=outcome, llm_calls=llm_calls,
                          topic=topic, offer=offer, offer_closed=closes_offer)]

    def _question(self, writer: TemplateWriter, plan: Plan, text: str) -> tuple[str, str]:
        """The model planner's own question when it passes the question checks and is in the
        conversation's language, else the desk's; and why the model's was refused, if it was."""
        from deskline.hierarchy.checks import question_problems
        from deskline.hierarchy.planner import PLANNER_PROMPT

        if not plan.question:
            return writer.write(plan, [], text).text, ""
        problems = question_problems(plan.question, text, (PLANNER_PROMPT,))
        written_in = detect(plan.question, (writer.language,)).language
        if written_in not in (None, writer.language):
            problems.append(f"the question is in {written_in}, not the conversation's {writer.language}")
        if not problems:
            return plan.question, ""
        return writer.write(plan, [], text).text, "; ".join(problems)

    def _unsupported(self) -> str:
        """The polite reply to a message in a language the desk does not answer in, in its default."""
        languages = tuple(self.definition.languages)
        return self.writer.texts.unsupported_language.format(
            languages=language_names(languages, self.definition.default_language))

    async def _referred(self, state: ConversationState, text: str, said: Entities) -> Entities:
        """What the message refers to without naming it: the desk's resolvers read the system of
        record, on a worker thread when that blocks (PostgreSQL), so the loop never waits on it."""
        if blocking(self.records):
            return await call_off_loop(conversation.referred, self.definition, self.records, state, text, said)
        return conversation.referred(self.definition, self.records, state, text, said)

    def _dialogue(self, tactician: Tactician, state: ConversationState, turn: TurnView, text: str, said: Entities,
                  referred: Entities, strategy: Strategy, entities: Entities) -> tuple[Plan, Move] | None:
        return conversation.move(self.writer_for(turn.language).desk, tactician.classifier, state, turn.turn, text,
                                 said, referred,
                                 strategy)

    def _escalate(self, text: str, intent: str, entities: Entities, results: Sequence[AgentResult],
                  reasons: Sequence[str], priority: int = 2, rule: str = "") -> list[Event]:
        return [EscalationRequested(
            reason="; ".join(reasons),
            priority=priority,
            rule=rule,
            summary=escalation.summary(text, intent, entities, results, hide=self.definition.extractor.personal),
            actions_taken=tuple(f"{r.skill}: {r.status}" for r in results),
            pending_action=escalation.pending_action(results),
        )]


class _LeaseKeeper:
    """Renews a turn's lease every third of its time while a long decision (model calls, slow
    skills) runs; a timer on the loop, not a task, so a fast turn pays almost nothing for it (a
    renewal that falls due runs as a task, awaiting the store).

    A renewal that fails (a locked or unreachable database) is retried at the next tick; a lease
    found taken is left alone, and the decision's append checks it again.
    """

    __slots__ = ("cid", "desk", "handle", "renewing", "turn")

    def __init__(self, desk: SupportDesk, cid: str, turn: int) -> None:
        self.desk, self.cid, self.turn = desk, cid, turn
        self.handle: asyncio.TimerHandle | None = None
        self.renewing: asyncio.Task[None] | None = None
        self._schedule()

    def _schedule(self) -> None:
        self.handle = asyncio.get_running_loop().call_later(self.desk.settings.turn_lease_s / 3, self._due)

    def _due(self) -> None:
        self.handle = None
        self.renewing = asyncio.get_running_loop().create_task(self._renew())

    async def _renew(self) -> None:
        desk = self.desk
        try:
            if not await desk.aio.lease(self.cid, self.turn, desk.holder, desk.settings.turn_lease_s):
                return
        except StoreError as exc:
            log.warning("turn.lease_renewal_failed", conversation_id=self.cid, turn=self.turn, error=exc.message)
        self._schedule()

    def stop(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None
        if self.renewing is not None:
            self.renewing.cancel()  # a renewal in flight: the decision's append checks the lease anyway
            self.renewing = None


def _verified_age(state: ConversationState, turn: TurnView) -> float | None:
    """Seconds between the last verification and this turn's message (0 when an operator vouched:
    the CLI and code acting for a customer), from the log, so a replay decides the same."""
    if state.verified_at is None:
        return None
    if state.verified_by == "operator":
        return 0.0
    return max(0.0, turn.accepted_at - state.verified_at)


def _waited(result: TurnResult | None) -> TurnResult:
    assert result is not None, "a waiting _finish always returns a result"
    return result


async def _backoff(attempt: int) -> None:
    """Yield to the writer that got there first; a little longer each time, with jitter."""
    if attempt:
        await asyncio.sleep(random.uniform(0, min(0.05, 0.002 * attempt)))


def _model_events(budget: TurnBudget, role: str, start: int = 0) -> list[Event]:
    return [ModelCalled(role=a.role, deployment=a.deployment or a.group, model_group=a.group, fallbacks=a.fallbacks,
                        request_summary=a.request_summary, output=a.output, input_tokens=a.input_tokens,
                        output_tokens=a.output_tokens, cost_usd=a.cost_usd, latency_ms=a.latency_ms, ok=a.ok,
                        error=a.error)
            for a in budget.attempts[start:] if a.role == role]
