"""The writer: turns the agents' structured results into the reply the customer reads.

The embedded writer fills the skills' own templates from the results' facts. Whatever wrote a
reply, ``ungrounded`` checks it before it is sent: every amount, date and identifier in the
reply must appear in the results (or the customer's own message, for ids they named).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from deskline.agents.registry import Registry
from deskline.handoffs.payload import AgentResult
from deskline.handoffs.plan import Plan

ESCALATED = (
    "I'm passing you to a member of our support team now; they can see everything we've "
    "discussed, so you won't have to repeat yourself. {why}"
)
ESCALATION_WHY = {
    "person": "You asked to speak to a person.",
    "fraud": "Because this may involve fraud or a lost card, a specialist will handle it with priority.",
    "default": "",
}
HELD = ""
CLARIFY = (
    "I want to make sure I send you to the right place. Is this about a technical problem "
    "(logging in, the app), a bill or a charge, or a payment or transfer?"
)
OUT_OF_SCOPE = (
    "I'm the support assistant for your account: I can help with logging in and technical "
    "problems, invoices and charges, and payments and transfers. What can I help you with?"
)
QUESTIONS = {
    "invoice_id": "Could you tell me the invoice number? It starts with INV-.",
    "payment_id": "Could you tell me the payment reference? It starts with PAY-.",
    "charge_id": "Could you tell me the charge reference? It starts with CH-.",
    "amount": "Could you tell me the amount, with its currency?",
    "email": "Could you tell me the email address on your account?",
    "card_last4": "Could you tell me the last four digits of the card?",
}
PENDING_APPROVAL = (
    "{action_text} needs a colleague's approval, so I've passed your case to a person who will "
    "confirm it shortly."
)
FAILED = "I couldn't finish checking this just now, so I've passed it to a person who will follow up."
SKIPPED = "Since that shows {actual} rather than {expected}, I stopped there and did not do the next step."
FALLBACK = (
    "I've looked into this, but I want a person to confirm the details before I answer, so I've "
    "passed your case to our support team."
)

_MONEY = re.compile(r"[$€£]\s?\d[\d,]*(?:\.\d+)?|\b\d[\d,]*(?:\.\d+)?\s?(?:USD|EUR|GBP)\b")
_ID = re.compile(r"\b[A-Z]{1,4}-\d{3,}\b")
_DATE = re.compile(
    r"\b\d{4}-\d{2}-\d{2}\b|\b(?:January|February|March|April|May|June|July|August|September|October"
    r"|November|December)\s+\d{1,2},\s+\d{4}\b"
)


@dataclass(frozen=True, slots=True)
class Reply:
    text: str
    grounded: bool = True
    problems: tuple[str, ...] = ()


def ungrounded(text: str, results: Iterable[AgentResult], said: str = "") -> list[str]:
    """Every amount, date and id in ``text`` that no result (nor the customer) mentions."""
    sources = " ".join(v for r in results for v in r.facts.values()) + " " + said
    found = [*_MONEY.findall(text), *_ID.findall(text), *_DATE.findall(text)]
    return [token for token in dict.fromkeys(found) if token.replace(" ", "") not in sources.replace(" ", "")]


def escalation_text(reasons: Sequence[str]) -> str:
    joined = " ".join(reasons).lower()
    if "asked for a person" in joined:
        why = ESCALATION_WHY["person"]
    elif "fraud" in joined or "stolen" in joined:
        why = ESCALATION_WHY["fraud"]
    else:
        why = ESCALATION_WHY["default"]
    return ESCALATED.format(why=why).strip()


class TemplateWriter:
    """The embedded writer: templates only, no model."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def write(self, plan: Plan, results: Sequence[AgentResult], said: str) -> Reply:
        if plan.mode == "clarify":
            return Reply(OUT_OF_SCOPE if plan.department == "other" and plan.stage != "fallback" else CLARIFY)
        parts = [self.render(r) for r in results]
        text = " ".join(p for p in parts if p)
        problems = tuple(ungrounded(text, results, said))
        return Reply(text=text, grounded=not problems, problems=problems)

    def render(self, result: AgentResult) -> str:
        """One result as the customer reads it."""
        if result.status == "needs_info":
            own = self.registry[result.skill].templates.get(result.template)
            if result.template != "default" and own is not None:
                return own.format(**result.facts)
            return " ".join(QUESTIONS.get(m, f"Could you tell me the {m}?") for m in result.missing[:1])
        if result.status == "pending_approval":
            amount = result.facts.get("amount", "")
            action = result.facts.get("action", "").replace("_", " ")
            what = f"The {action} of {amount}" if action and amount else "This change"
            return PENDING_APPROVAL.format(action_text=what)
        if result.status in ("failed", "escalate"):
            return FAILED
        if result.template == "skipped":
            return SKIPPED.format(**result.facts)
        template = self.registry[result.skill].templates.get(result.template)
        if template is None:
            return FAILED
        return template.format(**result.facts)
