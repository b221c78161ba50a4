"""Recent conversations' states, kept current from the store by reading only what is new.

Without it every turn reads and folds the whole conversation, so a turn costs more the longer the
conversation has run. With it a turn reads the events after the last one this process saw
(``store.load(cid, after=seq)``: other processes' and the human console's appends included) and
continues the fold from there. The store stays the only truth: an entry is a cache of a fold of
it, checked on every use (the next event must follow the last one folded), dropped when an
append conflicts, and evicted least recently used beyond ``capacity``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING

from deskline.eventlog.events import Recorded
from deskline.eventlog.projections import ConversationState, Folding
from deskline.eventlog.store import EventStore

if TYPE_CHECKING:
    from deskline.eventlog.nonblocking import AsyncEventStore


class ConversationStates:
    def __init__(self, store: EventStore, capacity: int = 4096) -> None:
        self.store = store
        self.capacity = capacity
        self._folds: OrderedDict[str, Folding] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._folds)

    def load(self, conversation_id: str) -> ConversationState:
        """The conversation as the store has it now."""
        folding = self._take(conversation_id)
        new = self.store.load(conversation_id, folding.last_seq)
        try:
            folding.extend(new)
        except ValueError:  # the store no longer matches what was folded (removed, rewritten)
            folding = Folding().extend(self.store.load(conversation_id))
        self._keep(conversation_id, folding)
        return folding.state(conversation_id)

    async def aload(self, conversation_id: str, store: AsyncEventStore) -> ConversationState:
        """``load`` through an awaitable store (the desk's turns: the loop never waits on it)."""
        folding = self._take(conversation_id)
        new = await store.load(conversation_id, folding.last_seq)
        try:
            folding.extend(new)
        except ValueError:
            folding = Folding().extend(await store.load(conversation_id))
        self._keep(conversation_id, folding)
        return folding.state(conversation_id)

    async def aextend(self, conversation_id: str, appended: Sequence[Recorded],
                      store: AsyncEventStore) -> ConversationState:
        """``extend``, catching up through an awaitable store when it has to."""
        folding = self._take(conversation_id)
        if not appended or appended[0].seq != folding.last_seq + 1:
            return await self.aload(conversation_id, store)
        state = folding.extend(appended).state(conversation_id)
        self._keep(conversation_id, folding)
        return state

    def extend(self, conversation_id: str, appended: Sequence[Recorded]) -> ConversationState:
        """The state right after this process's own append, without reading it back; if the fold
        is not right behind the appended events, it catches up from the store instead."""
        folding = self._take(conversation_id)
        if not appended or appended[0].seq != folding.last_seq + 1:
            return self.load(conversation_id)
        state = folding.extend(appended).state(conversation_id)
        self._keep(conversation_id, folding)
        return state

    def record(self, conversation_id: str, appended: Sequence[Recorded]) -> None:
        """``extend`` for a caller that does not need the state back."""
        folding = self._take(conversation_id)
        if appended and appended[0].seq == folding.last_seq + 1:
            self._keep(conversation_id, folding.extend(appended))
        # else the fold is dropped, and the next load reads the store

    def forget(self, conversation_id: str) -> None:
        """Drop the conversation's fold (an append conflicted: the store knows better)."""
        with self._lock:
            self._folds.pop(conversation_id, None)

    def _take(self, conversation_id: str) -> Folding:
        # Taken out while in use: another thread on the same conversation folds its own copy.
        with self._lock:
            return self._folds.pop(conversation_id, None) or Folding()

    def _keep(self, conversation_id: str, folding: Folding) -> None:
        if self.capacity <= 0:
            return
        with self._lock:
            self._folds[conversation_id] = folding
            while len(self._folds) > self.capacity:
                self._folds.popitem(last=False)
