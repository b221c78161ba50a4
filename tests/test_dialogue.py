"""Conversations, not single messages: follow-ups, offers the customer can accept or decline,
corrections, references by name, thanks, and a way on after an escalation."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from deskline.eventlog.events import ActionCompleted, PlanMade
from deskline.handoffs.payload import Entities, Offer, Topic
from deskline.hierarchy import dialogue
from deskline.runtime import memory_desk
from tests.fakes import BUILTIN, FixedPrediction


@pytest.fixture
def desk():  # type: ignore[no-untyped-def]
    return memory_desk()


def talk(desk: Any, cid: str, *texts: str) -> list[Any]:
    return [asyncio.run(desk.handle(cid, t)) for t in texts]


def actions(desk: Any, cid: str) -> list[str]:
    return [r.event.action for r in desk.store.load(cid) if isinstance(r.event, ActionCompleted)]


def test_a_follow_up_continues_the_topic_with_its_entities(desk: Any) -> None:
    """'how long does it usually take?' after the landlord transfer stays with payment and PAY-3001."""
    first, second = talk(desk, "c1", "my transfer to my landlord hasn't arrived", "how long does it usually take?")
    assert first.department == second.department == "payment"
    assert second.stage == "dialogue" and "PAY-3001" in (second.reply or "") and "March 17, 2025" in (second.reply or "")


def test_yes_please_runs_the_offer_behind_the_approval_gate(desk: Any) -> None:
    """The desk offers to refund INV-1003's duplicate; 'yes please' runs it, and $750 stops for a person."""
    offer, yes = talk(desk, "c1", "what about invoice INV-1003?", "yes please")
    assert "refund the duplicate" in (offer.reply or "")
    assert yes.escalated and "approval" in (yes.reply or "") and actions(desk, "c1") == []
    assert desk.states.load("c1").pending_action is not None


def test_accepting_an_offer_under_the_limit_acts_once(desk: Any) -> None:
    """'go ahead' after INV-1001's offer refunds the duplicate once; a second 'yes' finds no open offer."""
    _, done, again = talk(desk, "c1", "is anything odd with invoice INV-1001?", "go ahead", "yes")
    assert "refunded the duplicate charge CH-2002" in (done.reply or "")
    assert actions(desk, "c1") == ["billing.review_duplicate_charge"]
    assert again.reply == BUILTIN.texts.clarify and actions(desk, "c1") == ["billing.review_duplicate_charge"]


def test_no_thanks_declines_and_changes_nothing(desk: Any) -> None:
    """Declining the offer closes it: nothing runs, and a later 'yes' does not revive it."""
    talk(desk, "c1", "tell me about invoice INV-1003")
    no, yes = talk(desk, "c1", "no thanks", "yes")
    assert no.reply == BUILTIN.texts.declined and desk.states.load("c1").offer is None
    assert yes.reply == BUILTIN.texts.clarify and actions(desk, "c1") == []


def test_a_payee_named_resolves_to_its_payment_and_try_again_retries_it(desk: Any) -> None:
    """'my payment to Brightwater Utilities failed' finds PAY-3002; 'please try it again' retries that payment."""
    failed, retried = talk(desk, "c1", "my payment to Brightwater Utilities failed", "please try it again")
    assert "PAY-3002" in (failed.reply or "") and "failed" in (failed.reply or "")
    assert "resubmitted payment PAY-3002" in (retried.reply or "")


def test_i_didnt_get_the_email_resends_instead_of_escalating(desk: Any) -> None:
    """After a reset link, 'I didn't get the email' sends it again (a new step), no person needed."""
    _, again = talk(desk, "c1", "I forgot my password", "I didn't get the email")
    assert not again.escalated and "reset link" in (again.reply or "")
    assert actions(desk, "c1") == ["tech.reset_password", "tech.reset_password"]


def test_a_correction_by_description_resolves_from_the_records(desk: Any) -> None:
    """'sorry, I meant the open one' after INV-1002 looks up the customer's open invoice, INV-1004."""
    _, corrected = talk(desk, "c1", "can you check invoice INV-1002", "sorry, I meant the open one")
    assert "INV-1004" in (corrected.reply or "") and "open" in (corrected.reply or "")
    plan = [r.event for r in desk.store.load("c1") if isinstance(r.event, PlanMade)][-1]
    assert plan.plan.stage == "dialogue" and plan.plan.verdicts[-1].intent == "correction"


def test_a_question_about_an_action_never_takes_it(desk: Any) -> None:
    """'why is it locked?' after the locked-account answer explains; the unlock on offer does not run."""
    _, why = talk(desk, "c1", "I can't log in to my account", "why is it locked?")
    assert "failed sign-in attempts" in (why.reply or "") and actions(desk, "c1") == []


def test_a_confident_new_topic_switches(desk: Any) -> None:
    """A clear request for another department leaves the topic, even with an offer open."""
    _, switched = talk(desk, "c1", "check INV-1003 for me", "actually my transfer to my landlord hasn't arrived")
    assert switched.department == "payment" and "PAY-3001" in (switched.reply or "")
    assert desk.states.load("c1").topic.agent == "payment"  # type: ignore[union-attr]


def test_thanks_and_goodbye_get_the_desks_words(desk: Any) -> None:
    """Courtesies get the desk's texts, not the out-of-scope reply."""
    _, thanks, bye = talk(desk, "c1", "what's my balance?", "great, thanks!", "bye")
    assert thanks.reply == BUILTIN.texts.thanks and bye.reply == BUILTIN.texts.goodbye


