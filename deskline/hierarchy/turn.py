"""What a turn gives back to its caller, and the customer's text as the desk accepts it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal

from deskline.errors import EmptyMessage, InvalidEncoding, MessageTooLong
from deskline.eventlog.projections import ConversationState, TurnView
from deskline.handoffs.payload import OTHER, Department, Mode


@dataclass(frozen=True, slots=True)
class TurnResult:
    conversation_id: str
    turn: int
    message_seq: int
    reply: str | None
    department: Department
    mode: Mode
    escalated: bool
    llm_calls: int
    events: int
    cost_usd: Decimal = Decimal(0)
    latency_ms: float = 0.0
    duplicate: bool = False
    intent: str = ""
    confidence: float = 0.0
    stage: str = ""
    language: str | None = None  # the language the desk answered in

    def to_dict(self) -> dict[str, object]:
        return {
            "conversation_id": self.conversation_id,
            "turn": self.turn,
            "message_seq": self.message_seq,
            "reply": self.reply,
            "department": self.department,
            "mode": self.mode,
            "escalated": self.escalated,
            "llm_calls": self.llm_calls,
            "cost_usd": float(self.cost_usd),
            "latency_ms": self.latency_ms,
            "events": self.events,
            "duplicate": self.duplicate,
            "intent": self.intent,
            "confidence": round(self.confidence, 4),
            "stage": self.stage,
            "language": self.language,
        }


def new_conversation_id() -> str:
    return "c_" + uuid.uuid4().hex[:16]


def clean_text(text: str | bytes, limit: int) -> str:
    """The customer's message, or a typed error saying why it cannot be taken."""
    from deskline.privacy import normalise_text

    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidEncoding(f"the message is not valid UTF-8 (byte {exc.start})", position=exc.start) from exc
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates: undecodable bytes smuggled in as str
        raise InvalidEncoding(f"the message is not valid UTF-8 (character {exc.start})",
                              position=exc.start) from exc
    if len(text) > 4 * limit:  # too long however it normalises; spare NFKC a huge input
        raise MessageTooLong(f"the message has {len(text)} characters; the limit is {limit}",
                             length=len(text), limit=limit)
    text = normalise_text(text)  # full-width digits as ASCII; no bidi controls or zero-width characters
    if not text.strip():
        raise EmptyMessage("the message is empty")
    if len(text) > limit:
        raise MessageTooLong(f"the message has {len(text)} characters; the limit is {limit}",
                             length=len(text), limit=limit)
    return text.strip()


def result_of(state: ConversationState, turn: TurnView, *, appended: int, duplicate: bool = False) -> TurnResult:
    return TurnResult(
        conversation_id=state.conversation_id,
        turn=turn.turn,
        message_seq=turn.message_seq,
        reply=turn.reply,
        department=turn.department or OTHER,
        mode=turn.mode or "clarify",
        escalated=turn.escalated,
        llm_calls=turn.llm_calls,
        events=appended,
        duplicate=duplicate,
        intent=turn.intent,
        confidence=turn.confidence,
        cost_usd=turn.cost_usd,
        latency_ms=turn.latency_ms,
        stage=turn.stage,
        language=turn.language,
    )
