"""Declared workflows: procedures a desk wants run the same way every time, as DAGs of skills.

    Workflow(
        name="late_delivery",
        description="A late order: where it is and the customer's account together; if it is lost "
                    "and the account is in good standing, resend it.",
        keywords=("my order is late",),
        nodes=(
            Node("order", "orders.order_status", inputs={"order_id": "order_id"}),   # a case entity
            Node("account", "accounts.standing"),                                     # runs beside it
            Node("resend", "orders.resend",
                 after=(Edge("order", fact="status", equals=("lost",)),             # edges with conditions
                        Edge("account", fact="standing", equals=("good",))),
                 inputs={"order_id": "order.order_id"}),                             # an upstream output
        ),
    )

A node is a skill. Its inputs come from the case's entities (``"order_id"``) or from named
outputs (facts) of upstream nodes (``"order.order_id"``); a parameter not mapped is filled as in
any plan (the entity of its name, else an upstream fact of its name). An edge names the upstream
node and may carry a condition: the upstream result's ``fact`` is one of ``equals`` (case-blind)
and its status is ``outcome`` (default ``ok``). A node runs when all its edges hold; otherwise
it is skipped, and so is everything downstream of it. Nodes whose upstream nodes are done run
together. The same workflow in YAML (``load_workflows(path)``)::

    - name: late_delivery
      description: ...
      keywords: [my order is late]
      nodes:
        - {id: order, skill: orders.order_status, inputs: {order_id: order_id}}
        - {id: account, skill: accounts.standing}
        - id: resend
          skill: orders.resend
          after:
            - {node: order, fact: status, equals: lost}
            - {node: account, fact: standing, equals: good}
          inputs: {order_id: order.order_id}

A workflow is validated with its desk (unknown skills, cycles, inputs nobody provides), claimed by
the local cascade like a skill (``intents`` from the router, ``keywords`` in the message) and
offered to the model planner as one more tool (``run_workflow__<name>``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from graphlib import CycleError, TopologicalSorter
from pathlib import Path
from typing import Any, get_args

from deskline.handoffs.payload import CUSTOMER_ID, ResultStatus
from deskline.handoffs.plan import Condition

OUTCOMES: tuple[str, ...] = get_args(ResultStatus)


@dataclass(frozen=True, slots=True)
class Edge:
    """An edge from upstream node ``node``; it holds when that node ran, its result's status is
    ``outcome`` and, if ``fact`` is given, that fact's value is one of ``equals`` (case-blind)."""

    node: str
    fact: str = ""
    equals: tuple[str, ...] = ()
    outcome: str = "ok"

    def condition(self) -> Condition:
        """The edge as plan data."""
        return Condition(step=self.node, fact=self.fact, equals=self.equals, outcome=self.outcome)


@dataclass(frozen=True, slots=True)
class Node:
    """One step of a workflow: ``id`` (unique in it), the ``skill`` it runs, the edges it waits on
    (``after``: node ids or ``Edge``s) and its ``inputs`` (parameter -> ``"entity"`` or
    ``"node.fact"``)."""

    id: str
    skill: str
    after: tuple[str | Edge, ...] = ()
    inputs: Mapping[str, str] = field(default_factory=dict)

    @property
    def edges(self) -> tuple[Edge, ...]:
        return tuple(e if isinstance(e, Edge) else Edge(e) for e in self.after)

    def sources(self) -> tuple[str, ...]:
        """The nodes this one waits on: its edges' and the ones its inputs read from."""
        named = [e.node for e in self.edges] + [s.split(".", 1)[0] for s in self.inputs.values() if "." in s]
        return tuple(dict.fromkeys(named))


