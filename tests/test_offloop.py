"""Skills over a blocking system of record run on worker threads, never on the event loop."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from deskline.agents.builtin.backend.memory import MemoryBackend
from deskline.config import Settings
from deskline.hierarchy.offloop import blocking
from deskline.runtime import memory_desk, open_desk


class BlockingMemory(MemoryBackend):
    """The demo records, saying they block, and noting which thread each read ran on."""

    blocking = True

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[str] = []

    def invoice(self, *args: Any, **kwargs: Any) -> Any:
        self.threads.append(threading.current_thread().name)
        return super().invoice(*args, **kwargs)

    def payments(self, *args: Any, **kwargs: Any) -> Any:  # what the entity resolvers read
        self.threads.append(threading.current_thread().name)
        return super().payments(*args, **kwargs)


def test_a_blocking_system_of_record_runs_its_skills_off_the_loop() -> None:
    records = BlockingMemory()
    desk = memory_desk()
    desk.operator.backend, desk.operator.off_loop = records, True
    loop_thread = threading.current_thread().name
    result = asyncio.run(desk.handle("c1", "what's the status of invoice INV-1001?"))
    assert result.department == "billing" and "INV-1001" in (result.reply or "")
    assert records.threads and all(t.startswith("deskline-skill") and t != loop_thread for t in records.threads)


def test_process_memory_and_sqlite_stay_on_the_loop_and_postgres_goes_off_it(sqlite_url: str,
                                                                             postgres_url: str) -> None:
    assert not memory_desk().operator.off_loop
    assert not open_desk(Settings(database_url=sqlite_url)).operator.off_loop
    desk = open_desk(Settings(database_url=postgres_url))
    assert blocking(desk.records) and desk.operator.off_loop
    result = asyncio.run(desk.handle("c1", "I was charged twice for invoice INV-1001"))
    assert result.department == "billing" and "CH-2002" in (result.reply or "")


def test_entity_resolvers_over_a_blocking_system_of_record_run_off_the_loop() -> None:
    """'my payment to Brightwater' is resolved by reading the customer's payments: on a worker
    thread when the records block, so one conversation's read never stalls the others."""
    records = BlockingMemory()
    desk = memory_desk()
    desk.operator.backend, desk.operator.off_loop = records, True
    loop_thread = threading.current_thread().name
    result = asyncio.run(desk.handle("c1", "my payment to Brightwater Utilities has not arrived"))
    assert result.department == "payment" and "PAY-3002" in (result.reply or "")
    assert records.threads and all(t.startswith("deskline-skill") and t != loop_thread for t in records.threads)
