"""The API's request and response bodies: the OpenAPI schema is generated from these.

Requests forbid unknown fields and bound every string, so a typo is a 422 that names the field
rather than a silently ignored option. Message length and emptiness are documented here but
checked by the desk (``clean_text``), so the customer gets the desk's typed error
(``message_too_long``, ``empty_message``, ``invalid_encoding``) with its structured fields.

Customers see a filtered view of their conversation (``ChatEvent``): what was said and who holds
the conversation, never the desk's internal decisions (plans, handoffs, model calls). Human agents
see every event (``ConsoleEvent``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from deskline.eventlog.events import (
    ActionDecided,
    CustomerMessaged,
    EscalationClaimed,
    EscalationReleased,
    HumanReplied,
    Recorded,
    ReplySent,
)
from deskline.handoffs.payload import Department, Mode
from deskline.privacy import has_control

MAX_TEXT_CHARS_DOC = 4000  # the default Settings.max_message_chars; create_app documents the real one
MAX_SEQ = 2**31 - 1
CONVERSATION_ID = r"^[A-Za-z0-9_-]{1,64}$"
PAGE_DEFAULT, PAGE_MAX = 200, 1000  # events per JSON page (``limit``), and per read of a live stream


def control_character(value: str) -> int | None:
    """The index of the first control character (C0, DEL or C1: ``deskline.privacy.has_control``)
    in ``value``, or None.

    Ids end up in database columns and log lines: a NUL is refused by PostgreSQL, and a newline or
    an escape sequence forges log lines.
    """
    if not has_control(value):
        return None
    return next(i for i, c in enumerate(value) if ord(c) < 32 or 0x7F <= ord(c) < 0xA0)


def no_control_characters(value: str | None, what: str) -> str | None:
    if value is not None and (at := control_character(value)) is not None:
        raise ValueError(f"{what} must not contain control characters (U+{ord(value[at]):04X} at index {at})")
    return value

ChatEventType = Literal[
    "conversation_opened",
    "customer_messaged",
    "reply_sent",
    "turn_held",
    "escalation_requested",
    "escalation_claimed",
    "human_replied",
    "escalation_released",
    "action_decided",
]
CHAT_EVENT_TYPES: frozenset[str] = frozenset(ChatEventType.__args__)  # type: ignore[attr-defined]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Response(BaseModel):
    model_config = ConfigDict(frozen=True)


def _text(description: str) -> Any:
    # Bounds are documented (and enforced by clean_text with a typed error), not enforced here.
    return Field(description=description, json_schema_extra={"minLength": 1, "maxLength": MAX_TEXT_CHARS_DOC})


class MessageIn(_Request):
    text: str = _text("What the customer wrote. Must contain a non-blank character.")
    client_message_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="Your id for this message: a resend with the same id returns the first result. "
                    "No control characters.",
    )

    @field_validator("client_message_id")
    @classmethod
    def _printable_id(cls, value: str | None) -> str | None:
        return no_control_characters(value, "client_message_id")


class HumanMessageIn(_Request):
    text: str = _text("What the human agent writes to the customer.")


class ReleaseIn(_Request):
    note: str = Field(default="", max_length=1000, description="Why the conversation goes back to the bot.")


class Error(_Response):
    """Every error body: a stable code, a sentence for people, and the error's own fields."""

    model_config = ConfigDict(frozen=True, extra="allow")
    error: str = Field(description="A stable machine-readable code, e.g. message_too_long.")
    message: str = Field(description="What went wrong, in a sentence.")


class OpenConversationIn(_Request):
    customer_token: str | None = Field(
        default=None, min_length=1, max_length=8192,
        description="A short-lived JWT the host site signed naming its signed-in customer (`sub`). Without "
                    "one the conversation is anonymous: general questions only, no actions, no account data.")


class VerifyIn(_Request):
    customer_token: str = Field(min_length=1, max_length=8192,
                                description="A fresh JWT from the host site naming the same customer.")


