"""The desk definition: everything domain-specific about a support desk, in one object.

    from deskline import Agent, Desk, Skill, id_entity

    desk = Desk(
        name="shop",
        agents=[Agent("orders", "Order status, cancellations and returns")],
        skills=[Skill(name="orders.status", agent="orders", ...)],
        entities=[id_entity("order_id", "ORD")],
        open_records=lambda ctx: ShopRecords(ctx.database_url),
        router="router.bin",
    )

The framework (strategy, triage, operation, writer, event log, API, evals, CLI) reads names,
texts and rules from the loaded ``Desk`` and from nothing else; ``load_desk`` validates it, and a
broken definition raises ``DeskDefinitionError`` listing every problem at once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deskline.agents.registry import ActionPolicy, Registry, Skill
from deskline.agents.remote import RemoteAgent, remote_skill
from deskline.definition.workflow import Workflow, load_workflows
from deskline.handoffs.entities import EntityType, Extractor
from deskline.handoffs.payload import RESERVED_DEPARTMENTS

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from deskline.i18n.catalog import Catalog
    from deskline.routing.classifier import Classifier


@dataclass(frozen=True, slots=True)
class Agent:
    """A specialist of the desk: its name, the department the router sends to it, what it does
    (the model planner reads it) and the skill it falls back on when no skill claims a message
    (default: its first skill that only reads). ``remote``: the agent is served over HTTP by
    another service (``deskline agent-server``); its skills are still declared here, and the
    desk calls the service to run them instead of their functions."""

    name: str
    description: str = ""
    department: str = ""
    default_skill: str = ""
    remote: RemoteAgent | None = None

    @property
    def routes_from(self) -> str:
        return self.department or self.name


@dataclass(frozen=True, slots=True)
class EscalationRule:
    """A reason to hand the conversation to a person before any agent runs.

    ``matches(text)`` decides (or give ``pattern``, a regular expression searched case-blind);
    ``reason`` is recorded on the events and shown to the person; ``reply`` is what the customer
    reads (default: the desk's ``texts.escalated``); priority 1 is the most urgent."""

    name: str
    reason: str
    pattern: str = ""
    matches: Callable[[str], bool] | None = None
    reply: str = ""
    priority: int = 2

    def __call__(self, text: str) -> bool:
        if self.matches is not None:
            return bool(self.matches(text))
        if not self.pattern:
            return False
        compiled, lower = _compiled(self.pattern)
        return compiled.search(text.lower() if lower else text) is not None


_PATTERNS: dict[str, tuple[re.Pattern[str], bool]] = {}
_ESCAPE = re.compile(r"\\.")


def _compiled(pattern: str) -> tuple[re.Pattern[str], bool]:
    """The pattern, searched case-blind, and whether to search the lower-cased text with it.

    A pattern with no capital letter (outside escapes such as ``\\S``) is compiled as it is and
    searched on ``text.lower()``: the same matches as ``re.IGNORECASE``, 2-3 times faster for the
    long alternations escalation rules are (every turn runs them)."""
    found = _PATTERNS.get(pattern)
    if found is None:
        lower = not any(c.isupper() for c in _ESCAPE.sub("", pattern))
        found = _PATTERNS[pattern] = (re.compile(pattern) if lower else re.compile(pattern, re.IGNORECASE), lower)
    return found


ASKS_FOR_PERSON = (
    r"\b(?:speak|talk|chat)\s+(?:to|with)\s+(?:a\s+|an\s+|your\s+|the\s+)?"
    r"(?:real\s+|actual\s+|live\s+)?(?:person|human|agent|representative|rep|operator|manager|supervisor"
    r"|someone|somebody|staff)\b"
    r"|\b(?:want|need|get|give|connect|transfer|put)\s+(?:me\s+)?(?:through\s+)?(?:to\s+|with\s+)?"
    r"(?:a\s+|an\s+)?(?:real|actual|live|human)\s+(?:person|agent|human|being|representative|operator)\b"
    r"|\b(?:connect|transfer|put)\s+me\s+(?:through\s+)?(?:to|with)\s+(?:a\s+|an\s+)?"
    r"(?:person|human|agent|representative|operator|manager|supervisor)\b"
    r"|\b(?:human|agent|operator|representative)\s+please\b|\bget\s+me\s+a\s+(?:human|person|manager)\b"
    # Spanish: "quiero hablar con una persona", "pásame con un agente", "atención humana"
    r"|\b(?:hablar|comunicarme|contactar|chatear)\s+con\s+(?:una\s+|un\s+|alg[uú]n\s+|el\s+|la\s+)?"
    r"(?:persona|humano|agente|asesor|asesora|operador|operadora|representante|encargad[oa]|supervisor|gerente)\b"
    r"|\b(?:p[aá]same|p[aá]seme|comun[ií]came|con[eé]ctame|transfi[eé]reme)\s+con\s+(?:una\s+|un\s+)?"
    r"(?:persona|humano|agente|asesor|operador|representante)\b"
    r"|\b(?:persona|agente|asesor)\s+(?:real|humano|humana)\b|\batenci[oó]n\s+humana\b"
    # Chinese: 转人工, 人工客服, 找个真人, 我要跟人工说
    r"|转人工|人工客服|人工服务|找(?:个|一个)?(?:真人|人工|客服人员|经理)|(?:真人|人工)(?:来|帮|处理|接)"
    r"|(?:跟|和|同)(?:真人|人工|客服人员|你们经理)(?:说|谈|聊|沟通)"
)


def asks_for_person(reply: str = "") -> EscalationRule:
    """The rule every desk starts with: the customer asks for a person."""
    return EscalationRule(name="asked_for_person", reason="the customer asked for a person",
                          pattern=ASKS_FOR_PERSON, reply=reply)


@dataclass(frozen=True, slots=True)
class Policies:
    """What the desk allows: the approval limit above which an action waits for a person, the
    escalation rules checked on every message, in order (the first that matches wins), and the
    rules an action skill must pass to act on its own (``actions``: skill name -> ``ActionPolicy``,
    e.g. "a refund only for a real duplicate"); what a rule refuses goes to a person's approval
    with the rule's reason."""

    approval_limit: Decimal = Decimal("500")
    escalations: tuple[EscalationRule, ...] = (asks_for_person(),)
    actions: Mapping[str, ActionPolicy] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Texts:
    """The desk's own words, for replies no skill template writes.

    ``pending_approval`` may use ``{action_text}``; ``skipped`` ``{actual}`` and ``{expected}``;
    ``unsupported_language`` ``{languages}``; ``pending_action`` ``{action}`` and ``{amount}``."""

    greeting: str = "Hello! What can I help you with today?"
    clarify: str = ("I want to make sure I send you to the right place. Could you tell me a little more about "
                    "what you need?")
    out_of_scope: str = "I'm this service's support assistant. What can I help you with?"
    holding: str = ("I've looked into this, but I want a person to confirm the details before I answer, so I've "
                    "passed your case to our support team.")
    escalated: str = ("I'm passing you to a member of our support team now; they can see everything we've "
                      "discussed, so you won't have to repeat yourself.")
    failed: str = "I couldn't finish checking this just now, so I've passed it to a person who will follow up."
    pending_approval: str = ("{action_text} needs a colleague's approval, so I've passed your case to a person who "
                             "will confirm it shortly.")
    skipped: str = "Since that shows {actual} rather than {expected}, I stopped there and did not do the next step."
    with_person: str = "A person from our team is handling this conversation; they will answer here."
    sign_in: str = ("I can answer general questions here, but to look at your account or change anything "
                    "you need to sign in first.")
    verify_again: str = "For your security, please sign in again to confirm it's you before I make this change."
    thanks: str = "You're welcome! Is there anything else I can help with?"
    goodbye: str = "Thanks for getting in touch. Goodbye!"
    declined: str = "No problem, I won't do that. Is there anything else I can help with?"
    chat_banner: str = "Ask the desk anything it handles."
    unsupported_language: str = "I'm sorry, I can only help in {languages}. Could you write to me in one of them?"
    pending_action: str = "The {action} of {amount}"
    pending_change: str = "This change"


@dataclass(frozen=True, slots=True)
class RecordsContext:
    """What ``Desk.open_records`` gets: the desk's database (None when the desk runs in memory)."""

    engine: Engine | None
    database_url: str | None


@dataclass(frozen=True)
class Desk:
    """A support desk: its departments, agents, skills, entities, system of record, router,
    policies and texts. See the module docstring for an example.

    * ``departments``: what the router may answer; default the agents' departments. ``human``
      (a person) and ``other`` (outside the desk) are the framework's and always present.
    * ``records``: the system of record the skills receive as ``call.records`` (any object), or
      ``open_records(context)`` building it on the desk's database (or in memory when the
      context's engine is None).
    * ``router``: a router file made by ``deskline train``.
    * ``default_customer``: whom a conversation belongs to when the caller names nobody.
    * ``training_data``: the files the router was trained on; the eval suite flags queries
      found in them (a figure measured on training rows says so).
    * ``workflows``: declared procedures (``Workflow``, or a YAML file of them) the triage may
      choose as a whole plan; see ``deskline.definition.workflow``.
    * ``migrations``: the Alembic folder of the desk's own tables, if it has any; see ``deskline.eventlog.desk_schema``.
    * ``languages``: the languages the desk answers in, its default (the language of its texts
      and templates) first; ``catalogs`` the folder of the others' catalogues (``es.po``...),
      see ``deskline.i18n.catalog``. A message in any other language is answered, politely, in
      the default language.
    """

    name: str
    agents: Sequence[Agent]
    skills: Sequence[Skill]
    entities: Sequence[EntityType] = ()
    router: Path | str | None = None
    records: Any = None
    open_records: Callable[[RecordsContext], Any] | None = None
    policies: Policies = field(default_factory=Policies)
    texts: Texts = field(default_factory=Texts)
    departments: Sequence[str] = ()
    default_customer: str = "customer"
    description: str = ""
    training_data: Sequence[Path] = ()
    workflows: Sequence[Workflow | Path] = ()
    migrations: Path | None = None
    languages: Sequence[str] = ("en",)
    catalogs: Path | str | None = None

    @property
    def default_language(self) -> str:
        return self.languages[0] if self.languages else "en"

    @cached_property
    def catalog_map(self) -> dict[str, Catalog]:
        """The catalogue of each declared language but the default (read once; a catalogue that
        cannot be read raises ``CatalogError``, which ``validate`` reports as a problem)."""
        from deskline.i18n.catalog import read_catalog

        if self.catalogs is None:
            return {}
        folder = Path(self.catalogs)
        return {lang: read_catalog(folder / f"{lang}.po", lang) for lang in self.languages[1:]}

    def in_language(self, language: str | None) -> Desk:
        """This desk speaking ``language``: its texts, templates, entity questions and escalation
        replies from that language's catalogue (what it lacks stays as written). The desk itself
        for its default language, or one it does not declare."""
        if not language or language == self.default_language or language not in self.languages:
            return self
        return self._spoken.get(language) or self._speak(language)

    @cached_property
    def _spoken(self) -> dict[str, Desk]:
        return {}

    def _speak(self, language: str) -> Desk:
        catalog = self.catalog_map.get(language)
        if catalog is None:
            return self
        texts = {f.name: catalog(f"text.{f.name}", getattr(self.texts, f.name)) for f in fields(self.texts)}
        spoken = replace(
            self,
            texts=Texts(**texts),
            skills=tuple(replace(s, templates={k: catalog(f"template.{s.name}.{k}", v) for k, v in s.templates.items()})
                         for s in self.skills),
            entities=tuple(replace(e, question=catalog(f"question.{e.name}", e.question)) for e in self.entities),
            policies=replace(self.policies, escalations=tuple(
                replace(r, reply=catalog(f"escalation.{r.name}", r.reply) if r.reply else r.reply)
                for r in self.policies.escalations)),
        )
        self._spoken[language] = spoken
        return spoken

    @property
    def all_departments(self) -> tuple[str, ...]:
        """The desk's departments, then ``human`` and ``other``."""
        own = tuple(self.departments) or tuple(dict.fromkeys(a.routes_from for a in self.agents))
        return (*own, *(d for d in RESERVED_DEPARTMENTS if d not in own))

    @property
    def agent_departments(self) -> dict[str, str]:
        """Department -> the agent the router's department sends a message to."""
        return {a.routes_from: a.name for a in self.agents}

    @cached_property
    def registry(self) -> Registry:
        """The skills the desk runs: a remote agent's skills call its service."""
        remote = {a.name: a.remote for a in self.agents if a.remote is not None}
        skills = [remote_skill(s, remote[s.agent]) if s.agent in remote else s for s in self.skills]
        return Registry(skills, {a.name: self.default_skill_of(a) for a in self.agents})

    @cached_property
    def local_registry(self) -> Registry:
        """The skills as their own functions, wherever the desk says they run (an agent server)."""
        return Registry(self.skills, {a.name: self.default_skill_of(a) for a in self.agents})

    @cached_property
    def workflow_map(self) -> dict[str, Workflow]:
        """The desk's workflows by name, YAML files read (a file that cannot be read raises
        ``WorkflowFileError``; ``validate`` reports it as a problem)."""
        found: dict[str, Workflow] = {}
        for workflow in self.declared_workflows():
            found.setdefault(workflow.name, workflow)
        return found

    def declared_workflows(self) -> list[Workflow]:
        """Every workflow as declared, in order (YAML files read), repeats included."""
        return [w for item in self.workflows for w in ((item,) if isinstance(item, Workflow) else load_workflows(item))]

    def workflow_department(self, workflow: Workflow) -> str:
        """Where a turn that runs ``workflow`` is recorded."""
        if workflow.department:
            return workflow.department
        agent = next((s.agent for s in self.skills if s.name == workflow.nodes[0].skill), "")
        return next((a.routes_from for a in self.agents if a.name == agent), agent)

    def with_remote(self, **agents: RemoteAgent) -> Desk:
        """This desk with the named agents served remotely: ``desk.with_remote(billing=RemoteAgent(url))``."""
        unknown = sorted(set(agents) - {a.name for a in self.agents})
        if unknown:
            raise ValueError(f"desk {self.name!r} has no agents {', '.join(unknown)}")
        return replace(self, agents=tuple(replace(a, remote=agents.get(a.name, a.remote)) for a in self.agents))

    @cached_property
    def extractor(self) -> Extractor:
        return Extractor(self.entities)

    def default_skill_of(self, agent: Agent) -> str:
        if agent.default_skill:
            return agent.default_skill
        own = [s for s in self.skills if s.agent == agent.name]
        return next((s.name for s in own if not s.action), own[0].name if own else "")

    @property
    def router_path(self) -> Path | None:
        return Path(self.router) if self.router is not None else None

    def classifier(self, threshold: float | None = None) -> Classifier:
        """The desk's local router (its file is read once per process)."""
        from deskline.routing.classifier import load_classifier

        if self.router_path is None:
            raise ValueError(f"desk {self.name!r} has no router file")
        return load_classifier(self.router_path, threshold=threshold)

    def system_of_record(self, engine: Engine | None = None, database_url: str | None = None) -> Any:
        """The object the skills receive: ``records``, or ``open_records`` on ``engine``."""
        if self.open_records is not None:
            return self.open_records(RecordsContext(engine, database_url))
        return self.records

    def with_router(self, router: Path | str | None) -> Desk:
        return self if router is None else replace(self, router=Path(router))

    def escalation(self, text: str) -> EscalationRule | None:
        return next((rule for rule in self.policies.escalations if rule(text)), None)

    def escalation_reply(self, rule: EscalationRule | None = None) -> str:
        return (rule.reply if rule is not None and rule.reply else self.texts.escalated).strip()
