"""The exact route cache: the first stage of the cascade, keyed by normalised text.

In process, bounded (LRU), with a time to live, and keyed by the configuration too (the
namespace), so a changed threshold or models file never serves an old plan. It holds plans from
the classifier and from the LLM planner at temperature 0 alike: the same text gets the same plan.
With a Redis URL (``deskline.redis_url`` in the models file) plans are shared between processes
too, with the same TTL: a local miss asks Redis, and every new plan is written to both.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

from deskline.errors import ConfigError
from deskline.handoffs.plan import Plan


class SharedPlans(Protocol):
    def get(self, key: str) -> Plan | None: ...

    def put(self, key: str, plan: Plan, ttl_s: float) -> None: ...


class RedisPlans:
    """Plans in Redis under ``deskline:plan:<namespace><text>``, expiring after the TTL."""

    def __init__(self, url: str) -> None:
        try:
            import redis
        except ImportError as exc:  # pragma: no cover - the extra is not installed
            raise ConfigError("a redis_url needs the redis package: pip install 'deskline[models]'") from exc
        self.client: Any = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._errors = (redis.RedisError, OSError)

    def get(self, key: str) -> Plan | None:
        try:
            raw = self.client.get("deskline:plan:" + key)
        except self._errors:
            return None  # a cache that cannot answer is a miss, never an outage
        return Plan.model_validate_json(raw) if raw else None

    def put(self, key: str, plan: Plan, ttl_s: float) -> None:
        try:
            self.client.set("deskline:plan:" + key, plan.model_dump_json(), ex=max(1, int(ttl_s)))
        except self._errors:
            return


class RouteCache:
    def __init__(self, capacity: int = 10_000, namespace: str = "", ttl_s: float = 3600.0,
                 clock: Callable[[], float] = time.monotonic, shared: SharedPlans | None = None) -> None:
        self.capacity = capacity
        self.namespace = namespace
        self.ttl_s = ttl_s
        self.clock = clock
        self._items: OrderedDict[str, tuple[float, Plan]] = OrderedDict()
        self.shared = shared
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> Plan | None:
        full = self.namespace + key
        item = self._items.get(full)
        if item is None or item[0] < self.clock():
            if item is not None:
                del self._items[full]
            plan = self.shared.get(full) if self.shared is not None else None
            if plan is None:
                self.misses += 1
                return None
            self._remember(full, plan)
            self.hits += 1
            return plan
        self._items.move_to_end(full)
        self.hits += 1
        return item[1]

    def put(self, key: str, plan: Plan) -> None:
        full = self.namespace + key
        self._remember(full, plan)
        if self.shared is not None:
            self.shared.put(full, plan, self.ttl_s)

    def _remember(self, full: str, plan: Plan) -> None:
        self._items[full] = (self.clock() + self.ttl_s, plan)
        self._items.move_to_end(full)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)
