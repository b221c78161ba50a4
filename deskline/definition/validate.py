"""Validation of a desk definition: every problem at once, before the desk answers anyone."""

from __future__ import annotations

import string
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path

from deskline.agents.remote import remote_only
from deskline.definition.model import Desk
from deskline.definition.workflow import WorkflowFileError, workflow_problems
from deskline.errors import DesklineError
from deskline.handoffs.entities import is_name
from deskline.handoffs.payload import CUSTOMER_ID, RESERVED_DEPARTMENTS


class DeskDefinitionError(DesklineError):
    """A desk definition that cannot run; ``problems`` lists every reason, one sentence each."""

    code = "invalid_desk"

    def __init__(self, desk: str, problems: Iterable[str]) -> None:
        self.problems = tuple(problems)
        listed = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"desk {desk!r} is not valid:\n{listed}", desk=desk, problems=list(self.problems))


def validate(desk: Desk) -> Desk:
    """``desk`` if it can run, else ``DeskDefinitionError`` naming every problem."""
    problems = list(_problems(desk))
    if problems:
        raise DeskDefinitionError(desk.name, problems)
    return desk


def _problems(desk: Desk) -> Iterable[str]:
    if not desk.agents:
        yield "the desk has no agents"
    yield from _names("agent", [a.name for a in desk.agents])
    yield from _names("skill", [s.name for s in desk.skills], pattern=False)
    yield from _names("entity", [e.name for e in desk.entities])
    yield from _names("escalation rule", [r.name for r in desk.policies.escalations], pattern=False)
    yield from _names("department", list(desk.departments))
    for name in desk.departments:
        if name in RESERVED_DEPARTMENTS:
            yield f"department {name!r} is the framework's own (a person / outside the desk); do not declare it"
    departments = set(desk.all_departments)
    agents = {a.name for a in desk.agents}
    for agent in desk.agents:
        if agent.routes_from not in departments:
            yield f"agent {agent.name!r} is in department {agent.routes_from!r}, which the desk does not declare"
        if agent.routes_from in RESERVED_DEPARTMENTS:
            yield f"agent {agent.name!r} cannot take the framework's department {agent.routes_from!r}"
        own = [s for s in desk.skills if s.agent == agent.name]
        if not own:
            yield f"agent {agent.name!r} has no skills"
        elif agent.default_skill and agent.default_skill not in {s.name for s in own}:
            yield f"agent {agent.name!r}: default skill {agent.default_skill!r} is not one of its skills"
    routed = [a.routes_from for a in desk.agents]
    for department, count in Counter(routed).items():
        if count > 1:
            yield f"department {department!r} has {count} agents; the router sends a department to one agent"
    entities = {e.name for e in desk.entities}
    for skill in desk.skills:
        if skill.agent not in agents:
            yield f"skill {skill.name!r} belongs to unknown agent {skill.agent!r}"
        for need in skill.requires:
            if need not in entities and need != CUSTOMER_ID:
                yield f"skill {skill.name!r} requires entity {need!r}, which no entity type provides"
            elif need not in skill.params.model_fields:
                yield f"skill {skill.name!r} requires {need!r} but its params model has no such field"
        yield from _templates(skill.name, skill.templates, skill.facts, entities)
        for offered in skill.offers:
            target = next((s for s in desk.skills if s.name == offered), None)
            if target is None:
                yield f"skill {skill.name!r} offers unknown skill {offered!r}"
            elif not target.action:
                yield f"skill {skill.name!r} offers {offered!r}, which takes no action"
    skills = {s.name: s for s in desk.skills}
    for name in desk.policies.actions:
        if name not in skills:
            yield f"action policy for unknown skill {name!r}"
        elif not skills[name].action:
            yield f"action policy for {name!r}, which takes no action"
    yield from _compensations(desk)
    yield from _remotes(desk)
    yield from _workflows(desk)
    yield from _texts(desk)
    yield from _languages(desk)
    yield from _router(desk)


def _languages(desk: Desk) -> Iterable[str]:
    """Languages Babel knows, each but the default with a readable catalogue whose translations
    fill the same placeholders as the original."""
    from babel import Locale, UnknownLocaleError

    from deskline.i18n.catalog import CatalogError, missing

    if not desk.languages:
        yield "the desk declares no language (languages=('en',) at least)"
        return
    for language, count in Counter(desk.languages).items():
        if count > 1:
            yield f"language {language!r} is declared {count} times"
    for language in desk.languages:
        try:
            Locale.parse(language)
        except (UnknownLocaleError, ValueError):
            yield f"language {language!r} is not a locale Babel knows (use codes like 'en', 'es', 'zh')"
    if len(desk.languages) > 1 and desk.catalogs is None:
        yield f"the desk answers in {', '.join(desk.languages[1:])} but names no catalogs folder for them"
        return
    try:
        catalogs = desk.catalog_map
    except CatalogError as exc:
        yield str(exc)
        return
    for catalog in catalogs.values():
        # An untranslated text is said in the desk's own language (gettext's rule; `deskline
        # catalog check` lists them); a translation with other placeholders could not be filled.
        yield from (problem for problem in missing(desk, catalog) if "no translation" not in problem)


