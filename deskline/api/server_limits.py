"""What ``deskline serve`` gives uvicorn: timeouts, a concurrency limit, and a read deadline.

uvicorn closes a connection that stays idle after a response (``timeout_keep_alive``), but has
no deadline for *reading* a request: a client that connects and then trickles its headers or
body a byte every few seconds holds the connection forever (and never reaches the app, so no
ASGI middleware can see it). ``ReadDeadlineH11`` adds one: from the first byte of a request (or
from the connection's start) the whole request, headers and body, must arrive within
``DESKLINE_REQUEST_READ_TIMEOUT_S``, else the connection is closed. Once the request is read the
deadline is off: a slow turn or a long event stream is not cut by it.

| variable | default | meaning |
| --- | --- | --- |
| ``DESKLINE_REQUEST_READ_TIMEOUT_S`` | 10 | a request's headers and body must arrive within this, or it is closed |
| ``DESKLINE_KEEP_ALIVE_S`` | 5 | an idle keep-alive connection is closed after this |
| ``DESKLINE_LIMIT_CONCURRENCY`` | 1000 | connections + requests per process before new ones get 503 (0: none) |
| ``DESKLINE_MAX_HEADER_BYTES`` | 16384 | a request head larger than this is refused (h11's incomplete-event limit) |
| ``DESKLINE_GRACEFUL_SHUTDOWN_S`` | 15 | on SIGTERM, how long requests in flight (turns, streams) may still run |
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from deskline.errors import ConfigError


@dataclass(frozen=True, slots=True)
class ServerLimits:
    request_read_timeout_s: float = 10.0
    keep_alive_s: int = 5
    limit_concurrency: int = 1000
    max_header_bytes: int = 16 * 1024
    graceful_shutdown_s: int = 15

    @classmethod
    def from_env(cls) -> ServerLimits:
        base = cls()

        def number(name: str, default: float, kind: type) -> Any:
            raw = os.environ.get(f"DESKLINE_{name}", "").strip()
            try:
                value = kind(raw) if raw else default
            except ValueError as exc:
                raise ConfigError(f"DESKLINE_{name} must be a number, not {raw!r}") from exc
            if value < 0:
                raise ConfigError(f"DESKLINE_{name} must be >= 0")
            return value

        limits = cls(
            request_read_timeout_s=number("REQUEST_READ_TIMEOUT_S", base.request_read_timeout_s, float),
            keep_alive_s=number("KEEP_ALIVE_S", base.keep_alive_s, int),
            limit_concurrency=number("LIMIT_CONCURRENCY", base.limit_concurrency, int),
            max_header_bytes=number("MAX_HEADER_BYTES", base.max_header_bytes, int),
            graceful_shutdown_s=number("GRACEFUL_SHUTDOWN_S", base.graceful_shutdown_s, int),
        )
        if limits.request_read_timeout_s <= 0 or limits.keep_alive_s <= 0 or limits.max_header_bytes < 1024:
            raise ConfigError("DESKLINE_REQUEST_READ_TIMEOUT_S and DESKLINE_KEEP_ALIVE_S must be > 0, "
                              "DESKLINE_MAX_HEADER_BYTES >= 1024")
        return limits

    def uvicorn_options(self) -> dict[str, Any]:
        return {
            "http": ReadDeadlineH11,
            "timeout_keep_alive": self.keep_alive_s,
            "limit_concurrency": self.limit_concurrency or None,
            "h11_max_incomplete_event_size": self.max_header_bytes,
            "timeout_graceful_shutdown": self.graceful_shutdown_s,
        }


_READING = (h11.IDLE, h11.SEND_BODY)  # the client's side while its request is not fully read


class ReadDeadlineH11(H11Protocol):
    """uvicorn's h11 protocol with a deadline on reading each request (see the module doc).

    The deadline is read from the environment in each process (workers import this class)."""

    read_timeout_s: float = ServerLimits.from_env().request_read_timeout_s
    timed_out = 0  # connections this process closed for a late request (tests, debugging)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._read_deadline: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._arm()  # a connection that never sends a byte is closed too

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state in _READING:
            self._arm()
        super().data_received(data)
        if self.conn.their_state not in _READING:
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._read_deadline is None:
            self._read_deadline = self.loop.call_later(self.read_timeout_s, self._late)

    def _disarm(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def _late(self) -> None:
        self._read_deadline = None
        if self.transport.is_closing() or self.conn.their_state not in _READING:
            return
        if self.conn.their_state is h11.IDLE and self.cycle is not None and not self.cycle.response_complete:
            return  # between a request and its response: not reading
        type(self).timed_out += 1
        self.logger.info("closing a connection whose request did not arrive within %.0f s", self.read_timeout_s)
        self.transport.close()
