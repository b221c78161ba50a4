"""ConversationStates: a desk's cached folds agree with the store, and read only what is new."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from deskline.eventlog.events import CustomerMessaged, HumanReplied, ReplySent
from deskline.eventlog.projections import Folding, fold
from deskline.eventlog.states import ConversationStates
from deskline.eventlog.store import MemoryEventStore
from deskline.runtime import memory_desk


class CountingStore(MemoryEventStore):
    """Remembers where every load started."""

    def __init__(self) -> None:
        super().__init__()
        self.loads: list[tuple[str, int]] = []

    def load(self, conversation_id: str, after: int = 0) -> Any:
        self.loads.append((conversation_id, after))
        return super().load(conversation_id, after)


def reply(text: str) -> ReplySent:
    return ReplySent(text=text, department="other", mode="clarify")


def test_a_cached_state_agrees_with_a_fold_of_the_store_after_other_writers() -> None:
    """Appends made behind the cache's back (another process, the human console) are read on the
    next load, from where the cache stopped, and the state equals a fresh fold."""
    store = CountingStore()
    states = ConversationStates(store)
    store.append("c1", 0, 1, [CustomerMessaged(text="hi"), reply("hello")])
    assert states.load("c1") == fold("c1", store.load("c1"))
    store.append("c1", 2, 1, [HumanReplied(agent_name="dana", text="I am here")])
    store.loads.clear()
    assert states.load("c1") == fold("c1", store.load("c1"))
    assert store.loads[0] == ("c1", 2)  # only what came after seq 2


def test_a_desk_reads_only_the_new_events_of_a_long_conversation() -> None:
    """From the second turn on, a desk's load of the conversation starts after what it has seen."""
    store = CountingStore()
    desk = memory_desk()
    desk.store = store
    desk.states = ConversationStates(store)
    for text in ["I forgot my password", "thanks", "I was charged twice for invoice INV-1001"]:
        asyncio.run(desk.handle("c1", text))
    starts = [after for cid, after in store.loads if cid == "c1"]
    assert starts[0] == 0 and all(after > 0 for after in starts[1:])
    assert desk.states.load("c1") == fold("c1", store.load("c1"))


def test_a_conversation_removed_from_the_store_is_folded_again() -> None:
    """A cached fold that the store no longer matches (the conversation was archived and removed)
    costs one conflict, then the desk starts the conversation afresh."""
    desk = memory_desk()
    asyncio.run(desk.handle("c1", "I forgot my password"))
    desk.store.remove(["c1"])
    result = asyncio.run(desk.handle("c1", "hello again"))
    assert result.turn == 1
    assert [r.seq for r in desk.store.load("c1")][:2] == [1, 2]


def test_least_recently_used_folds_are_evicted_beyond_capacity() -> None:
    store = MemoryEventStore()
    states = ConversationStates(store, capacity=2)
    for cid in ("a", "b", "c"):
        store.append(cid, 0, 1, [CustomerMessaged(text=cid)])
        states.load(cid)
    assert len(states) == 2
    assert states.load("a") == fold("a", store.load("a"))  # evicted, folded again from the store


def test_a_fold_refuses_events_that_do_not_follow() -> None:
    store = MemoryEventStore()
    store.append("c1", 0, 1, [CustomerMessaged(text="hi"), reply("hello")])
    with pytest.raises(ValueError, match="does not follow"):
        Folding().extend(store.load("c1", after=1))



def test_a_kept_fold_holds_neither_done_plans_nor_open_turn_dicts() -> None:
    """What a cached fold keeps stays small: a finished turn's plan is dropped and every turn but
    the last is frozen, so the state is the same as a fresh fold's."""
    desk = memory_desk()
    for text in ["I was charged twice for invoice INV-1001", "thanks", "I forgot my password"]:
        asyncio.run(desk.handle("c1", text))
    builder = desk.states._folds["c1"]._b
    assert builder.plan is None and len(builder.turns) == 1 and len(builder.done) == 2
    assert desk.states.load("c1") == fold("c1", desk.store.load("c1"))
