"""The exact route cache: the first stage of the cascade, keyed by normalised text.

In process, bounded (LRU), and keyed by the configuration too, so a changed threshold or model
never serves an old route.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from deskline.handoffs.payload import Department


@dataclass(frozen=True, slots=True)
class CachedRoute:
    department: Department
    intent: str
    confidence: float


class RouteCache:
    def __init__(self, capacity: int = 10_000, namespace: str = "") -> None:
        self.capacity = capacity
        self.namespace = namespace
        self._items: OrderedDict[str, CachedRoute] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> CachedRoute | None:
        route = self._items.get(self.namespace + key)
        if route is None:
            self.misses += 1
            return None
        self._items.move_to_end(self.namespace + key)
        self.hits += 1
        return route

    def put(self, key: str, route: CachedRoute) -> None:
        self._items[self.namespace + key] = route
        self._items.move_to_end(self.namespace + key)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)
