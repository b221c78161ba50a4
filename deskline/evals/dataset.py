"""Recorded queries as a pydantic-evals ``Dataset``: from CSV or JSONL, or exported from the log.

A row is one customer message: ``text`` plus any of ``department``, ``intent``, ``escalate``,
``mode``, ``entities``, ``facts``, ``conversation_id`` and ``turn``. Rows that share a
``conversation_id`` are one case, run in ``turn`` order on one conversation; any other row is a
case of its own. The shared data files (``text,source_intent,department,ambiguous``) load as
they are: ``source_intent`` and ``ambiguous`` travel as metadata.

* ``escalate`` defaults to ``department == "human"`` (a person's department is an escalation).
* ``entities`` names what a handoff must carry: ``order_id`` or ``order_id=ORD-1001``;
  separated by ``;``, ``,``, ``|`` or spaces in CSV, a list or an object in JSONL.
* ``facts`` are strings the reply must contain, separated by ``|`` in CSV, a list in JSONL.

Rows whose normalised text is in the router's training files are flagged ``trained_on``, so a
figure measured on them is labelled as such.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, cast, get_args

from pydantic_evals import Case, Dataset

from deskline.errors import DesklineError
from deskline.eventlog.events import (
    CustomerMessaged,
    EscalationClaimed,
    EscalationRequested,
    HandoffSent,
    HumanReplied,
    PlanMade,
    Recorded,
    ReplySent,
    TurnHeld,
)
from deskline.eventlog.store import EventStore
from deskline.handoffs.entities import is_name
from deskline.handoffs.payload import HUMAN, Department, Entities, Mode, parse_money
from deskline.privacy import mask
from deskline.routing.classifier import normalise

MODES: frozenset[str] = frozenset(get_args(Mode))
FACT_KEYS = ("facts", "reply_facts", "expected_facts", "reply_contains")
KNOWN_KEYS = frozenset({"text", "department", "intent", "escalate", "mode", "entities",
                        "conversation_id", "turn", "source_intent", "ambiguous", *FACT_KEYS})
LABEL_MAP = "label_map"  # metadata key of a row read from a label map, not a recorded query
_SEPARATORS = re.compile(r"[;|\s]+|,(?!\d)")
_TRUE = frozenset({"1", "true", "yes", "y", "t"})
_FALSE = frozenset({"0", "false", "no", "n", "f"})

EvalCase = Case["Dialogue", Any, dict[str, Any]]
EvalDataset = Dataset["Dialogue", Any, dict[str, Any]]


class DatasetError(DesklineError):
    """A query file that cannot be read as recorded queries; names the file and the row."""

    code = "invalid_dataset"


@dataclass(frozen=True, slots=True)
class Expectation:
    """What one turn should do. ``None`` (or empty) means "not checked"."""

    department: Department | None = None
    intent: str | None = None
    escalate: bool | None = None
    mode: str | None = None
    entities: tuple[tuple[str, str | None], ...] = ()  # (name, value or None for "any value")
    facts: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Dialogue:
    """The inputs of one case: a conversation's customer messages, in turn order."""

    texts: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Query:
    """One row of a query file."""

    row: int
    text: str
    expect: Expectation
    conversation_id: str | None = None
    turn: int | None = None
    source_intent: str | None = None
    ambiguous: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def load_dataset(path: Path, name: str | None = None, training: Sequence[Path] = ()) -> EvalDataset:
    """The queries of a CSV or JSONL file as a pydantic-evals dataset (rows whose text is in
    one of the ``training`` files are flagged ``trained_on``)."""
    return to_dataset(read_queries(path), name or path.stem, source=str(path), training=training)


def load_datasets(paths: Sequence[Path], name: str | None = None, training: Sequence[Path] = ()) -> EvalDataset:
    """Several query files as one dataset; case names are prefixed with their file's stem."""
    if len(paths) == 1:
        return load_dataset(paths[0], name, training)
    cases: list[EvalCase] = []
    for path in paths:
        for case in load_dataset(path, training=training).cases:
            case.name = f"{path.stem}/{case.name}"
            cases.append(case)
    return Dataset(name=name or "+".join(p.stem for p in paths), cases=cases)


