"""Agent skills and the registry the triage plans against.

A skill is a typed, async function over a handoff. It declares the entities it needs (its
preconditions), the classifier intents it answers, whether it takes an action, the facts its
results carry and the writer templates for them, so everything about a skill sits in one place.
A skill reads and changes the desk's *system of record*: any object the desk definition
provides, handed to the skill as ``call.records``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, StringConstraints

from deskline.handoffs import AgentName, AgentResult, EntityName, Handoff, Money, ResultStatus
from deskline.handoffs.payload import Entities, Offer

Facts = Mapping[str, str]


P = TypeVar("P", bound=BaseModel)

Reference = Annotated[str, StringConstraints(strip_whitespace=True, to_upper=True, min_length=1)]
"""The type of an id parameter (``order_id``...): ``" ord-1001"`` arrives as ``"ORD-1001"``."""


class ApprovalRequired(Exception):
    """Raised inside ``SkillCall.act`` when an action is above the approval limit.

    Internal control flow between ``SkillCall.act`` and the operation layer, which turns it
    into a ``pending_approval`` result; it never leaves the operation layer.
    """

    def __init__(self, action: str, amount: Money | None, reason: str) -> None:
        super().__init__(reason)
        self.action = action
        self.amount = amount
        self.reason = reason


@runtime_checkable
class ActionLedger(Protocol):
    """A system of record that remembers the actions it took by idempotency key.

    Implement it and ``SkillCall.act`` can tell a retried step that it already acted (and must
    not be gated or decided again); ``recorded(key)`` returns an object with an ``action``
    attribute, or None."""

    def recorded(self, key: str) -> Any: ...


@dataclass(slots=True)
class SkillCall:
    """Everything a skill may use: its handoff, its typed parameters and the system of record."""

    handoff: Handoff
    params: BaseModel
    records: Any
    policy: ActionPolicy | None = None
    deadline: float | None = None  # epoch seconds by which the step must be done (remote calls pass it on)

    @property
    def backend(self) -> Any:
        """The system of record (the built-in desk's skills call it their backend)."""
        return self.records

    @property
    def customer_id(self) -> str:
        return self.handoff.case.customer_id

    def params_as(self, model: type[P]) -> P:
        """The parameters as the skill's own model (a wrong model is a wiring bug, not input)."""
        if not isinstance(self.params, model):
            raise TypeError(
                f"{self.handoff.skill} takes {model.__name__}, got {type(self.params).__name__}"
            )
        return self.params

    @property
    def key(self) -> str:
        """The idempotency key of this step: (conversation, turn, step), from the handoff."""
        return self.handoff.idempotency_key

    def recorded(self, action: str) -> Any:
        """``action`` as this step already took it (in a retried or resumed turn), if it did and
        the system of record is an ``ActionLedger``.

        A skill checks it before concluding "nothing to do" from a record's state, because the
        state may show this very step's own earlier change.
        """
        if not isinstance(self.records, ActionLedger):
            return None
        entry = self.records.recorded(self.key)
        return entry if entry is not None and getattr(entry, "action", None) == action else None

    def result(
        self,
        status: ResultStatus = "ok",
        template: str = "default",
        reason: str = "",
        action_key: str | None = None,
        missing: tuple[EntityName, ...] = (),
        facts: Mapping[str, object] | None = None,
        offer: Offer | None = None,
        **more: object,
    ) -> AgentResult:
        """A result of this step; its facts are ``facts`` and ``more`` (``None`` values dropped);
        ``offer`` is the action its reply proposes (``call.offer(...)``), which the customer may
        accept in the next turns."""
        merged = {**(facts or {}), **more}
        return AgentResult(
            step_id=self.handoff.step_id,
            agent=self.handoff.agent,
            skill=self.handoff.skill,
            status=status,
            template=template,
            facts={k: str(v) for k, v in merged.items() if v is not None},
            missing=missing,
            reason=reason,
            action_key=action_key,
            offer=offer,
        )

    def offer(self, skill: str, **entities: str) -> Offer:
        """The offer to run ``skill`` with these entities (``call.offer("orders.cancel", order_id=...)``)."""
        return Offer(skill=skill, entities=Entities.of(**entities), turn=self.handoff.case.turn)

    def act(self, action: str, amount: Money | None, do: Callable[[str], Facts], target: str = "") -> Facts:
        """Run an action once per idempotency key, behind the approval gate and the desk's policy
        for this skill (``target`` names what it acts on, for the policy and the person).

        ``do(key)`` is an action of the system of record bound to its target (``lambda key:
        call.records.cancel_order(key, customer, order)``): it applies the change and records
        it under the key in one transaction, and returns the recorded facts for a key it has
        seen. An action this step already took is not gated again: it was allowed then.
        """
        limits = self.handoff.constraints
        if self.recorded(action) is None and not limits.approved_by:
            if not limits.allow_actions:
                raise ApprovalRequired(action, amount, "actions need a person's approval this turn")
            if amount is not None and amount.amount > limits.approval_limit:
                raise ApprovalRequired(
                    action,
                    amount,
                    f"{amount} is above the approval limit of "
                    f"{Money(amount=limits.approval_limit, currency=amount.currency)}",
                )
            reason = self.policy(self, action, amount, target) if self.policy is not None else None
            if reason:
                raise ApprovalRequired(action, amount, reason)
        return do(self.key)


SkillFn = Callable[[SkillCall], Awaitable[AgentResult]]
ActionPolicy = Callable[["SkillCall", str, "Money | None", str], "str | None"]
"""A desk's rule for one skill's actions: ``policy(call, action, amount, target)`` returns the
reason a person must approve this action (``"ORD-1002 has shipped"``), or None
when the skill may take it on its own. Declared in ``Policies.actions`` by skill name."""


@dataclass(frozen=True, slots=True)
class Skill:
    """One thing an agent can do.

    ``name`` is ``agent.verb`` by convention; ``params`` is a pydantic model whose fields are
    filled from the case's entities (by entity name), ``customer_id`` and upstream results'
    facts; ``requires`` are the entities without which the desk asks instead of running;
    ``intents`` are router intents this skill answers and ``keywords`` pick it within its agent
    when no intent does; ``action`` marks a change to the system of record (exactly once,
    behind the approval gate); ``facts`` names every fact its results may carry, and each of
    ``templates`` (template name -> text with ``{fact}`` fields) may use only those. ``public``
    skills read nothing of the customer's and run in anonymous conversations; any other skill
    asks an anonymous customer to sign in. ``verification_s``: the skill runs only if the host
    site vouched for the customer at most this many seconds ago (sensitive actions).

    Compensation (an action undone when a later step of its plan fails for good): ``compensate``
    is the action that undoes this one, either the name of another action skill of the desk or a
    skill function of its own (it gets this skill's parameters, the original result as its only
    upstream result, and the idempotency key ``<original key>:undo``); ``irreversible`` says why
    an action has none ("a sent message cannot be unsent"), for the person
    the failed plan goes to. An action with neither is reported as not undone.
    """

    name: str
    agent: AgentName
    description: str
    params: type[BaseModel]
    run: SkillFn
    requires: tuple[EntityName, ...] = ()
    intents: frozenset[str] = frozenset()
    keywords: tuple[str, ...] = ()
    action: bool = False
    templates: Mapping[str, str] = field(default_factory=dict)
    facts: tuple[str, ...] = ()
    public: bool = False
    verification_s: float | None = None
    offers: tuple[str, ...] = ()  # the action skills its replies may offer to run
    compensate: str | SkillFn | None = None
    irreversible: str = ""

    @property
    def compensable(self) -> bool:
        """Whether the operation layer can undo this skill's action."""
        return self.action and self.compensate is not None

    def tool_schema(self) -> dict[str, Any]:
        """The skill as a tool for a model planner: name, description, JSON schema."""
        return {
            "name": self.name.replace(".", "__"),
            "description": self.description,
            "parameters": self.params.model_json_schema(),
        }


class Registry:
    """The skills the desk can plan with, by name, agent and intent."""

    def __init__(self, skills: Iterable[Skill], defaults: Mapping[AgentName, str]) -> None:
        self.skills: dict[str, Skill] = {}
        for skill in skills:
            if skill.name in self.skills:
                raise ValueError(f"duplicate skill {skill.name}")
            self.skills[skill.name] = skill
        self.defaults = dict(defaults)
        self._by_intent: dict[str, Skill] = {}
        for skill in self.skills.values():
            for intent in skill.intents:
                self._by_intent.setdefault(intent, skill)
        for agent, name in self.defaults.items():
            if self.skills[name].agent != agent:
                raise ValueError(f"default skill {name} does not belong to {agent}")

    def __getitem__(self, name: str) -> Skill:
        return self.skills[name]

    def __contains__(self, name: object) -> bool:
        return name in self.skills

    @property
    def agents(self) -> tuple[AgentName, ...]:
        """Every agent with a skill, in the order their skills were given."""
        return tuple(dict.fromkeys(s.agent for s in self.skills.values()))

    def lookup_for(self, entity: str, agent: AgentName | None = None) -> Skill | None:
        """The skill for a message that names ``entity`` and little else: the first (of
        ``agent``, if given) that takes it as a parameter, preferring one that only reads."""
        takers = [s for s in self.skills.values()
                  if entity in s.params.model_fields and (agent is None or s.agent == agent)]
        return next((s for s in takers if not s.action), takers[0] if takers else None)

    def agents_taking(self, entity: str) -> set[AgentName]:
        """The agents with a skill that takes ``entity`` as a parameter: who owns that kind of id."""
        return {s.agent for s in self.skills.values() if entity in s.params.model_fields}

    def by_intent(self, intent: str) -> Skill | None:
        """The skill that claims ``intent``, if one does."""
        return self._by_intent.get(intent)

    def for_agent(self, agent: AgentName) -> list[Skill]:
        return [s for s in self.skills.values() if s.agent == agent]

    def choose(self, agent: AgentName, intent: str, text: str) -> Skill:
        """The skill of ``agent`` for ``intent``; else by keyword; else the agent's default."""
        skill = self._by_intent.get(intent)
        if skill is not None and skill.agent == agent:
            return skill
        low = text.lower()
        for candidate in self.for_agent(agent):
            if any(k in low for k in candidate.keywords):
                return candidate
        return self.skills[self.defaults[agent]]
