"""A desk's labelled training examples: reading CSV or JSON-lines files and checking that they
can train a router (:mod:`deskline.routing.train` trains it)."""

from __future__ import annotations

import csv
import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deskline.errors import DesklineError
from deskline.routing.classifier import normalise

__all__ = ["MIN_EXAMPLES", "Example", "TrainingDataError", "check_examples", "read_examples"]

MIN_EXAMPLES = 8  # per department: fewer cannot be split for calibration and cross-validation
NAME = re.compile(r"^[a-z][a-z0-9_]*$")  # a department's name
_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}
_INTENT_COLUMNS = ("intent", "source_intent")


class TrainingDataError(DesklineError):
    """Training examples that cannot be used: the message names the file and, where it can, the line."""

    code = "invalid_training_data"


@dataclass(frozen=True, slots=True)
class Example:
    """One labelled training utterance (text already normalised)."""

    text: str
    intent: str
    department: str
    source: str

    @property
    def key(self) -> str:
        return f"{self.department}/{self.intent}"


def read_examples(paths: Iterable[str | os.PathLike[str]]) -> list[Example]:
    """The labelled rows of CSV or JSON-lines files, in file then row order, checked.

    Columns (CSV) or keys (JSON lines): ``text``, ``department`` and optionally ``intent`` (or
    ``source_intent``; without either, the intent is the department). Departments are stripped
    and lower-cased and must then be lowercase identifiers. Rows whose text is empty once
    normalised are skipped. Raises :class:`TrainingDataError` on a missing or unreadable file,
    a file without the ``text`` or ``department`` column, a file without a usable row, a bad
    department name, fewer than two departments overall or a department with fewer than
    ``MIN_EXAMPLES`` examples.
    """
    files = [Path(p) for p in paths]
    if not files:
        raise TrainingDataError("no training file given")
    examples: list[Example] = []
    for path in files:
        examples.extend(_read_file(path))
    check_examples(examples, where=", ".join(str(p) for p in files))
    return examples


def _read_file(path: Path) -> list[Example]:
    kind = _FORMATS.get(path.suffix.lower())
    if kind is None:
        raise TrainingDataError(
            f"{path}: unknown file type {path.suffix or '(none)'!r}; use .csv, .jsonl or .json (JSON lines)",
            file=str(path),
        )
    if not path.is_file():
        raise TrainingDataError(f"{path}: no such file", file=str(path))
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            rows = list(_csv_rows(path, handle) if kind == "csv" else _json_rows(path, handle))
    except UnicodeDecodeError as exc:
        raise TrainingDataError(f"{path}: not UTF-8 text ({exc.reason})", file=str(path)) from None
    except csv.Error as exc:
        raise TrainingDataError(f"{path}: not a readable CSV file ({exc})", file=str(path)) from None
    examples = [_example(path, line, row) for line, row in rows]
    usable = [e for e in examples if e is not None]
    if not usable:
        raise TrainingDataError(
            f"{path}: no usable rows (each needs a non-empty 'text' and a 'department')", file=str(path)
        )
    return usable


def _csv_rows(path: Path, handle: Any) -> Iterable[tuple[int, dict[str, Any]]]:
    reader = csv.DictReader(handle)
    columns = [c.strip() for c in reader.fieldnames or []]
    reader.fieldnames = columns
    if not columns:
        raise TrainingDataError(f"{path}: empty file (no header row and no usable rows)", file=str(path))
    for needed in ("text", "department"):
        if needed not in columns:
            raise TrainingDataError(
                f"{path}: no {needed!r} column (columns: {', '.join(columns)}); "
                "a training file needs 'text' and 'department' (and optionally 'intent')",
                file=str(path),
            )
    for row in reader:
        yield reader.line_num, row


def _json_rows(path: Path, handle: Any) -> Iterable[tuple[int, dict[str, Any]]]:
    for line, raw in enumerate(handle, start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise TrainingDataError(f"{path} line {line}: not JSON ({exc.msg})", file=str(path), line=line) from None
        if not isinstance(row, dict):
            raise TrainingDataError(f"{path} line {line}: not a JSON object", file=str(path), line=line)
        for needed in ("text", "department"):
            if needed not in row:
                raise TrainingDataError(
                    f"{path} line {line}: no {needed!r} field; every line needs 'text' and 'department'",
                    file=str(path),
                    line=line,
                )
        yield line, row


def _example(path: Path, line: int, row: Mapping[str, Any]) -> Example | None:
    """One row as an example; ``None`` for a row without text."""
    values = {}
    for name in ("text", "department", *_INTENT_COLUMNS):
        value = row.get(name)
        if value is not None and not isinstance(value, str):
            raise TrainingDataError(f"{path} line {line}: {name!r} must be a string", file=str(path), line=line)
        values[name] = value or ""
    text = normalise(values["text"])
    department = values["department"].strip().lower()
    if not text:
        return None
    if not NAME.match(department):
        what = f"department {values['department']!r}" if department else "an empty department"
        raise TrainingDataError(
            f"{path} line {line}: {what}; a department is a lowercase identifier "
            "(a letter, then letters, digits or '_')",
            file=str(path),
            line=line,
        )
    intent = values["intent"].strip() or values["source_intent"].strip() or department
    return Example(text, intent, department, path.stem)


def check_examples(examples: Sequence[Example], *, where: str = "the training data") -> None:
    """Raise :class:`TrainingDataError` unless the examples can train a router: at least two
    departments, each with at least ``MIN_EXAMPLES`` examples."""
    counts = Counter(e.department for e in examples)
    if not counts:
        raise TrainingDataError(f"{where}: no usable rows")
    if len(counts) < 2:
        (only,) = counts
        raise TrainingDataError(
            f"{where}: only one department ({only!r}); a router needs at least two", departments=[only]
        )
    small = sorted((n, d) for d, n in counts.items() if n < MIN_EXAMPLES)
    if small:
        detail = "; ".join(f"department {d!r} has {n} example{'s' * (n != 1)}" for n, d in small)
        raise TrainingDataError(
            f"{where}: {detail}; at least {MIN_EXAMPLES} are needed",
            departments={d: n for n, d in small},
        )
