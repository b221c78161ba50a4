"""The exact route cache: the first stage of the cascade, keyed by normalised text.

In process, bounded (LRU), with a time to live, and keyed by the configuration too (the
namespace), so a changed threshold or models file never serves an old plan. It holds plans from
the classifier and from the LLM planner at temperature 0 alike: the same text gets the same plan.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from deskline.handoffs.plan import Plan


class RouteCache:
    def __init__(self, capacity: int = 10_000, namespace: str = "", ttl_s: float = 3600.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = capacity
        self.namespace = namespace
        self.ttl_s = ttl_s
        self.clock = clock
        self._items: OrderedDict[str, tuple[float, Plan]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> Plan | None:
        full = self.namespace + key
        item = self._items.get(full)
        if item is None or item[0] < self.clock():
            if item is not None:
                del self._items[full]
            self.misses += 1
            return None
        self._items.move_to_end(full)
        self.hits += 1
        return item[1]

    def put(self, key: str, plan: Plan) -> None:
        full = self.namespace + key
        self._items[full] = (self.clock() + self.ttl_s, plan)
        self._items.move_to_end(full)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)
