"""The writer: turns the agents' structured results into the reply the customer reads.

The embedded writer fills the skills' own templates from the results' facts, and the desk's
texts (``Desk.texts``) where no template speaks. Whatever wrote a
reply, ``ungrounded`` checks it before it is sent: every amount, date and identifier in the
reply must appear in the results (or the customer's own message, for ids they named).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from deskline.definition import Desk
from deskline.handoffs.payload import OTHER, AgentResult
from deskline.handoffs.plan import Plan
from deskline.hierarchy.checks import ungrounded
from deskline.i18n.formats import localise_facts

__all__ = ["Reply", "TemplateWriter", "ungrounded"]


@dataclass(frozen=True, slots=True)
class Reply:
    text: str
    grounded: bool = True
    problems: tuple[str, ...] = ()


class TemplateWriter:
    """The embedded writer: templates only, no model, in one of the desk's languages (default:
    its own); facts shown as that language writes amounts, dates and the catalogue's words."""

    def __init__(self, desk: Desk, language: str | None = None) -> None:
        self.language: str = language if language and language in desk.languages else desk.default_language
        self.desk = desk.in_language(self.language)
        self.catalog = desk.catalog_map.get(self.language)
        self.registry = self.desk.registry
        self.texts = self.desk.texts

    def facts(self, facts: Mapping[str, str]) -> dict[str, str]:
        """``facts`` as the customer reads them in the writer's language."""
        if self.language == "en" and self.catalog is None:
            return dict(facts)
        return localise_facts(facts, self.language, self.catalog)

    def write(self, plan: Plan, results: Sequence[AgentResult], said: str) -> Reply:
        if plan.mode == "clarify":
            out_of_scope = plan.department == OTHER and plan.stage != "fallback"
            return Reply(self.texts.out_of_scope if out_of_scope else self.texts.clarify)
        parts = [self.render(r) for r in results]
        text = " ".join(p for p in parts if p)
        # The desk's own texts (its questions, "sign in", "I couldn't finish") are its words, not
        # claims about a record: only what a result's facts filled in is checked.
        checked = " ".join(p for p, r in zip(parts, results, strict=True) if p and not self._desk_text(r))
        problems = tuple(ungrounded(checked, results, said))
        return Reply(text=text, grounded=not problems, problems=problems)

    def _desk_text(self, result: AgentResult) -> bool:
        """Whether ``render`` answers ``result`` with one of the desk's fixed texts."""
        own = self.registry[result.skill].templates if result.skill in self.registry else {}
        if result.status == "needs_info":
            return result.template == "default" or result.template not in own
        if result.status in ("unverified", "failed", "escalate"):
            return True
        return result.status == "ok" and result.template != "skipped" and result.template not in own

    def render(self, result: AgentResult) -> str:
        """One result as the customer reads it."""
        if result.status == "needs_info":
            own = self.registry[result.skill].templates.get(result.template)
            if result.template != "default" and own is not None:
                return own.format(**self.facts(result.facts))
            return " ".join(self.desk.extractor.question(m) for m in result.missing[:1])
        if result.status == "unverified":
            return self.texts.verify_again if result.template == "verify_again" else self.texts.sign_in
        if result.status == "pending_approval":
            facts = self.facts(result.facts)
            amount, action = facts.get("amount", ""), facts.get("action", "").replace("_", " ")
            what = (self.texts.pending_action.format(action=action, amount=amount) if action and amount
                    else self.texts.pending_change)
            return self.texts.pending_approval.format(action_text=what)
        if result.status in ("failed", "escalate"):
            return self.texts.failed
        if result.template == "skipped":
            return self.texts.skipped.format(**self.facts(result.facts))
        template = self.registry[result.skill].templates.get(result.template)
        if template is None:
            return self.texts.failed
        return template.format(**self.facts(result.facts))
