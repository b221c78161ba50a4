"""What the desk tells an observer: appended events, time per layer, store appends."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from deskline.eventlog.events import Recorded


class Observer(Protocol):
    def appended(self, records: Sequence[Recorded]) -> None: ...

    def stage(self, name: str, seconds: float) -> None: ...

    def store_append(self, seconds: float, conflict: bool) -> None: ...


class NullObserver:
    def appended(self, records: Sequence[Recorded]) -> None:
        return None

    def stage(self, name: str, seconds: float) -> None:
        return None

    def store_append(self, seconds: float, conflict: bool) -> None:
        return None
