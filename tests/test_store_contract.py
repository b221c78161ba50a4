"""One contract for every event store: memory, SQLite and PostgreSQL, each synchronous and
awaitable (the asyncio drivers, the bounded executor, the in-place memory face)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import text

from deskline.errors import ConcurrencyConflict, CorruptEvent, LeaseLost, StoreUnavailable
from deskline.eventlog.async_sql import AsyncSqlEventStore
from deskline.eventlog.database import make_engine
from deskline.eventlog.events import CustomerMessaged, ReplySent
from deskline.eventlog.nonblocking import AsyncEventStore, ExecutorEventStore, InlineEventStore
from deskline.eventlog.pg_async import PgEventStore
from deskline.eventlog.store import EventStore, MemoryEventStore, SqlEventStore


class Driven:
    """An awaitable store driven from a synchronous test, on one event loop of its own (an
    asyncio pool belongs to the loop that made it)."""

    def __init__(self, inner: AsyncEventStore, runner: asyncio.Runner) -> None:
        self.inner, self.runner = inner, runner

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.inner, name)
        return lambda *args, **kwargs: self.runner.run(method(*args, **kwargs))


STORES = ["memory", "sqlite", "postgres", "memory-inline", "sqlite-asyncio", "postgres-asyncio",
          "postgres-psycopg", "sqlite-executor", "postgres-executor"]


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest) -> Iterator[EventStore]:
    """Each store implementation, fresh; the awaitable ones behind ``Driven``."""
    database, _, face = request.param.partition("-")
    if database == "memory":
        sync: EventStore = MemoryEventStore()
    else:
        url = str(request.getfixturevalue("sqlite_url" if database == "sqlite" else "postgres_url"))
        sync = SqlEventStore(make_engine(url))  # checks (creates) the schema
    if not face:
        yield sync
        return
    aio: AsyncEventStore
    if face == "inline":
        aio = InlineEventStore(sync)
    elif face == "executor":
        aio = ExecutorEventStore(sync, workers=2, queue=4)
    elif face == "psycopg":
        aio = PgEventStore(url)
    else:
        aio = AsyncSqlEventStore(url)
    with asyncio.Runner() as runner:
        yield Driven(aio, runner)  # type: ignore[misc]
        if isinstance(aio, AsyncSqlEventStore | PgEventStore):
            runner.run(aio.dispose())


def msg(text: str, key: str | None = None) -> CustomerMessaged:
    return CustomerMessaged(text=text, client_message_id=key)


def test_append_assigns_consecutive_sequence_numbers(store: EventStore) -> None:
    """Appended events get seq 1..n in order and load back equal."""
    store.append("c1", 0, 1, [msg("hi"), ReplySent(text="hello", department="other", mode="clarify")])
    store.append("c1", 2, 2, [msg("again")])
    loaded = store.load("c1")
    assert [r.seq for r in loaded] == [1, 2, 3]
    assert [r.turn for r in loaded] == [1, 1, 2]
    assert loaded[0].event == msg("hi")
    assert store.load("c1", after=2)[0].event == msg("again")


def test_stale_expected_seq_conflicts_and_writes_nothing(store: EventStore) -> None:
    """A writer that expected an older head gets ConcurrencyConflict and nothing is appended."""
    store.append("c1", 0, 1, [msg("one")])
    with pytest.raises(ConcurrencyConflict):
        store.append("c1", 0, 1, [msg("two"), msg("three")])
    assert [r.event.text for r in store.load("c1")] == ["one"]  # type: ignore[union-attr]


def test_expected_seq_past_head_conflicts(store: EventStore) -> None:
    """Appending after a sequence number nobody wrote would leave a gap, so it conflicts."""
    store.append("c1", 0, 1, [msg("one")])
    with pytest.raises(ConcurrencyConflict):
        store.append("c1", 5, 2, [msg("gap")])
    assert len(store.load("c1")) == 1


def test_same_client_message_id_appends_once(store: EventStore) -> None:
    """A resent client message id is refused by the store itself."""
    store.append("c1", 0, 1, [msg("pay", key="m-1")])
    with pytest.raises(ConcurrencyConflict):
        store.append("c1", 1, 2, [msg("pay", key="m-1")])
    store.append("c2", 0, 1, [msg("pay", key="m-1")])  # ids are per conversation
    assert len(store.load("c1")) == 1 and len(store.load("c2")) == 1


def test_conversations_are_independent(store: EventStore) -> None:
    """Each conversation has its own sequence; read_all returns both in append order."""
    store.append("a", 0, 1, [msg("a1")])
    store.append("b", 0, 1, [msg("b1")])
    store.append("a", 1, 2, [msg("a2")])
    assert store.conversation_ids() == ["a", "b"]
    everything = store.read_all()
    assert [(r.conversation_id, r.seq) for _, r in everything] == [("a", 1), ("b", 1), ("a", 2)]
    position = everything[1][0]
    assert [(r.conversation_id, r.seq) for _, r in store.read_all(position)] == [("a", 2)]


def test_corrupt_row_names_conversation_and_seq(sqlite_url: str) -> None:
    """A row that does not parse is reported with where it sits; other conversations still load."""
    engine = make_engine(sqlite_url)
    store = SqlEventStore(engine)
    store.append("bad", 0, 1, [msg("x")])
    store.append("good", 0, 1, [msg("y")])
    with engine.begin() as conn:
        conn.execute(text("UPDATE events SET data = '{\"type\": \"martian\"}' WHERE conversation_id = 'bad'"))
    with pytest.raises(CorruptEvent) as err:
        store.load("bad")
    assert err.value.fields == {"conversation_id": "bad", "seq": 1}
    assert len(store.load("good")) == 1


def test_unreachable_database_is_one_clear_error() -> None:
    """A server that is not there gives StoreUnavailable, not a driver traceback."""
    pytest.importorskip("psycopg")
    with pytest.raises(StoreUnavailable) as err:
        SqlEventStore(make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2"))
    assert "cannot reach the database" in err.value.message


@pytest.mark.parametrize("make", [AsyncSqlEventStore, PgEventStore])
def test_unreachable_database_is_one_clear_error_for_the_asyncio_stores(make: Callable[[str], Any]) -> None:
    """The asyncio stores on a server that is not there give StoreUnavailable too."""

    async def touch() -> None:
        store = make("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2")
        await store.load("c1")

    with pytest.raises(StoreUnavailable) as err:
        asyncio.run(touch())
    assert "cannot reach the database" in err.value.message


@pytest.mark.postgres
def test_the_psycopg_store_refuses_calls_past_its_pool(postgres_url: str) -> None:
    """With every pooled connection in use, a further call waits DESKLINE_DB_POOL_TIMEOUT_S in
    line and gets StoreUnavailable ("busy"); once one comes back, calls go through again."""
    from deskline.eventlog.database import DbTimeouts

    SqlEventStore(make_engine(postgres_url))  # the schema
    store = PgEventStore(postgres_url, DbTimeouts(pool_size=1, max_overflow=0, pool_s=0.2))

    async def crowd() -> None:
        async with store._conn():  # the pool's only connection, held
            started = asyncio.get_running_loop().time()
            with pytest.raises(StoreUnavailable, match="busy"):
                await store.load("c1")
            assert asyncio.get_running_loop().time() - started >= 0.2
        assert await store.load("c1") == []
        await store.dispose()

    asyncio.run(crowd())


def test_the_executor_refuses_calls_past_its_bound() -> None:
    """With every worker busy and the queue full, a further call waits its bounded time and gets
    StoreUnavailable instead of piling up; calls already admitted still finish."""
    import threading

    release = threading.Event()

    class Stuck(MemoryEventStore):
        def load(self, conversation_id: str, after: int = 0) -> list[Any]:
            release.wait(10)
            return super().load(conversation_id, after)

    executor = ExecutorEventStore(Stuck(), workers=1, queue=1, wait_s=0.05)

    async def crowd() -> list[Any]:
        admitted = [asyncio.ensure_future(executor.load("c1")) for _ in range(2)]
        await asyncio.sleep(0)
        with pytest.raises(StoreUnavailable):
            await executor.load("c1")
        release.set()
        return list(await asyncio.gather(*admitted))

    assert asyncio.run(crowd()) == [[], []]
    executor.close()


def test_unfinished_lists_accepted_messages_without_an_ending(store: EventStore) -> None:
    """A message opens a turn until a reply or a hold closes it; unfinished() lists the open ones."""
    store.append("a", 0, 1, [msg("a1")])
    store.append("b", 0, 1, [msg("b1")])
    assert sorted(store.unfinished()) == [("a", 1), ("b", 1)]
    store.append("a", 1, 1, [ReplySent(text="ok", department="other", mode="clarify")])
    assert store.unfinished() == [("b", 1)]
    assert store.unfinished(accepted_before=0.0) == []


REPLY = ReplySent(text="ok", department="other", mode="clarify")


def test_a_turn_is_leased_to_one_holder_at_a_time(store: EventStore) -> None:
    """lease() takes an open turn for its holder, renews it for the same holder, refuses another
    holder while it runs, lets another take it once it has run out, and refuses a closed turn."""
    store.append("c1", 0, 1, [msg("hi")])
    assert store.lease("c1", 1, "desk-a", 30)
    assert store.lease("c1", 1, "desk-a", 30)
    assert not store.lease("c1", 1, "desk-b", 30)
    assert store.lease("c1", 1, "desk-a", -1)  # desk-a's lease has run out ...
    assert store.lease("c1", 1, "desk-b", 30)  # ... so desk-b takes over
    store.append("c1", 1, 1, [REPLY])
    assert not store.lease("c1", 1, "desk-b", 30)  # answered: nothing left to lease


def test_an_accepted_message_is_leased_to_its_holder(store: EventStore) -> None:
    """A message appended with a holder opens its turn already leased to that holder."""
    store.append("c1", 0, 1, [msg("hi")], holder="desk-a", ttl_s=30)
    assert not store.lease("c1", 1, "desk-b", 30)
    assert store.lease("c1", 1, "desk-a", 30)


def test_a_decision_is_appended_only_while_its_holder_keeps_the_lease(store: EventStore) -> None:
    """Closing a turn with a holder checks the lease in the same transaction: lost, nothing is
    written and the turn stays open for the desk that holds it now; kept, the turn closes."""
    store.append("c1", 0, 1, [msg("hi")], holder="desk-a", ttl_s=-1)  # desk-a stalls past its lease
    assert store.lease("c1", 1, "desk-b", 30)
    with pytest.raises(LeaseLost):
        store.append("c1", 1, 1, [REPLY], holder="desk-a", ttl_s=30)
    assert [r.seq for r in store.load("c1")] == [1]
    assert store.unfinished() == [("c1", 1)]
    store.append("c1", 1, 1, [REPLY], holder="desk-b", ttl_s=30)
    assert store.unfinished() == []
    assert [r.event.type for r in store.load("c1")] == ["customer_messaged", "reply_sent"]