def _compensations(desk: Desk) -> Iterable[str]:
    skills = {s.name: s for s in desk.skills}
    for skill in desk.skills:
        undo = skill.compensate
        if (undo is not None or skill.irreversible) and not skill.action:
            yield f"skill {skill.name!r} declares how to undo its action, but takes no action"
        if undo is not None and skill.irreversible:
            yield f"skill {skill.name!r} has a compensation and is also marked irreversible"
        if isinstance(undo, str):
            target = skills.get(undo)
            if target is None:
                yield f"skill {skill.name!r} is compensated by unknown skill {undo!r}"
            elif undo == skill.name:
                yield f"skill {skill.name!r} cannot compensate itself"
            elif not target.action:
                yield f"skill {skill.name!r} is compensated by {undo!r}, which takes no action"
        elif undo is not None and not callable(undo):
            yield f"skill {skill.name!r}: compensate must be a skill name or a skill function"


def _remotes(desk: Desk) -> Iterable[str]:
    remotes = {a.name for a in desk.agents if a.remote is not None}
    for skill in desk.skills:
        if skill.run is remote_only and skill.agent not in remotes:
            yield f"skill {skill.name!r} runs only on a remote agent, but agent {skill.agent!r} is not remote"
    for agent in desk.agents:
        remote = agent.remote
        if remote is None:
            continue
        if not remote.url.startswith(("http://", "https://")):
            yield f"agent {agent.name!r}: remote url {remote.url!r} is not an http(s) URL"
        if remote.timeout_s <= 0:
            yield f"agent {agent.name!r}: remote timeout_s must be positive"


def _workflows(desk: Desk) -> Iterable[str]:
    try:
        workflows = desk.declared_workflows()
    except WorkflowFileError as exc:
        yield str(exc)
        return
    yield from _names("workflow", [w.name for w in workflows], pattern=False)
    skills = {s.name: s for s in desk.skills}
    for workflow in [w for i, w in enumerate(workflows) if w.name not in {v.name for v in workflows[:i]}]:
        yield from workflow_problems(workflow, skills, desk.extractor.by_name, desk.all_departments)


def _names(kind: str, names: list[str], *, pattern: bool = True) -> Iterable[str]:
    for name, count in Counter(names).items():
        if count > 1:
            yield f"duplicate {kind} name {name!r}"
    for name in dict.fromkeys(names):
        if not name:
            yield f"a {kind} has an empty name"
        elif pattern and not is_name(name):
            yield f"{kind} name {name!r} is not a lowercase identifier (letters, digits, _)"


def _fields(template: str) -> set[str] | None:
    try:
        return {name.split(".")[0].split("[")[0] for _, name, _, _ in string.Formatter().parse(template) if name}
    except ValueError:
        return None


def _templates(skill: str, templates: Mapping[str, str], facts: tuple[str, ...],
               entities: set[str]) -> Iterable[str]:
    known = set(facts)
    for name, text in templates.items():
        used = _fields(text)
        if used is None:
            yield f"skill {skill!r}: template {name!r} is not a valid format string"
            continue
        unknown = sorted(used - known)
        if unknown and not facts:
            yield (f"skill {skill!r}: template {name!r} names {', '.join(unknown)}, but the skill declares no "
                   f"facts (Skill(facts=...))")
        elif unknown:
            yield f"skill {skill!r}: template {name!r} names {', '.join(unknown)}, which the skill never returns"


_TEXT_FIELDS = {"pending_approval": {"action_text"}, "skipped": {"actual", "expected"},
                "unsupported_language": {"languages"}, "pending_action": {"action", "amount"}}


def _texts(desk: Desk) -> Iterable[str]:
    texts = desk.texts
    for name in type(texts).__dataclass_fields__:
        value = getattr(texts, name)
        if not isinstance(value, str) or not value.strip():
            yield f"text {name!r} is empty"
            continue
        used = _fields(value)
        allowed = _TEXT_FIELDS.get(name, set())
        if used is None or used - allowed:
            yield f"text {name!r} may use only {sorted(allowed) or 'no'} fields"
    for rule in desk.policies.escalations:
        if not rule.pattern and rule.matches is None:
            yield f"escalation rule {rule.name!r} has neither a pattern nor a matches function"
        if not rule.reason:
            yield f"escalation rule {rule.name!r} has no reason"


def _router(desk: Desk) -> Iterable[str]:
    path = desk.router_path
    if path is None:
        yield "the desk has no router file (train one with `deskline train`)"
        return
    if not Path(path).is_file():
        yield f"router file {str(path)!r} does not exist"
        return
    try:
        classifier = desk.classifier()
    except (OSError, ValueError, KeyError) as exc:
        yield f"router file {str(path)!r} cannot be read: {exc}"
        return
    unknown = [d for d in classifier.departments if d not in desk.all_departments]
    if unknown:
        yield (f"router {path.name!r} was trained on departments the desk does not have: {', '.join(unknown)} "
               f"(the desk has {', '.join(desk.all_departments)})")
