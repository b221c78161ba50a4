"""The human queue: open escalations across every conversation, maintained incrementally.

``HumanQueue.refresh(store)`` reads only the events appended since its last position
(``store.read_all(after)``), so a console polling the queue never rescans the log.

The list is what any signed-in agent sees before claiming a conversation, so an entry's summary
and reason are masked (``deskline.privacy.mask``), also for escalations logged before the desk
masked its summaries; the transcript a claimed agent reads is not masked.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace

from deskline.eventlog.events import (
    ActionDecided,
    EscalationClaimed,
    EscalationReleased,
    EscalationRequested,
    HumanReplied,
    Recorded,
)
from deskline.eventlog.store import EventStore
from deskline.privacy import mask


@dataclass(frozen=True, slots=True)
class QueueEntry:
    conversation_id: str
    seq: int
    reason: str
    priority: int
    summary: str
    actions_taken: tuple[str, ...]
    pending_action: dict[str, str] | None
    requested_at: float
    claimed_by: str | None = None
    claimed_at: float | None = None
    last_human_reply_at: float | None = None
    language: str | None = None

    def breaching(self, now: float, sla_s: float) -> bool:
        """Unclaimed for longer than the SLA allows."""
        return self.claimed_by is None and now - self.requested_at > sla_s


class HumanQueue:
    def __init__(self) -> None:
        self.position = 0
        self._entries: dict[str, QueueEntry] = {}
        self._lock = threading.Lock()

    def apply(self, r: Recorded) -> None:
        e = r.event
        cid = r.conversation_id
        if isinstance(e, EscalationRequested):
            self._entries[cid] = QueueEntry(cid, r.seq, mask(e.reason), e.priority, mask(e.summary),
                                            e.actions_taken, e.pending_action, r.at, language=e.language)
        elif isinstance(e, EscalationClaimed) and cid in self._entries:
            self._entries[cid] = replace(self._entries[cid], claimed_by=e.agent_name, claimed_at=r.at)
        elif isinstance(e, ActionDecided) and cid in self._entries:
            self._entries[cid] = replace(self._entries[cid], pending_action=None)
        elif isinstance(e, HumanReplied) and cid in self._entries:
            self._entries[cid] = replace(self._entries[cid], last_human_reply_at=r.at)
        elif isinstance(e, EscalationReleased):
            self._entries.pop(cid, None)

    def refresh(self, store: EventStore, batch: int = 1000) -> int:
        """Fold what was appended since the last refresh; returns how many events were read."""
        with self._lock:
            read = 0
            while True:
                chunk = store.read_all(self.position, batch)
                for position, r in chunk:
                    self.apply(r)
                    self.position = position
                read += len(chunk)
                if len(chunk) < batch:
                    return read

    def entries(self) -> list[QueueEntry]:
        """Highest priority first (1 is the most urgent), then oldest first."""
        return sorted(self._entries.values(), key=lambda q: (q.priority, q.requested_at, q.seq))

    def get(self, conversation_id: str) -> QueueEntry | None:
        return self._entries.get(conversation_id)

    def __len__(self) -> int:
        return len(self._entries)