def limit_cases(dataset: EvalDataset, limit: int | None) -> EvalDataset:
    """The first ``limit`` cases (all when ``None``)."""
    if limit is None or limit >= len(dataset.cases):
        return dataset
    return Dataset(name=dataset.name, cases=list(dataset.cases[:limit]))


def resolve_data(name: str | Path) -> Path:
    """A query file by path, or by bare name in the places the shared data lives.

    Searched in order: as given, the repository root, ``bench/data``, the package's training
    data, ``$DESKLINE_EVAL_DATA`` and ``../shared/data`` beside the repository.
    """
    import os

    path = Path(name)
    root = Path(__file__).resolve().parents[2]
    env = os.environ.get("DESKLINE_EVAL_DATA")
    places = list(dict.fromkeys([Path.cwd(), root, root / "bench" / "data", root / "deskline" / "agents" / "builtin" / "router" / "data",
                                 *([Path(env)] if env else []), root.parent / "shared" / "data"]))
    for candidate in [path, *(p / path for p in places), *(p / path.name for p in places)]:
        if candidate.is_file():
            return candidate
    raise DatasetError(f"cannot find {name}: looked in {', '.join(str(p) for p in places)} "
                       "(set DESKLINE_EVAL_DATA to the directory that holds it)", path=str(name))


def read_queries(path: Path) -> list[Query]:
    """Every row of a ``.csv`` or ``.jsonl`` file (``.json`` lines work too)."""
    if not path.is_file():
        raise DatasetError(f"no query file at {path}", path=str(path))
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return _read_csv(path)
        if suffix in (".jsonl", ".ndjson", ".json"):
            return _read_jsonl(path)
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path} is not UTF-8 text: {exc}", path=str(path)) from exc
    raise DatasetError(f"{path}: use a .csv or .jsonl file", path=str(path))


def _read_csv(path: Path) -> list[Query]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        fields = set(reader.fieldnames or ())
        if "text" not in fields and {"intent", "department"} <= fields:
            return [parse_row(_label_map_row(row), i, path) for i, row in enumerate(reader, start=1)]
        if "text" not in fields:
            raise DatasetError(f"{path}: the header has no 'text' column", path=str(path))
        return [parse_row(row, i, path) for i, row in enumerate(reader, start=1)]


def _label_map_row(row: dict[str, str]) -> dict[str, Any]:
    """A label map row (intent,department,note) as a query whose text is the intent's name: a
    smoke test of the map against the router, labelled as such, not a quality figure."""
    text = re.sub(r"[_/]+", " ", row["intent"]).strip().lower()
    return {"text": text, "department": row["department"], "source_intent": row["intent"],
            "ambiguous": "AMBIGUOUS" in (row.get("note") or ""), LABEL_MAP: True}


def _read_jsonl(path: Path) -> list[Query]:
    queries: list[Query] = []
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}:{line_no}: not JSON: {exc.msg}", path=str(path),
                                   line=line_no) from exc
            if not isinstance(row, dict):
                raise DatasetError(f"{path}:{line_no}: a line must be a JSON object",
                                   path=str(path), line=line_no)
            queries.append(parse_row(row, line_no, path))
    return queries


def parse_row(row: dict[str, Any], row_no: int, path: Path | str = "<rows>") -> Query:
    """One query from a CSV or JSON row; ``DatasetError`` names the row and the field."""

    def fail(what: str) -> DatasetError:
        return DatasetError(f"{path}, row {row_no}: {what}", path=str(path), row=row_no)

    text = row.get("text")
    if not isinstance(text, str) or not text.strip():
        raise fail("'text' is missing or empty")
    department = _blank(row.get("department"))
    if department is not None:
        department = str(department).strip().lower()
        if not is_name(department):
            raise fail(f"department {department!r} is not a department name (a lowercase identifier)")
    mode = _blank(row.get("mode"))
    if mode is not None and str(mode) not in MODES:
        raise fail(f"mode {mode!r} is not one of {', '.join(sorted(MODES))}")
    try:
        escalate = _bool(row.get("escalate"))
        if escalate is None and department is not None:
            escalate = department == HUMAN
        turn = _blank(row.get("turn"))
        facts = next((row[k] for k in FACT_KEYS if _blank(row.get(k)) is not None), None)
        expect = Expectation(department=cast(Department | None, department),
                             intent=_str(row.get("intent")), escalate=escalate,
                             mode=None if mode is None else str(mode),
                             entities=_entities(row.get("entities")), facts=_facts(facts))
        return Query(row=row_no, text=text, expect=expect, conversation_id=_str(row.get("conversation_id")),
                     turn=None if turn is None else int(turn), source_intent=_str(row.get("source_intent")),
                     ambiguous=bool(_bool(row.get("ambiguous"))),
                     extra={k: v for k, v in row.items() if k not in KNOWN_KEYS and _blank(v) is not None})
    except (TypeError, ValueError) as exc:
        raise fail(str(exc)) from exc