@dataclass(frozen=True, slots=True)
class Workflow:
    """A declared procedure: a DAG of ``nodes``. ``intents`` (router intents) and ``keywords``
    (phrases in the message) let the local cascade choose it; ``description`` is what the model
    planner reads; ``department`` is where the turn is recorded (default: the first node's
    agent's department)."""

    name: str
    nodes: tuple[Node, ...]
    description: str = ""
    intents: frozenset[str] = frozenset()
    keywords: tuple[str, ...] = ()
    department: str = ""

    def node(self, node_id: str) -> Node:
        return next(n for n in self.nodes if n.id == node_id)

    def order(self) -> list[list[Node]]:
        """The nodes in waves: each after every node it waits on; a wave's nodes run together.
        Raises ``ValueError`` for a cycle."""
        by_id = {n.id: n for n in self.nodes}
        sorter: TopologicalSorter[str] = TopologicalSorter(
            {n.id: tuple(s for s in n.sources() if s in by_id) for n in self.nodes})
        try:
            sorter.prepare()
        except CycleError as exc:
            raise ValueError(" -> ".join(exc.args[1])) from exc
        waves: list[list[Node]] = []
        while sorter.is_active():
            ready = sorted(sorter.get_ready(), key=[n.id for n in self.nodes].index)
            waves.append([by_id[i] for i in ready])
            sorter.done(*ready)
        return waves

    def ancestors(self, node_id: str) -> set[str]:
        by_id = {n.id: n for n in self.nodes}
        seen: set[str] = set()
        todo = list(by_id[node_id].sources()) if node_id in by_id else []
        while todo:
            current = todo.pop()
            if current in seen or current not in by_id:
                continue
            seen.add(current)
            todo.extend(by_id[current].sources())
        return seen


# -- YAML ---------------------------------------------------------------------------------------


class WorkflowFileError(ValueError):
    """A workflow file that cannot be read as workflows; the desk's validation lists it."""


