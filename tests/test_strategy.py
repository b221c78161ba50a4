"""Strategy layer: pure rules over the folded state."""

from decimal import Decimal

from deskline.config import Settings
from deskline.eventlog.projections import ConversationState
from deskline.agents.builtin import desk as BUILTIN
from deskline.hierarchy.strategy import decide, sentiment

extract = BUILTIN.extractor

SETTINGS = Settings()


def strategy_for(text: str, state: ConversationState | None = None, settings: Settings = SETTINGS):
    return decide(state or ConversationState("c"), text, extract(text), settings, BUILTIN)


def test_ordinary_question_is_answered_by_the_bot() -> None:
    """A plain support question leaves the bot in charge with default budgets."""
    s = strategy_for("I forgot my password")
    assert (s.owner, s.action) == ("bot", "answer")
    assert s.constraints.max_llm_calls == 2


def test_explicit_request_for_a_person_escalates() -> None:
    """Asking for a real person escalates at once, with the reason recorded."""
    for text in ("I want to talk to a real person", "can I speak to a human please", "get me a manager"):
        s = strategy_for(text)
        assert s.action == "escalate", text
        assert "asked for a person" in s.reasons[0]


def test_fraud_and_stolen_cards_escalate_with_top_priority() -> None:
    """Fraud and stolen cards go to a person first in the queue."""
    for text in ("my card was stolen yesterday", "there's a charge I didn't make this morning, fraud?"):
        s = strategy_for(text)
        assert s.action == "escalate" and s.priority == 1, text


def test_three_failed_turns_hand_over() -> None:
    """After three failed bot turns in a row the fourth goes to a person."""
    assert strategy_for("hmm", ConversationState("c", failed_streak=2)).action == "answer"
    s = strategy_for("hmm", ConversationState("c", failed_streak=3))
    assert s.action == "escalate" and "3 failed bot turns" in s.reasons[0]


def test_repeated_anger_escalates() -> None:
    """A second angry message in a row goes to a person; a first one does not."""
    angry = "this is ridiculous and useless"
    assert sentiment(angry) < 0
    assert strategy_for(angry).action == "answer"
    assert strategy_for(angry, ConversationState("c", negative_streak=1)).action == "escalate"


def test_human_owner_keeps_the_bot_silent() -> None:
    """While a person owns the conversation the bot holds."""
    s = strategy_for("hello?", ConversationState("c", owner="human", claimed_by="dana"))
    assert (s.owner, s.action) == ("human", "hold")


def test_amount_above_limit_is_noted() -> None:
    """An amount above the approval limit is recorded as a reason for the gate."""
    s = strategy_for("refund me $5,000", settings=Settings(approval_limit=Decimal("500")))
    assert any("above the approval limit" in r for r in s.reasons)
