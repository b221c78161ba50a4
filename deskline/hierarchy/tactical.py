"""Tactical layer: the triage orchestrator. It plans once; the operation layer runs the plan.

The routing cascade, each stage recording its verdict and why the turn moved on:

    rules (strategy says escalate) -> resume (a pending plan gets its missing entity)
    -> route cache -> local classifier (or a declared workflow that claims the message)
    -> [LLM planner, when a model is configured] -> clarifying question

The local path also splits a message that names two independent problems into a parallel plan,
and a conditional one ("if my order shipped, send me the tracking link") into a sequential plan.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from deskline.agents.registry import Registry, Skill
from deskline.definition import Desk
from deskline.errors import BudgetExceeded
from deskline.eventlog.projections import ConversationState
from deskline.handoffs.payload import HUMAN, OTHER, AgentName, Department, Entities
from deskline.handoffs.plan import Plan, PlanStep, StageVerdict
from deskline.hierarchy.dialogue import asks_only
from deskline.hierarchy.plan import validate
from deskline.hierarchy.strategy import Strategy
from deskline.hierarchy.workflows import claim_plan
from deskline.observe.tracing import span
from deskline.routing.cache import RouteCache
from deskline.routing.classifier import Prediction, normalise
from deskline.routing.models import ModelGateway, TurnBudget

if TYPE_CHECKING:
    from deskline.hierarchy.planner import LLMPlanner

ID_OWNER_MIN_WEIGHT = 0.02

_CONDITIONAL = re.compile(r"^\s*(?:and\s+)?if\s+(?P<cond>.+?)(?:,\s*|\s+then\s+)(?P<then>.+)$", re.I | re.S)
_SPLIT = re.compile(r"\s*(?:[.;!?]+\s+|,?\s+\b(?:and\s+also|also|plus|as\s+well\s+as|and)\b\s+)", re.I)
_WHEN_WORDS: tuple[tuple[re.Pattern[str], tuple[str, str]], ...] = (
    (re.compile(r"\b(?:fail(?:ed|s)?|declined|bounced|didn'?t go through|rejected)\b", re.I), ("status", "failed")),
    (re.compile(r"\b(?:pending|hasn'?t arrived|not arrived|stuck|still processing)\b", re.I), ("status", "pending")),
    (re.compile(r"\b(?:went through|succeeded|completed|arrived)\b", re.I), ("status", "completed")),
)


class Triage(Protocol):
    threshold: float

    def predict(self, text: str) -> Prediction: ...


@dataclass(slots=True)
class Tactician:
    """Plans a turn from the message, the state and the strategy. Holds no conversation state."""

    desk: Desk
    classifier: Triage
    cache: RouteCache
    models: ModelGateway | None = None
    _planner: LLMPlanner | None = field(default=None, init=False, repr=False)

    @property
    def registry(self) -> Registry:
        return self.desk.registry

    def agent_for(self, department: str) -> AgentName | None:
        """The agent a department's messages go to (None: ``human``, ``other`` or unknown)."""
        return self.desk.agent_departments.get(department)

    def _lookups(self, named: Entities, agent: AgentName | None = None) -> list[tuple[str, Skill]]:
        """The ids the message names, each with the skill that handles it (of ``agent``)."""
        found = []
        for entity in self.desk.extractor.ids:
            if named.has(entity):
                skill = self.registry.lookup_for(entity, agent)
                if skill is not None:
                    found.append((entity, skill))
        return found

    @property
    def planner(self) -> LLMPlanner:
        """Built on first use: pydantic-ai is imported only when a model is configured."""
        if self._planner is None:
            from deskline.hierarchy.planner import LLMPlanner

            self._planner = LLMPlanner(self.desk)
        return self._planner

    async def plan(self, state: ConversationState, text: str, entities: Entities, strategy: Strategy,
                   budget: TurnBudget | None = None, named: Entities | None = None) -> tuple[Plan, Entities]:
        """The plan for this turn, and any entities the LLM planner read that the regexes missed.

        ``named``: what this message names or refers to (default: what its words name)."""
        named = self.desk.extractor(text) if named is None else named
        verdicts: list[StageVerdict] = []
        if strategy.action == "escalate":
            rule = StageVerdict(stage="rules", department=HUMAN, intent="escalation",
                                confidence=1.0, accepted=True, reason="; ".join(strategy.reasons))
            return Plan(mode="escalate", department=HUMAN, intent="escalation", confidence=1.0,
                        stage="rules", verdicts=(rule,), reason=rule.reason), Entities()
        resumed = self._resume(state, entities)
        if resumed is not None:
            return resumed, Entities()
        key = normalise(text)
        with span("deskline.triage.cache") as cache_span:
            cached = self.cache.get(key)
            cache_span.set_attribute("deskline.hit", cached is not None)
        if cached is not None:
            hit = StageVerdict(stage="cache", department=cached.department, intent=cached.intent,
                               confidence=cached.confidence, accepted=True,
                               reason=f"exact match of a {cached.stage} plan")
            return cached.model_copy(update={"stage": "cache", "verdicts": (hit,)}), Entities()
        verdicts.append(StageVerdict(stage="cache", reason="no cached plan for this text"))
        with span("deskline.triage.classifier") as cls_span:
            p = self.classifier.predict(text)
            cls_span.set_attribute("deskline.department", p.department)
            cls_span.set_attribute("deskline.confidence", p.confidence)
            cls_span.set_attribute("deskline.abstain", p.abstain)
        workflow = claim_plan(self.desk, text, p, verdicts, self.classifier.threshold)
        if workflow is not None:  # a declared procedure claims the message: one plan, no model call
            self.cache.put(key, workflow)
            return workflow, Entities()
        if not p.abstain and p.department == OTHER:
            hinted = self._entity_hint(named, text, p, verdicts)
            if hinted is not None:
                return hinted, Entities()
        if not p.abstain:
            owner = self._id_owner(named, text, p)
            if owner is not None:
                verdicts.append(StageVerdict(
                    stage="classifier", department=p.department, intent=p.intent, confidence=p.confidence,
                    alternatives=p.alternatives,
                    reason=f"{p.department} at {p.confidence:.2f}, but the ids named belong to {owner}"))
                verdicts.append(StageVerdict(stage="rules", department=owner, intent=p.intent, confidence=p.confidence,
                                             accepted=True, reason=f"the message names only {owner}'s ids"))
                plan = self._route(text, owner, "", p.confidence, "rules", verdicts, named)
                self.cache.put(key, plan)
                return plan, Entities()
            verdicts.append(StageVerdict(stage="classifier", department=p.department, intent=p.intent,
                                         confidence=p.confidence, accepted=True, alternatives=p.alternatives,
                                         reason=f"confidence {p.confidence:.2f} >= {self.classifier.threshold:.2f}"))
            plan = self._route(text, p.department, p.intent, p.confidence, "classifier", verdicts, named)
            self.cache.put(key, plan)
            return plan, Entities()
        verdicts.append(StageVerdict(
            stage="classifier", department=p.department, intent=p.intent, confidence=p.confidence,
            alternatives=p.alternatives,
            reason=f"confidence {p.confidence:.2f} below threshold {self.classifier.threshold:.2f}"))
        with span("deskline.triage.llm"):
            planned = await self._llm(text, p, budget, verdicts, entities, _context(state))
        asked = self.models is not None and self.models.has("planner")  # else abstaining means: ask
        sure = self._sure(p) if asked else None
        overruled = planned is not None and p.department != OTHER and not self._agrees(planned[0], p.department)
        if sure is not None and (planned is None or overruled):
            # The model never makes routing worse than the local router: where the router is sure
            # at its own calibrated threshold, a plan for another department yields, and no plan
            # at all means what the router says (out of scope included: a model that failed on
            # "what's the weather" must not turn the desk's answer into a question).
            said = "no usable plan" if planned is None else f"a plan for {planned[0].department}"
            verdicts.append(StageVerdict(stage="classifier", department=p.department, intent=p.intent,
                                         confidence=p.confidence, accepted=True, alternatives=p.alternatives,
                                         reason=f"the model gave {said}; the router is sure of {p.department} at "
                                                f"{p.confidence:.2f} >= its calibrated {sure:.2f}"))
            found = planned[1] if planned is not None else Entities()
            if p.department == OTHER:  # out of scope, unless the ids named say whose it is (as without a model)
                hinted = self._entity_hint(named, text, p, verdicts)
                if hinted is not None:
                    return hinted, found
            return self._route(text, p.department, p.intent, p.confidence, "classifier", verdicts, named), found
        if planned is not None:
            self.cache.put(key, planned[0])
            return planned
        hinted = self._entity_hint(named, text, p, verdicts, classified=True)
        if hinted is not None:
            return hinted, Entities()
        return Plan(mode="clarify", department=OTHER, intent=p.intent, confidence=p.confidence,
                    stage="fallback", verdicts=tuple(verdicts), reason="nothing confident: ask"), Entities()

    def _sure(self, p: Prediction) -> float | None:
        """The threshold the router was calibrated with, when it is confident at it on a department
        the desk routes (``threshold`` may be set above that, to ask the model more often)."""
        calibrated: float | None = getattr(self.classifier, "calibrated_threshold", None)
        if calibrated is None or p.confidence < calibrated:
            return None
        known = p.department in (HUMAN, OTHER) or self.agent_for(p.department) is not None
        return calibrated if known else None

    def _agrees(self, plan: Plan, department: str) -> bool:
        """The plan is (also) for ``department``: its department, or one of its steps' agents."""
        if plan.department == department:
            return True
        agent = self.agent_for(department)
        return agent is not None and any(step.agent == agent for step in plan.steps)

    async def _llm(self, text: str, p: Prediction, budget: TurnBudget | None, verdicts: list[StageVerdict],
                   entities: Entities | None = None, context: str = "") -> tuple[Plan, Entities] | None:
        """The LLM planner's plan, or None with the reason recorded."""
        if self.models is None or not self.models.has("planner") or budget is None:
            verdicts.append(StageVerdict(stage="llm", reason="no model configured"))
            return None
        reserve = 1 if self.models.has("writer") else 0
        hint = f"{p.department}/{p.intent} at {p.confidence:.2f}" + (f"; {context}" if context else "")
        try:
            outcome = await self.models.call("planner", lambda model: self.planner.plan(model, text, hint, entities),
                                             budget, reserve=reserve)
        except BudgetExceeded as exc:
            verdicts.append(StageVerdict(stage="llm", reason=exc.message))
            return None
        if outcome.value is None:
            errors = "; ".join(a.error for a in outcome.attempts) or "no model call left in this turn's budget"
            verdicts.append(StageVerdict(stage="llm", reason=f"no usable plan: {errors}"))
            return None
        plan, found = outcome.value
        plan, reason = self._unasked_actions(plan, text, p, found)
        verdicts.append(StageVerdict(stage="llm", department=plan.department, intent=plan.intent,
                                     confidence=plan.confidence, accepted=True, reason=reason or plan.reason))
        return plan.model_copy(update={"verdicts": tuple(verdicts)}), found

    def _unasked_actions(self, plan: Plan, text: str, p: Prediction, found: Entities) -> tuple[Plan, str]:
        """The model proposes, the desk disposes: an action the model planned runs only when the
        customer's words ask for it (the local classifier's intent or the skill's keywords, and not
        a mere question); otherwise the step becomes its agent's lookup, and the reply can offer it."""
        if plan.workflow:
            return plan, ""
        steps, dropped = [], []
        for step in plan.steps:
            skill = self.registry[step.skill]
            asked = self.registry.choose(skill.agent, p.intent, text) is skill and not asks_only(text)
            if skill.action and not asked:
                lookup = self._lookup_for(skill.agent, text, found.merged(self.desk.extractor(text)))
                steps.append(step.model_copy(update={"skill": lookup.name}))
                dropped.append(skill.name)
            else:
                steps.append(step)
        if not dropped:
            return plan, ""
        reason = f"the model planned {', '.join(dropped)}, which the customer did not ask for: looked up instead"
        return validate(plan.model_copy(update={"steps": tuple(steps), "reason": reason}), self.registry), reason

    def _route(self, text: str, department: Department, intent: str, confidence: float,
               stage: str, verdicts: list[StageVerdict], named: Entities | None = None) -> Plan:
        common = {"department": department, "intent": intent, "confidence": confidence,
                  "stage": stage, "verdicts": tuple(verdicts)}
        if department == HUMAN:
            return Plan(mode="escalate", reason="the triage routed to a person", **common)
        agent = self.agent_for(department)
        if agent is None:
            return Plan(mode="clarify", reason="outside what the desk handles", **common)
        multi = self._sequential(text) or self._parallel(text)
        if multi is not None:
            return validate(Plan(mode=multi[0], steps=multi[1], reason=multi[2], **common), self.registry)
        skill = self._fit_entities(self.registry.choose(agent, intent, text), text, intent, named)
        if skill.action and asks_only(text):  # a question gets an answer, not an action
            skill = self._lookup_for(agent, text, named)
        step = PlanStep(step_id="s1", agent=skill.agent, skill=skill.name)
        return validate(Plan(mode="single", steps=(step,), reason=f"{intent} -> {skill.name}", **common), self.registry)

    def _entity_hint(self, named: Entities, text: str, p: Prediction,
                     verdicts: list[StageVerdict], classified: bool = False) -> Plan | None:
        """A message that names (or refers to) a record belongs with the agent whose skill looks it up."""
        for entity, skill in self._lookups(named):
            value = named.first(entity)
            if value is None:
                continue
            if not classified:
                verdicts.append(StageVerdict(
                    stage="classifier", department=p.department, intent=p.intent, confidence=p.confidence,
                    alternatives=p.alternatives, reason=f"{p.department} at {p.confidence:.2f}: not a desk route"))
            department = self._department_of(skill.agent)
            verdicts.append(StageVerdict(stage="rules", department=department, intent=entity, confidence=1.0,
                                         accepted=True, reason=f"the message names {value}"))
            step = PlanStep(step_id="s1", agent=skill.agent, skill=skill.name)
            return validate(Plan(mode="single", department=department, intent=entity, confidence=1.0,
                                 stage="rules", steps=(step,), verdicts=tuple(verdicts),
                                 reason=f"{value} -> {skill.name}"), self.registry)
        return None

    def _id_owner(self, named: Entities, text: str, p: Prediction) -> Department | None:
        """Another agent department, when every id the message names (or refers to) is that
        department's and the classifier gave it some weight: a reference says which system the
        request is about."""
        owners: set[AgentName] = set()
        for entity in self.desk.extractor.ids:
            if named.has(entity):
                owners |= self.registry.agents_taking(entity)
        if len(owners) != 1 or self.agent_for(p.department) in owners or self.agent_for(p.department) is None:
            return None
        owner = self._department_of(next(iter(owners)))
        weight = dict(p.alternatives).get(owner, 0.0)
        return owner if weight >= ID_OWNER_MIN_WEIGHT else None

    def _department_of(self, agent: AgentName) -> Department:
        return next((d for d, a in self.desk.agent_departments.items() if a == agent), agent)

    def _lookup_for(self, agent: AgentName, text: str, named: Entities | None = None) -> Skill:
        """A skill of ``agent`` that only reads: the one for the id named, else the default."""
        for _entity, skill in self._lookups(self.desk.extractor(text) if named is None else named, agent):
            if not skill.action:
                return skill
        return self.registry[self.registry.defaults[agent]]

    def _fit_entities(self, skill: Skill, text: str, intent: str, named: Entities | None = None) -> Skill:
        """A skill that can use the id the customer named (or referred to), when the chosen one
        cannot and was picked by keyword or default rather than because it claims the intent."""
        if self.registry.by_intent(intent) is skill:
            return skill
        for entity, other in self._lookups(self.desk.extractor(text) if named is None else named, skill.agent):
            if entity not in skill.params.model_fields:
                return other
        return skill

    def _resume(self, state: ConversationState, entities: Entities) -> Plan | None:
        pending = state.pending
        if pending is None:
            return None
        supplied = [m for m in pending.missing if entities.has(m)]
        if not supplied:
            return None
        verdict = StageVerdict(stage="resume", department=pending.plan.department, intent=pending.plan.intent,
                               confidence=pending.plan.confidence, accepted=True,
                               reason=f"the customer supplied {', '.join(supplied)} for turn {pending.turn}")
        return pending.plan.model_copy(update={"stage": "resume", "verdicts": (verdict,), "reason": verdict.reason})

    def _clause_step(self, clause: str, step_id: str, depends_on: tuple[str, ...] = ()) -> PlanStep | None:
        p = self.classifier.predict(clause)
        agent = None if p.abstain else self.agent_for(p.department)
        if agent is None:
            return None
        skill = self._fit_entities(self.registry.choose(agent, p.intent, clause), clause, p.intent)
        return PlanStep(step_id=step_id, agent=agent, skill=skill.name, depends_on=depends_on, clause=clause.strip())

    def _sequential(self, text: str) -> tuple[str, tuple[PlanStep, ...], str] | None:
        m = _CONDITIONAL.match(text)
        if m is None:
            return None
        first = self._clause_step(m.group("cond"), "s1")
        if first is None:
            return None
        if self.registry[first.skill].action:  # a condition is checked, never acted on
            first = first.model_copy(update={"skill": self._lookup_for(first.agent, m.group("cond")).name})
        second = self._clause_step(m.group("then"), "s2", depends_on=("s1",))
        if second is None or second.skill == first.skill:
            return None
        when = next((value for pattern, value in _WHEN_WORDS if pattern.search(m.group("cond"))), None)
        second = second.model_copy(update={"when": when})
        return "sequential", (first, second), "a conditional request: the second step waits on the first"

    def _parallel(self, text: str) -> tuple[str, tuple[PlanStep, ...], str] | None:
        clauses = [c for c in _SPLIT.split(text) if len(c.split()) >= 3]
        if len(clauses) < 2:
            return None
        steps: list[PlanStep] = []
        for clause in clauses:
            step = self._clause_step(clause, f"s{len(steps) + 1}")
            if step is not None and all(s.agent != step.agent for s in steps):
                steps.append(step)
        if len(steps) < 2:
            return None
        return "parallel", tuple(steps), "independent problems for different agents"


def _context(state: ConversationState) -> str:
    """The conversation so far, for the model planner: the topic, the open offer, its last reply."""
    parts = []
    if state.topic is not None:
        named = ", ".join(f"{k}={'/'.join(v)}" for k, v in state.topic.entities.values.items())
        parts.append(f"the conversation is about {state.topic.skill}" + (f" ({named})" if named else ""))
    if state.offer is not None:
        named = ", ".join(f"{k}={v[0]}" for k, v in state.offer.entities.values.items() if v)
        parts.append(f"the desk offered to run {state.offer.skill}" + (f" ({named})" if named else ""))
    last = next((h.text for h in reversed(state.history) if h.role == "bot"), "")
    if last:
        parts.append(f"its last reply: {last[:200]!r}")
    return "; ".join(parts)