class ConversationCreated(_Response):
    id: str
    token: str = Field(description="Bearer token for this conversation only; shown once.")
    anonymous: bool = Field(default=False, description="True when no host site vouched for the customer.")


class TurnOut(_Response):
    conversation_id: str
    turn: int
    message_seq: int = Field(description="Sequence number of the customer's message in the event log.")
    reply: str | None = Field(description="The bot's reply; null while a person owns the conversation.")
    department: Department
    mode: Mode
    escalated: bool
    llm_calls: int
    intent: str
    confidence: float
    stage: str
    language: str | None = Field(default=None, description="The language the desk answered in (e.g. en, es, zh).")


class ChatEvent(_Response):
    seq: int
    turn: int
    type: ChatEventType
    at: float = Field(description="When it was recorded, seconds since the epoch.")
    text: str | None = None
    agent: str | None = Field(default=None, description="The human agent, for human steps.")
    department: Department | None = None
    mode: Mode | None = None
    escalated: bool | None = None
    approved: bool | None = None
    client_message_id: str | None = None
    language: str | None = Field(default=None, description="For customer messages: the language the desk answers "
                                                           "it in.")


_NEXT_AFTER = Field(description="More events follow: pass this as ?after= for the next page. Null when this page "
                               "reached the end of the log (so far).")


class ChatEvents(_Response):
    conversation_id: str
    events: list[ChatEvent]
    last_seq: int = Field(description="The last sequence number read (pass it as ?after= next time).")
    next_after: int | None = _NEXT_AFTER


class ConsoleEvent(_Response):
    seq: int
    turn: int
    type: str
    at: float
    data: dict[str, Any] = Field(description="The event as recorded.")


class ConsoleEvents(_Response):
    conversation_id: str
    events: list[ConsoleEvent]
    last_seq: int
    next_after: int | None = _NEXT_AFTER


class CommandOut(_Response):
    conversation_id: str
    events: list[ConsoleEvent] = Field(description="What the command appended to the log.")


class QueueItem(_Response):
    conversation_id: str
    reason: str
    priority: int = Field(description="1 is the most urgent.")
    summary: str
    actions_taken: list[str]
    pending_action: dict[str, str] | None = Field(description="An action waiting for approval.")
    requested_at: float
    waiting_s: float
    claimed_by: str | None
    claimed_at: float | None
    sla_breached: bool = Field(description="Unclaimed for longer than the SLA allows.")
    language: str | None = Field(default=None, description="The conversation's language (e.g. en, es, zh).")


class QueueOut(_Response):
    sla_seconds: float
    entries: list[QueueItem]


class AgentOut(_Response):
    name: str


def chat_event(r: Recorded) -> ChatEvent | None:
    """The customer's view of one event, or None for the desk's internal decisions."""
    e = r.event
    if e.type not in CHAT_EVENT_TYPES:
        return None
    fields: dict[str, Any] = {"seq": r.seq, "turn": r.turn, "type": e.type, "at": r.at}
    if isinstance(e, CustomerMessaged):
        fields.update(text=e.text, client_message_id=e.client_message_id, language=e.language)
    elif isinstance(e, ReplySent):
        fields.update(text=e.text, department=e.department, mode=e.mode, escalated=e.escalated)
    elif isinstance(e, HumanReplied):
        fields.update(text=e.text, agent=e.agent_name)
    elif isinstance(e, EscalationClaimed | EscalationReleased):
        fields.update(agent=e.agent_name)  # the release note is for the desk, not the customer
    elif isinstance(e, ActionDecided):
        fields.update(agent=e.agent_name, approved=e.approved)
    return ChatEvent(**fields)


def console_event(r: Recorded) -> ConsoleEvent:
    return ConsoleEvent(seq=r.seq, turn=r.turn, type=r.event.type, at=r.at, data=r.event.model_dump(mode="json"))
