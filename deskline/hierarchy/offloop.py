"""Skills over a synchronous system of record, run off the event loop.

A skill is an ``async`` function, but a desk's system of record is often synchronous (an ORM
session, a database driver): on PostgreSQL each of its round trips would stop every other
conversation of the process while it waits. A system of record that says so (``blocking = True``)
has its local skills run on a bounded pool of worker threads, each with an event loop of its own
(``asyncio.Runner``), in the caller's context (so tracing spans keep their parent). Remote agents'
skills and non-blocking systems of record (process memory, SQLite) run on the loop as before: a
thread hop costs more than their calls.

A skill that outlives its step's timeout keeps its worker until it returns (a thread cannot be
cancelled); the step's idempotency key makes its retry safe, and the pool's bound keeps such
stragglers from taking the process.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = ["blocking", "call_off_loop", "run_off_loop"]

T = TypeVar("T")
WORKERS = int(os.environ.get("DESKLINE_SKILL_WORKERS", "16"))

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
_local = threading.local()


def blocking(records: Any) -> bool:
    """Whether ``records`` waits on I/O synchronously (it says so with ``blocking = True``)."""
    return bool(getattr(records, "blocking", False))


def _executor() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="deskline-skill")
    return _pool


def _run(fn: Callable[[Any], Awaitable[T]], call: Any, context: contextvars.Context) -> T:
    runner: asyncio.Runner | None = getattr(_local, "runner", None)
    if runner is None:
        runner = _local.runner = asyncio.Runner()
    return runner.run(fn(call), context=context)  # type: ignore[arg-type]


async def run_off_loop(fn: Callable[[Any], Awaitable[T]], call: Any) -> T:
    """``await fn(call)``, run on a worker thread's own loop."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_executor(), _run, fn, call, contextvars.copy_context())


async def call_off_loop(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)``, a plain synchronous call (an entity resolver reading the system of record),
    on a worker thread, in the caller's context."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_executor(), functools.partial(contextvars.copy_context().run, fn, *args))