def test_an_offer_expires(desk: Any) -> None:
    """An offer is open for two turns; a 'yes' after that asks what the customer means."""
    *_, late = talk(desk, "c1", "look at invoice INV-1003", "what is my balance?", "is the app working?", "yes")
    assert late.reply == BUILTIN.texts.clarify and not late.escalated


# -- the pure step ----------------------------------------------------------------------------


def _step(text: str, prediction: FixedPrediction, topic: Topic | None = None, offer: Offer | None = None,
          turn: int = 2) -> dialogue.Move | None:
    return dialogue.step(topic=topic, offer=offer, turn=turn, text=text, named=BUILTIN.extractor(text),
                         referred=Entities(), prediction=prediction, registry=BUILTIN.registry,
                         agent_for=BUILTIN.agent_departments, thanks="T", goodbye="B", declined="D", unclear="U")


TOPIC = Topic(department="billing", agent="billing", skill="billing.lookup_invoice",
              entities=Entities.of(invoice_id="INV-1003"), turn=1)
OFFER = Offer(skill="billing.review_duplicate_charge", entities=Entities.of(invoice_id="INV-1003"), turn=1)


def test_the_classifier_and_the_state_decide_together() -> None:
    """'yes' confirms an open offer unless the classifier is sure of another department; without a topic
    'and when is it due?' is not a follow-up; a long new request is the cascade's."""
    unsure = FixedPrediction("other", "x", 0.3, abstain=True)
    sure_tech = FixedPrediction("tech", "service_outage", 0.99)
    assert _step("yes", unsure, TOPIC, OFFER).act == "confirm"  # type: ignore[union-attr]
    assert _step("yes, is the app down?", sure_tech, TOPIC, OFFER) is None
    assert _step("and when is it due?", unsure) is None
    assert _step("and when is it due?", unsure, TOPIC).act == "follow_up"  # type: ignore[union-attr]
    long = "I also wanted to ask you about something completely different regarding the mobile application today"
    assert _step(long, unsure, TOPIC) is None
    assert _step("yes", unsure, TOPIC, OFFER, turn=4).reply == "U"  # type: ignore[union-attr]


def test_the_planner_sees_the_conversation() -> None:
    """With a model configured, the planner's hint carries the topic, the open offer and the last reply."""
    from deskline.eventlog.projections import ConversationState
    from deskline.hierarchy.tactical import _context

    state = ConversationState("c", topic=TOPIC, offer=OFFER)
    text = _context(state)
    assert "billing.lookup_invoice (invoice_id=INV-1003)" in text and "offered to run billing.review_duplicate_charge" in text


def test_the_dialogue_works_for_another_desk(tmp_path: Path) -> None:
    """The telco desk's own texts answer thanks, and follow-ups keep its own entities."""
    from deskline import Settings
    from tests.desks import telco
    from tests.test_other_desk import DESKS

    out = tmp_path / "telco.bin"
    from deskline.cli import app

    assert CliRunner().invoke(app, ["train", str(DESKS / "telco_examples.csv"), "--out", str(out), "--no-cv"]).exit_code == 0
    other = memory_desk(Settings(router_path=out), desk=telco.desk)
    first, follow, thanks = talk(other, "t1", "how much data is left on LN-5551", "and what plan is it on?", "thanks!")
    assert "LN-5551" in (follow.reply or "") and follow.stage == "dialogue"
    assert thanks.reply == telco.desk.texts.thanks


def test_chat_after_an_escalation_says_where_it_waits_and_offers_new(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """`deskline chat` never leaves the user stuck: it names the console and /new starts afresh."""
    from deskline.cli import app

    monkeypatch.setenv("DESKLINE_DATABASE_URL", f"sqlite:///{tmp_path}/chat.db")
    typed = "I want to talk to a real person\nhello?\n/new\nis the app down?\n/quit\n"
    result = CliRunner().invoke(app, ["chat"], input=typed)
    assert result.exit_code == 0, result.output
    assert result.output.count("support console") == 2 and "/new" in result.output
    assert "starting a new one" in result.output and "I don't see any problem" in result.output


def test_the_multi_turn_set_is_shipped_and_large_enough() -> None:
    """At least 40 conversations and 100 turns, every one labelled."""
    rows = [json.loads(line) for line in (Path(__file__).parents[1] / "bench" / "data" / "conversations.jsonl")
            .read_text(encoding="utf-8").splitlines()]
    assert len({r["conversation_id"] for r in rows}) >= 40 and len(rows) >= 100


def test_an_offer_is_accepted_over_the_http_api(sqlite_url: str) -> None:
    """Through the web API: the desk offers the retry, 'please try it again' runs it once."""
    from tests.test_api import live_apps

    with live_apps(sqlite_url) as make:
        live = make()
        cid, headers = live.customer()
        failed = live.say(cid, headers, "my payment to Brightwater Utilities failed")
        assert "PAY-3002" in failed["reply"] and "retry" in failed["reply"]
        retried = live.say(cid, headers, "please try it again")
        assert "resubmitted payment PAY-3002" in retried["reply"]
        assert live.say(cid, headers, "thanks!")["reply"] == BUILTIN.texts.thanks
