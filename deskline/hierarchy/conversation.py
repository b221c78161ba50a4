"""A turn read as part of its conversation: references resolved from the records, the dialogue
step run against the folded state, and the topic and offer a turn leaves for the next one.

The desk calls these around the routing cascade; the decisions themselves are pure
(``deskline.hierarchy.dialogue``) and recorded like every other stage (a ``dialogue`` verdict in
``PlanMade``, the topic and offer on ``ReplySent``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog

from deskline.definition import Desk
from deskline.errors import DesklineError
from deskline.eventlog.projections import ConversationState
from deskline.handoffs.payload import AgentResult, Entities, Offer, Topic
from deskline.handoffs.plan import Plan
from deskline.hierarchy import dialogue
from deskline.hierarchy.strategy import Strategy

log = structlog.get_logger("deskline.dialogue")


def referred(desk: Desk, records: Any, state: ConversationState, text: str, named: Entities) -> Entities:
    """Entities the message refers to without naming them ("my payment to Brightwater"), found by
    the desk's resolvers in its system of record, for this customer only (none when anonymous)."""
    if state.anonymous or not state.customer_id:
        return Entities()
    found: dict[str, tuple[str, ...]] = {}
    for entity in desk.entities:
        if entity.resolve is None or named.has(entity.name):
            continue
        try:
            values = tuple(dict.fromkeys(entity.resolve(records, state.customer_id, text)))
        except DesklineError as exc:  # the system of record is down: the cascade asks instead
            log.warning("dialogue.resolve_failed", entity=entity.name, error=exc.message)
            continue
        if values:
            found[entity.name] = values
    return Entities(values=found) if found else Entities()


def move(desk: Desk, classifier: Any, state: ConversationState, turn: int, text: str, named: Entities,
         refs: Entities, strategy: Strategy) -> tuple[Plan, dialogue.Move] | None:
    """The dialogue step's plan for this message, or None for the routing cascade."""
    if strategy.action != "answer" or not dialogue.worth_reading(state.topic, state.offer, text):
        return None
    if state.pending is not None and any(named.has(m) for m in state.pending.missing):
        return None  # the answer to the desk's own question: the cascade resumes the stopped plan
    prediction = classifier.predict(text)
    agent_for = desk.agent_departments
    texts = desk.texts
    found = dialogue.step(topic=state.topic, offer=state.offer, turn=turn, text=text, named=named.merged(refs)
                          if not refs.is_empty() else named, referred=refs, prediction=prediction,
                          registry=desk.registry, agent_for=agent_for, thanks=texts.thanks,
                          goodbye=texts.goodbye, declined=texts.declined, unclear=texts.clarify)
    if found is None:
        return None
    if found.skill is not None:
        agent = desk.registry[found.skill].agent
        department = next((d for d, a in agent_for.items() if a == agent), agent)
    else:
        department = state.topic.department if state.topic is not None else prediction.department
    return dialogue.plan_for(found, department, desk.registry, prediction), found


def topic_of(desk: Desk, plan: Plan, entities: Entities, results: Sequence[AgentResult], turn: int) -> Topic | None:
    """What the conversation is about after a turn that ran a plan: its first step's skill, and the
    entities in play, the ones the skills found included (``payment_id`` of "my transfer")."""
    if not plan.steps:
        return None
    step = plan.steps[0]
    ids = desk.extractor.ids
    found = {k: (v,) for r in results for k, v in r.facts.items() if k in ids and v}
    in_play = entities.merged(Entities(values=found)) if found else entities
    return Topic(department=plan.department, agent=step.agent, skill=step.skill, entities=in_play, turn=turn)


def offer_of(desk: Desk, results: Sequence[AgentResult]) -> Offer | None:
    """The action the turn's reply proposes, if a result made an offer the desk can run."""
    return next((r.offer for r in results if r.offer is not None and r.offer.skill in desk.registry), None)