def to_dataset(queries: Sequence[Query], name: str, source: str = "", training: Sequence[Path] = ()) -> EvalDataset:
    """Queries grouped into cases: one per conversation id (turns in order), else one per row."""
    groups: dict[str, list[Query]] = {}
    for q in queries:
        key = f"{q.conversation_id}" if q.conversation_id is not None else f"{name}:{q.row}"
        groups.setdefault(key, []).append(q)
    trained = training_digests(tuple(training))
    cases: list[EvalCase] = []
    for key, group in groups.items():
        turns = sorted(group, key=lambda q: q.turn if q.turn is not None else q.row)
        meta = {"source": source, "rows": [q.row for q in turns],
                "conversation_id": turns[0].conversation_id,
                "trained_on": [digest(q.text) in trained for q in turns],
                "ambiguous": [q.ambiguous for q in turns],
                "source_intent": [q.source_intent for q in turns], "extra": [q.extra for q in turns]}
        cases.append(Case(name=key, inputs=Dialogue(texts=tuple(q.text for q in turns)),
                          expected_output=tuple(q.expect for q in turns), metadata=meta))
    return Dataset(name=name, cases=cases)


def digest(text: str) -> bytes:
    """The key of a text in the training set: its normalised form, hashed."""
    return hashlib.blake2b(normalise(text).encode("utf-8"), digest_size=8).digest()


@lru_cache(maxsize=4)
def training_digests(paths: tuple[Path, ...]) -> frozenset[bytes]:
    """Digests of every text in the router's training files (``Desk.training_data``)."""
    found: set[bytes] = set()
    for path in paths:
        if path.is_file() and path.suffix.lower() == ".csv":
            with path.open(encoding="utf-8", newline="") as handle:
                found.update(digest(r["text"]) for r in csv.DictReader(handle) if r.get("text"))
    return frozenset(found)


def export_queries(store: EventStore, *, raw: bool = False,
                   personal: Collection[str] = ()) -> Iterator[dict[str, Any]]:
    """Every recorded customer turn as a query row, labelled with what happened.

    ``department`` is the department that resolved the turn (``human`` when a person took
    over), omitted when nobody did (the bot asked a clarifying question); ``escalate`` says
    whether a person took over. Multi-turn conversations keep their id and turn numbers.

    Personal data is masked (``deskline.privacy.mask``) unless ``raw``: the text, and every
    entity named in ``personal`` (the desk's ``extractor.personal``) or whose value holds
    personal data is written as its name alone, so a masked export still evaluates.
    """
    for cid in store.conversation_ids():
        yield from turn_rows(cid, store.load(cid), raw=raw, personal=personal)


