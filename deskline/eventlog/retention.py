"""Retention: archive and remove conversations closed for longer than a configurable period.

A conversation is closed when no turn is open and no person owns it. Its events are written to a
gzip JSON-lines archive (one object per event, with conversation id, seq and turn) before they
leave the store, and nothing else changes: other conversations replay exactly as before.
"""

from __future__ import annotations

import gzip
import json
import time
from dataclasses import dataclass
from pathlib import Path

from deskline.eventlog.projections import fold
from deskline.eventlog.store import EventStore


@dataclass(frozen=True, slots=True)
class Compaction:
    conversations: tuple[str, ...]
    events: int
    archive: Path | None

    def to_dict(self) -> dict[str, object]:
        return {"conversations": list(self.conversations), "events": self.events,
                "archive": str(self.archive) if self.archive else None}


def compact(store: EventStore, older_than_s: float, archive_dir: Path | None, *,
            now: float | None = None, dry_run: bool = False) -> Compaction:
    """Archive (when ``archive_dir`` is given) and remove every closed, idle conversation."""
    cutoff = (now if now is not None else time.time()) - older_than_s
    closed: list[str] = []
    batches = []
    for cid in store.idle_since(cutoff):
        records = store.load(cid)
        state = fold(cid, records)
        if state.open_turn() is None and state.owner == "bot":
            closed.append(cid)
            batches.append(records)
    events = sum(len(b) for b in batches)
    if dry_run or not closed:
        return Compaction(tuple(closed), events, None)
    path = None
    if archive_dir is not None:
        archive_dir.mkdir(parents=True, exist_ok=True)
        path = archive_dir / f"deskline-archive-{int(cutoff)}-{len(closed)}.jsonl.gz"
        with gzip.open(path, "wt", encoding="utf-8") as out:
            for records in batches:
                for r in records:
                    out.write(json.dumps(r.to_json()) + "\n")
    store.remove(closed)
    return Compaction(tuple(closed), events, path)