def load_workflows(path: Path | str) -> tuple[Workflow, ...]:
    """The workflows in a YAML file: a list of workflows (or ``{workflows: [...]}``)."""
    import yaml  # type: ignore[import-untyped]

    source = Path(path)
    try:
        data = yaml.safe_load(source.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise WorkflowFileError(f"workflow file {str(source)!r} cannot be read: {exc}") from exc
    if isinstance(data, dict) and "workflows" in data:
        data = data["workflows"]
    if not isinstance(data, list):
        raise WorkflowFileError(f"workflow file {str(source)!r} must hold a list of workflows")
    return tuple(workflow_from_dict(item, where=f"{source.name}[{i}]") for i, item in enumerate(data))


def workflow_from_dict(data: Any, where: str = "workflow") -> Workflow:
    """A ``Workflow`` from plain data (parsed YAML or JSON)."""
    if not isinstance(data, dict):
        raise WorkflowFileError(f"{where}: a workflow is a mapping")
    _only(data, {"name", "description", "intents", "keywords", "department", "nodes"}, where)
    nodes = data.get("nodes")
    if not isinstance(nodes, list):
        raise WorkflowFileError(f"{where}: 'nodes' must be a list")
    return Workflow(
        name=_text(data.get("name"), f"{where}.name"),
        description=str(data.get("description") or ""),
        intents=frozenset(_strings(data.get("intents"), f"{where}.intents")),
        keywords=_strings(data.get("keywords"), f"{where}.keywords"),
        department=str(data.get("department") or ""),
        nodes=tuple(_node(n, f"{where}.nodes[{i}]") for i, n in enumerate(nodes)),
    )


def _node(data: Any, where: str) -> Node:
    if not isinstance(data, dict):
        raise WorkflowFileError(f"{where}: a node is a mapping")
    _only(data, {"id", "skill", "after", "inputs"}, where)
    inputs = data.get("inputs") or {}
    if not isinstance(inputs, dict):
        raise WorkflowFileError(f"{where}.inputs: a mapping of parameter -> source")
    after = data.get("after") or []
    if isinstance(after, str | dict):
        after = [after]
    if not isinstance(after, list):
        raise WorkflowFileError(f"{where}.after: a list of node ids or edges")
    return Node(id=_text(data.get("id"), f"{where}.id"), skill=_text(data.get("skill"), f"{where}.skill"),
                after=tuple(_edge(e, f"{where}.after[{i}]") for i, e in enumerate(after)),
                inputs={str(k): str(v) for k, v in inputs.items()})


def _edge(data: Any, where: str) -> str | Edge:
    if isinstance(data, str):
        return data
    if not isinstance(data, dict):
        raise WorkflowFileError(f"{where}: a node id or a mapping")
    _only(data, {"node", "fact", "equals", "outcome"}, where)
    equals = data.get("equals", ())
    return Edge(node=_text(data.get("node"), f"{where}.node"), fact=str(data.get("fact") or ""),
                equals=_strings(equals, f"{where}.equals"), outcome=str(data.get("outcome") or "ok"))


def _only(data: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise WorkflowFileError(f"{where}: unknown keys {', '.join(map(str, unknown))}")


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise WorkflowFileError(f"{where}: a non-empty string is required")
    return value.strip()


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str | int | float | bool):
        return (str(value),)
    if isinstance(value, list) and all(isinstance(v, str | int | float | bool) for v in value):
        return tuple(str(v) for v in value)
    raise WorkflowFileError(f"{where}: a string or a list of strings")


# -- validation (pure; the desk's validation adds these to its problems) -------------------------


def workflow_problems(workflow: Workflow, skills: Mapping[str, Any], entities: Iterable[str],
                      departments: Sequence[str]) -> Iterable[str]:
    """Every reason ``workflow`` cannot run on a desk with these skills, entities and departments."""
    from deskline.handoffs.entities import is_name

    w = f"workflow {workflow.name!r}"
    known_entities = set(entities) | {CUSTOMER_ID}
    if not is_name(workflow.name):
        yield f"{w}: the name is not a lowercase identifier (letters, digits, _)"
    if not workflow.nodes:
        yield f"{w} has no nodes"
        return
    if workflow.department and workflow.department not in departments:
        yield f"{w} is in department {workflow.department!r}, which the desk does not declare"
    ids = [n.id for n in workflow.nodes]
    for node_id in dict.fromkeys(i for i in ids if ids.count(i) > 1):
        yield f"{w}: duplicate node id {node_id!r}"
    by_id = {n.id: n for n in workflow.nodes}
    for node in workflow.nodes:
        where = f"{w}: node {node.id!r}"
        if not is_name(node.id):
            yield f"{where}: the id is not a lowercase identifier (letters, digits, _)"
        if node.skill not in skills:
            yield f"{where} runs unknown skill {node.skill!r}"
        for edge in node.edges:
            if edge.node not in by_id:
                yield f"{where} waits on unknown node {edge.node!r}"
            elif edge.node == node.id:
                yield f"{where} waits on itself"
            if edge.outcome not in OUTCOMES:
                yield (f"{where}: edge from {edge.node!r} expects outcome {edge.outcome!r}, "
                       f"not one of {', '.join(OUTCOMES)}")
            if edge.fact and not edge.equals:
                yield f"{where}: edge from {edge.node!r} tests {edge.fact!r} against no value (equals=...)"
            source = skills.get(by_id[edge.node].skill) if edge.node in by_id else None
            if edge.fact and source is not None and source.facts and edge.fact not in source.facts:
                yield f"{where}: edge from {edge.node!r} tests {edge.fact!r}, which {source.name!r} never returns"
    try:
        workflow.order()
    except ValueError as exc:
        yield f"{w} has a cycle: {exc}"
        return
    for node in workflow.nodes:
        if node.skill in skills:
            yield from _input_problems(w, workflow, node, skills, known_entities)


def _input_problems(w: str, workflow: Workflow, node: Node, skills: Mapping[str, Any],
                    entities: set[str]) -> Iterable[str]:
    skill = skills[node.skill]
    where = f"{w}: node {node.id!r}"
    fields = skill.params.model_fields
    upstream = workflow.ancestors(node.id)
    provided: set[str] = set()
    for param, source in node.inputs.items():
        if param not in fields:
            yield f"{where} maps input {param!r}, which {skill.name!r} does not take"
            continue
        if "." in source:
            origin, fact = source.split(".", 1)
            if origin not in upstream:
                yield f"{where} reads {source!r}, but {origin!r} is not upstream of it"
                continue
            made = skills.get(workflow.node(origin).skill)
            if made is not None and made.facts and fact not in made.facts:
                yield f"{where} reads {source!r}, which {made.name!r} never returns"
                continue
        elif source not in entities:
            yield f"{where} reads entity {source!r}, which no entity type provides"
            continue
        provided.add(param)
    upstream_facts = {f for origin in upstream if workflow.node(origin).skill in skills
                      for f in skills[workflow.node(origin).skill].facts}
    needed = dict.fromkeys([*skill.requires, *(n for n, f in fields.items() if f.is_required())])
    for name in needed:
        if name not in provided and name not in entities and name not in upstream_facts:
            yield f"{where}: {skill.name!r} needs {name!r}, which no entity type or upstream node provides"