def turn_rows(conversation_id: str, records: Sequence[Recorded], *, raw: bool = False,
              personal: Collection[str] = ()) -> Iterator[dict[str, Any]]:
    """The query rows of one conversation's records (masked unless ``raw``; see ``export_queries``)."""
    by_turn: dict[int, list[Recorded]] = {}
    for r in records:
        by_turn.setdefault(r.turn, []).append(r)
    for turn, items in sorted(by_turn.items()):
        events = [r.event for r in items]
        message = next((e for e in events if isinstance(e, CustomerMessaged)), None)
        if message is None:
            continue
        plan = next((e.plan for e in events if isinstance(e, PlanMade)), None)
        reply = next((e for e in events if isinstance(e, ReplySent)), None)
        took_over = EscalationRequested | EscalationClaimed | HumanReplied | TurnHeld
        person = any(isinstance(e, took_over) for e in events)
        row: dict[str, Any] = {"text": message.text if raw else mask(message.text),
                               "conversation_id": conversation_id, "turn": turn}
        if person:
            row["department"] = HUMAN
        elif reply is not None and reply.outcome in ("answered", "needs_info"):
            row["department"] = reply.department
        row["escalate"] = person
        if plan is not None:
            row["intent"] = plan.intent
            row["mode"] = plan.mode
        if names := handoff_entities([e.handoff.case.entities for e in events
                                      if isinstance(e, HandoffSent)]):
            row["entities"] = list(dict.fromkeys(_entity_item(n, v, raw, personal) for n, v in names))
        row["outcome"] = reply.outcome if reply is not None else "held"
        yield row


def _entity_item(name: str, value: str, raw: bool, personal: Collection[str]) -> str:
    """``name=value``; only ``name`` ("any value") for personal data unless ``raw``."""
    if not raw and (name in personal or mask(value) != value):
        return name
    return f"{name}={value}"


def handoff_entities(found: Sequence[Entities]) -> list[tuple[str, str]]:
    """(name, value) of every entity the handoffs carried, without repeats."""
    pairs = {(name, v): None for e in found for name in e.values for v in entity_values(e, name)}
    return list(pairs)


def entity_values(entities: Entities, name: str) -> tuple[str, ...]:
    """The values of one named entity as a customer would write them (amounts as ``$49.00``)."""
    return tuple(str(money) if (money := parse_money(v)) is not None else v for v in entities.get(name))


def check_against(dataset: EvalDataset, departments: Sequence[str], entities: Sequence[str]) -> None:
    """``DatasetError`` naming every department and entity the dataset expects that the desk
    does not have (a dataset of another desk, or a typo)."""
    bad_departments: set[str] = set()
    bad_entities: set[str] = set()
    for case in dataset.cases:
        for expect in case.expected_output or ():
            if expect.department is not None and expect.department not in departments:
                bad_departments.add(expect.department)
            bad_entities.update(name for name, _ in expect.entities if name not in entities)
    problems = []
    if bad_departments:
        problems.append(f"departments {', '.join(sorted(bad_departments))} are not the desk's "
                        f"({', '.join(departments)})")
    if bad_entities:
        problems.append(f"entities {', '.join(sorted(bad_entities))} are not the desk's "
                        f"({', '.join(entities) or 'none'})")
    if problems:
        raise DatasetError(f"{dataset.name}: " + "; ".join(problems), departments=sorted(bad_departments),
                           entities=sorted(bad_entities))


def _blank(value: Any) -> Any:
    return None if value is None or (isinstance(value, str) and not value.strip()) else value


def _str(value: Any) -> str | None:
    value = _blank(value)
    return None if value is None else str(value).strip()


def _bool(value: Any) -> bool | None:
    value = _blank(value)
    if value is None or isinstance(value, bool):
        return value
    low = str(value).strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError(f"{value!r} is not a yes/no value")


def _entities(value: Any) -> tuple[tuple[str, str | None], ...]:
    value = _blank(value)
    if value is None:
        return ()
    if isinstance(value, dict):
        items: list[str] = [f"{k}={v}" if v not in (None, "") else str(k) for k, v in value.items()]
    elif isinstance(value, list):
        items = [str(v) for v in value]
    else:  # a comma followed by a digit belongs to an amount ("amount=$1,200.00")
        items = [i for i in _SEPARATORS.split(str(value)) if i]
    out: list[tuple[str, str | None]] = []
    for item in items:
        name, _, wanted = item.partition("=")
        name = name.strip()
        if not is_name(name):
            raise ValueError(f"entity {name!r} is not an entity name (a lowercase identifier)")
        out.append((name, wanted.strip() or None))
    return tuple(out)


def _facts(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, list):
        return tuple(str(v) for v in value if str(v).strip())
    return tuple(part.strip() for part in str(value).split("|") if part.strip())
