"""Human-side commands: claim, reply, hand back, approve or reject. Each appends one event.

Every command reads the conversation, checks it against the folded state (pure), and appends at
the sequence number it read, so two agents racing to claim the same conversation cannot both
win: the second gets ``AlreadyClaimed``.
"""

from __future__ import annotations

from decimal import Decimal

from deskline.errors import ConcurrencyConflict, DesklineError, UnknownConversation
from deskline.eventlog.events import (
    ActionDecided,
    EscalationClaimed,
    EscalationReleased,
    Event,
    HandoffSent,
    HumanReplied,
    Recorded,
)
from deskline.eventlog.projections import ConversationState, fold, history_at
from deskline.handoffs.plan import PlanStep
from deskline.hierarchy.desk import SupportDesk
from deskline.hierarchy.turn import clean_text

MAX_ATTEMPTS = 10


class HumanCommandError(DesklineError):
    code = "human_command_refused"


class NotEscalated(HumanCommandError):
    code = "not_escalated"


class AlreadyClaimed(HumanCommandError):
    code = "already_claimed"


class NotClaimed(HumanCommandError):
    code = "not_claimed_by_you"


class NoPendingAction(HumanCommandError):
    code = "no_pending_action"


class HumanConsole:
    """What a human agent can do to a conversation, as events."""

    def __init__(self, desk: SupportDesk) -> None:
        self.desk = desk
        self.store = desk.store

    def _load(self, conversation_id: str) -> tuple[ConversationState, list[Recorded]]:
        records = self.store.load(conversation_id)
        if not records:
            raise UnknownConversation(f"no conversation {conversation_id!r}", conversation_id=conversation_id)
        return fold(conversation_id, records), records

    def _append(self, state: ConversationState, events: list[Event]) -> list[Recorded]:
        # Through the desk, so observers (metrics) see human steps too.
        return self.desk.append(state.conversation_id, state.last_seq, max(state.turn_count, 1), events)

    def claim(self, conversation_id: str, agent: str) -> Recorded:
        for _ in range(MAX_ATTEMPTS):
            state, _ = self._load(conversation_id)
            if not state.escalated:
                raise NotEscalated(f"conversation {conversation_id} is not waiting for a person")
            if state.claimed_by == agent:
                raise AlreadyClaimed(f"you already own conversation {conversation_id}", claimed_by=agent)
            if state.claimed_by is not None:
                raise AlreadyClaimed(f"{state.claimed_by} already claimed conversation {conversation_id}",
                                     claimed_by=state.claimed_by)
            try:
                return self._append(state, [EscalationClaimed(agent_name=agent)])[0]
            except ConcurrencyConflict:
                continue
        raise ConcurrencyConflict(f"conversation {conversation_id} kept moving")

    def _owned(self, conversation_id: str, agent: str) -> ConversationState:
        state, _ = self._load(conversation_id)
        if state.claimed_by != agent:
            raise NotClaimed(f"claim conversation {conversation_id} before acting on it",
                             claimed_by=state.claimed_by)
        return state

    def reply(self, conversation_id: str, agent: str, text: str) -> Recorded:
        text = clean_text(text, self.desk.settings.max_message_chars)
        for _ in range(MAX_ATTEMPTS):
            state = self._owned(conversation_id, agent)
            try:
                return self._append(state, [HumanReplied(agent_name=agent, text=text)])[0]
            except ConcurrencyConflict:
                continue
        raise ConcurrencyConflict(f"conversation {conversation_id} kept moving")

    def release(self, conversation_id: str, agent: str, note: str = "") -> Recorded:
        for _ in range(MAX_ATTEMPTS):
            state = self._owned(conversation_id, agent)
            try:
                return self._append(state, [EscalationReleased(agent_name=agent, note=note)])[0]
            except ConcurrencyConflict:
                continue
        raise ConcurrencyConflict(f"conversation {conversation_id} kept moving")

    async def decide_action(self, conversation_id: str, agent: str, approve: bool) -> list[Recorded]:
        """Approve (run it now, once, under its original key) or reject the pending action."""
        state = self._owned(conversation_id, agent)
        pending = state.pending_action
        if pending is None:
            raise NoPendingAction(f"conversation {conversation_id} has no action awaiting approval")
        key = pending.get("idempotency_key", "")
        if not approve:
            return self._append(state, [ActionDecided(agent_name=agent, approved=False, idempotency_key=key)])
        _, records = self._load(conversation_id)
        sent = next((r.event for r in reversed(records)
                     if isinstance(r.event, HandoffSent) and r.event.handoff.idempotency_key == key), None)
        if sent is None:
            raise NoPendingAction(f"the handoff behind {key} is not in the log")
        handoff = sent.handoff
        if sent.history_seqs:  # the history window the step saw, read back from the log
            handoff = handoff.model_copy(update={"case": handoff.case.model_copy(
                update={"history": history_at(records, sent.history_seqs)})})
        approved = handoff.model_copy(update={"constraints": handoff.constraints.model_copy(
            update={"approval_limit": Decimal("Infinity"), "allow_actions": True, "approved_by": agent})})
        step = PlanStep(step_id=handoff.step_id, agent=handoff.agent, skill=handoff.skill)
        result, events = await self.desk.operator.run_step(step, approved)
        text = self.desk.writer_for(state.language).render(result)  # in the conversation's language
        decided: list[Event] = [ActionDecided(agent_name=agent, approved=result.ok, idempotency_key=key,
                                              facts=result.facts), *events]
        if result.ok:
            decided.append(HumanReplied(agent_name=agent, text=text))
        return self._append(state, decided)

