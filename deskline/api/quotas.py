"""Quotas: how much one client address, conversation, customer, or the whole desk may use.

A refusal is a ``RateLimited`` (``rate_limited``: a rate, slow down) or ``QuotaExceeded``
(``quota_exceeded``: a cap is spent) error, answered as 429 with ``Retry-After`` and a body naming
the quota; it is counted in ``deskline_quota_refusals_total{limit=...}``, and it is decided before
anything is appended, so a refused request changes nothing. The limits and their defaults are in
``deskline.api.settings``; each is off at 0, and ``DESKLINE_QUOTAS=off`` turns all of them off.

Rates are counted with the ``limits`` library: a moving window for what one client does
(conversations per address, messages per conversation, actions per customer, wrong agent keys):
exact, with no double burst at a window's edge; a fixed window for the desk-wide model budget,
which is charged after each turn by amount (its model calls, its spend in micro-dollars).

Where counts live: this process's memory (``memory://``) by default; Redis when
``DESKLINE_RATE_LIMIT_STORAGE`` is a ``redis://`` URL, or when it is unset and
``DESKLINE_REDIS_URL`` is set, and then every API process shares them. If Redis stops answering,
each process counts in its own memory until it answers again (tried every few seconds): the
limits stay on, per process, rather than off.

What is counted where:

* conversations per client address: when ``POST /v1/conversations`` is called (before the
  customer token is checked, so guessing tokens costs quota too);
* messages per conversation: each message that is not the replay of a finished one, and each
  ``/verify`` (it appends too);
* turns and bytes per conversation: read from the conversation's own log (its state), so these
  lifetime caps hold across processes whatever the storage;
* actions per customer: the ``action_completed`` events a signed-in customer's turns appended,
  counted after each turn; a turn is refused while the customer's hour is spent (a turn may do
  more than one action, so the last admitted turn can pass the cap by its own actions);
* the desk-wide model budget (when the desk has a models file): each turn's ``llm_calls`` and
  ``cost_usd``, counted after the turn; a turn is refused while a window is spent;
* wrong agent keys per client address and per key id: counted on each failure; while either is
  spent a key is not even checked (no scrypt work), except a key this process verified a moment
  ago, so an attack on an agent's key id does not sign the agent out.

Open event streams are a concurrent count, not a rate: a stream takes a slot when it opens and
gives it back when it ends. A slot is a lease (``stream_lease_s``, at least 30 s) that the stream
renews every ``DESKLINE_STREAM_RECHECK_S``; in Redis the slots are a sorted set scored by expiry,
so the count is shared by every process and the slots of a process that died free themselves
when their leases run out. Without Redis the count is per process.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, NoReturn, Protocol, TypeVar

import structlog
from limits import RateLimitItem, RateLimitItemPerDay, RateLimitItemPerHour, RateLimitItemPerMinute
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter

from deskline.api.settings import WebSettings
from deskline.errors import ConfigError, DesklineError

if TYPE_CHECKING:
    from fastapi import Request

    from deskline.observe.metrics import DeskMetrics

log = structlog.get_logger("deskline.api.quotas")
T = TypeVar("T")

LIFETIME_RETRY_S = 86_400  # a conversation's lifetime cap never frees up: open a new conversation
STREAM_RETRY_S = 5  # a stream slot frees when another stream of the same token or address ends
STORAGE_RETRY_S = 5.0  # how long a process counts in memory after Redis failed, before trying again
MICRO_USD = 1_000_000
DESK = "desk"  # the identifier of the desk-wide windows


class RateLimited(DesklineError):
    """Too many requests in a window: try again after ``retry_after_s``."""

    code = "rate_limited"

    def __init__(self, message: str, *, quota: str, retry_after_s: int) -> None:
        super().__init__(message, quota=quota, retry_after_s=retry_after_s)
        self.quota = quota
        self.retry_after_s = retry_after_s


class QuotaExceeded(RateLimited):
    """A cap is spent: a conversation's lifetime, the desk's model budget, open streams."""

    code = "quota_exceeded"


@dataclass(frozen=True, slots=True)
class Window:
    name: str  # the quota's name: the metric's label and the body's ``quota``
    item: RateLimitItem
    per: str  # "minute", "hour", "day": for the message


def _windows(*specs: tuple[str, float, type[RateLimitItem], str]) -> tuple[Window, ...]:
    return tuple(Window(name, kind(int(amount)), per) for name, amount, kind, per in specs if amount > 0)


def _hashed(value: str) -> str:
    """An identifier for a storage key: fixed length, no separators, nothing personal in Redis."""
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _seconds_until(moment: float) -> int:
    return max(1, math.ceil(moment - time.time()))


class _Limiters:
    def __init__(self, storage: Any) -> None:
        self.storage = storage
        self.moving = MovingWindowRateLimiter(storage)
        self.fixed = FixedWindowRateLimiter(storage)


# --- stream slots ----------------------------------------------------------------------------


class Leases(Protocol):
    def acquire(self, key: str, member: str, limit: int, ttl_s: float) -> bool: ...

    def refresh(self, key: str, member: str, ttl_s: float) -> None: ...

    def release(self, key: str, member: str) -> None: ...

    def count(self, key: str) -> int: ...


class MemoryLeases:
    """Slots in this process: key -> {member: lease expiry}."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, dict[str, float]] = {}

    def _live(self, key: str, now: float) -> dict[str, float]:
        held = self._held.setdefault(key, {})
        for member in [m for m, until in held.items() if until <= now]:
            del held[member]
        return held

    def acquire(self, key: str, member: str, limit: int, ttl_s: float) -> bool:
        now = time.time()
        with self._lock:
            held = self._live(key, now)
            if len(held) >= limit:
                return False
            held[member] = now + ttl_s
            return True

    def refresh(self, key: str, member: str, ttl_s: float) -> None:
        with self._lock:
            self._held.setdefault(key, {})[member] = time.time() + ttl_s

    def release(self, key: str, member: str) -> None:
        with self._lock:
            held = self._held.get(key)
            if held is not None:
                held.pop(member, None)
                if not held:
                    del self._held[key]

    def count(self, key: str) -> int:
        with self._lock:
            n = len(self._live(key, time.time()))
            if not n:
                self._held.pop(key, None)
            return n


_ACQUIRE = """
local now = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[4])
redis.call('EXPIRE', KEYS[1], math.ceil(ttl) + 1)
return 1
"""


class RedisLeases:
    """Slots shared by every process: a sorted set per key, members scored by their lease expiry."""

    def __init__(self, client: Any, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self._acquire = client.register_script(_ACQUIRE)

    def _key(self, key: str) -> str:
        return f"{self.prefix}:{key}"

    def acquire(self, key: str, member: str, limit: int, ttl_s: float) -> bool:
        return bool(self._acquire(keys=[self._key(key)], args=[time.time(), ttl_s, limit, member]))

    def refresh(self, key: str, member: str, ttl_s: float) -> None:
        with self.client.pipeline(transaction=False) as pipe:
            pipe.zadd(self._key(key), {member: time.time() + ttl_s})
            pipe.expire(self._key(key), math.ceil(ttl_s) + 1)
            pipe.execute()

    def release(self, key: str, member: str) -> None:
        self.client.zrem(self._key(key), member)

    def count(self, key: str) -> int:
        with self.client.pipeline(transaction=False) as pipe:
            pipe.zremrangebyscore(self._key(key), "-inf", time.time())
            pipe.zcard(self._key(key))
            return int(pipe.execute()[1])


@dataclass(slots=True)
class StreamSlot:
    """The slots one open stream holds; renew while it runs, release (once) when it ends."""

    leases: Leases
    keys: tuple[str, ...]
    member: str
    ttl_s: float
    released: bool = False

    def refresh(self) -> None:
        if self.released:
            return
        try:
            for key in self.keys:
                self.leases.refresh(key, self.member, self.ttl_s)
        except Exception as exc:  # Redis away: the lease runs out and the slot frees itself
            log.warning("quotas.slot_refresh_failed", error=type(exc).__name__)

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        try:
            for key in self.keys:
                self.leases.release(key, self.member)
        except Exception as exc:
            log.warning("quotas.slot_release_failed", error=type(exc).__name__)


# --- the quotas ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Turn:
    """What the customer's conversation holds before a message: the numbers its quotas need."""

    turns: int
    text_bytes: int
    customer: str | None  # a signed-in customer's id; None for anonymous conversations


@dataclass
class Quotas:
    """Every quota of one app, over one storage (see the module docstring)."""

    web: WebSettings
    metrics: DeskMetrics | None = None
    on: bool = field(init=False)
    shared: bool = field(init=False)

    def __post_init__(self) -> None:
        w = self.web
        w.check_quotas()
        self.on = w.quotas
        self.proxies = tuple(ipaddress.ip_network(p, strict=False) for p in w.trusted_proxies)
        self.stream_lease_s = max(30.0, 6 * w.stream_recheck_s)
        self._local = _Limiters(MemoryStorage())
        self._local_leases: Leases = MemoryLeases()
        self._down_until = 0.0
        uri = w.quota_storage
        self.shared = not uri.startswith("memory://") and self.on
        if self.shared:
            storage = _redis_storage(uri, f"{w.rate_limit_prefix}:quota")
            self._primary = _Limiters(storage)
            self._leases: Leases = RedisLeases(storage.get_connection(), f"{w.rate_limit_prefix}:quota")
        else:
            self._primary, self._leases = self._local, self._local_leases
        self.conversations = _windows(
            ("conversations_per_ip_minute", w.conversations_per_ip_minute, RateLimitItemPerMinute, "minute"),
            ("conversations_per_ip_day", w.conversations_per_ip_day, RateLimitItemPerDay, "day"))
        self.messages = _windows(
            ("messages_per_conversation_minute", w.messages_per_conversation_minute, RateLimitItemPerMinute,
             "minute"))
        self.actions = _windows(
            ("actions_per_customer_hour", w.actions_per_customer_hour, RateLimitItemPerHour, "hour"))
        self.model_calls = _windows(
            ("model_calls_per_minute", w.model_calls_per_minute, RateLimitItemPerMinute, "minute"),
            ("model_calls_per_day", w.model_calls_per_day, RateLimitItemPerDay, "day"))
        self.model_spend = _windows(
            ("model_spend_per_minute_usd", round(w.model_spend_per_minute_usd * MICRO_USD), RateLimitItemPerMinute,
             "minute"),
            ("model_spend_per_day_usd", round(w.model_spend_per_day_usd * MICRO_USD), RateLimitItemPerDay, "day"))
        self.key_failures_ip = _windows(
            ("key_failures_per_ip_minute", w.key_failures_per_ip_minute, RateLimitItemPerMinute, "minute"))
        self.key_failures_key = _windows(
            ("key_failures_per_key_minute", w.key_failures_per_key_minute, RateLimitItemPerMinute, "minute"))

    # plumbing ------------------------------------------------------------------------------
    def _storage(self, run: Callable[[_Limiters], T]) -> T:
        """``run`` on the shared storage, or on this process's memory while Redis is away."""
        if self._primary is not self._local and time.monotonic() >= self._down_until:
            try:
                return run(self._primary)
            except Exception as exc:
                self._down_until = time.monotonic() + STORAGE_RETRY_S
                log.warning("quotas.storage_down", error=type(exc).__name__, counting="in process memory",
                            retry_in_s=STORAGE_RETRY_S)
        return run(self._local)

    def _slots(self, run: Callable[[Leases], T]) -> tuple[Leases, T]:
        if self._leases is not self._local_leases and time.monotonic() >= self._down_until:
            try:
                return self._leases, run(self._leases)
            except Exception as exc:
                self._down_until = time.monotonic() + STORAGE_RETRY_S
                log.warning("quotas.storage_down", error=type(exc).__name__, counting="in process memory",
                            retry_in_s=STORAGE_RETRY_S)
        return self._local_leases, run(self._local_leases)

    def refuse(self, kind: type[RateLimited], quota: str, message: str, retry_after_s: int) -> NoReturn:
        """Count the refusal and raise it (the API answers 429 with ``Retry-After``)."""
        if self.metrics is not None:
            self.metrics.quota_refusals.labels(quota).inc()
        log.info("api.quota_refused", quota=quota, retry_after_s=retry_after_s)
        raise kind(message, quota=quota, retry_after_s=retry_after_s)

    @staticmethod
    def _moving_refusal(lim: _Limiters, checks: Sequence[tuple[Window, str]], *, cost: int = 1,
                        hit: bool = True) -> tuple[Window, int] | None:
        """Test every window, then take one from each (all or, up to a race, none); the first
        window that is spent and the seconds until it has room, or None."""
        for window, ident in checks:
            if not lim.moving.test(window.item, window.name, ident, cost=cost):
                reset = lim.moving.get_window_stats(window.item, window.name, ident).reset_time
                return window, _seconds_until(reset)
        if hit:
            for window, ident in checks:
                if not lim.moving.hit(window.item, window.name, ident, cost=cost):
                    reset = lim.moving.get_window_stats(window.item, window.name, ident).reset_time
                    return window, _seconds_until(reset)
        return None

    @staticmethod
    def _fixed_refusal(lim: _Limiters, windows: Sequence[Window]) -> tuple[Window, int] | None:
        for window in windows:
            if not lim.fixed.test(window.item, window.name, DESK):
                return window, _seconds_until(lim.fixed.get_window_stats(window.item, window.name, DESK).reset_time)
        return None

    # the client -------------------------------------------------------------------------------
    def client_ip(self, request: Request) -> str:
        """The caller's address: the peer's, or (only from a trusted proxy) the nearest untrusted
        address in ``X-Forwarded-For``."""
        peer = request.client.host if request.client is not None else "unknown"
        if not self.proxies or not self._trusted(peer):
            return peer
        hops = [h.strip() for value in request.headers.getlist("x-forwarded-for") for h in value.split(",")]
        for hop in reversed([h for h in hops if h]):
            if not self._trusted(hop):
                try:
                    return str(ipaddress.ip_address(hop))
                except ValueError:
                    return peer  # garbage from behind the proxy: believe nothing further
        return peer

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.proxies)

    # conversations and messages -------------------------------------------------------------
    def open_conversation(self, ip: str) -> None:
        """Count a new conversation from this address, or refuse it."""
        if not self.on or not self.conversations:
            return
        refused = self._storage(lambda lim: self._moving_refusal(lim, [(w, ip) for w in self.conversations]))
        if refused is not None:
            window, retry = refused
            self.refuse(RateLimited, window.name, f"too many new conversations from this address: the limit is "
                        f"{window.item.amount} a {window.per}; try again in {retry} s", retry)

    def admit_message(self, conversation_id: str, turn: Turn, new_bytes: int, *, models: bool) -> None:
        """Refuse a message the conversation, the customer or the desk cannot afford; else count it."""
        w = self.web
        if not self.on:
            return
        if w.turns_per_conversation and turn.turns >= w.turns_per_conversation:
            self.refuse(QuotaExceeded, "turns_per_conversation",
                        f"this conversation has reached its limit of {w.turns_per_conversation} messages; "
                        "please start a new conversation", LIFETIME_RETRY_S)
        if w.bytes_per_conversation and turn.text_bytes + new_bytes > w.bytes_per_conversation:
            self.refuse(QuotaExceeded, "bytes_per_conversation",
                        f"this conversation has reached its limit of {w.bytes_per_conversation} bytes of text; "
                        "please start a new conversation", LIFETIME_RETRY_S)
        customer = _hashed(turn.customer) if turn.customer else None

        def run(lim: _Limiters) -> tuple[type[RateLimited], Window, str, int] | None:
            if models:
                spent = self._fixed_refusal(lim, (*self.model_calls, *self.model_spend))
                if spent is not None:
                    window, retry = spent
                    return (QuotaExceeded, window, f"the desk's model budget for this {window.per} is spent; "
                            f"try again in {retry} s", retry)
            if customer is not None and self.actions:
                acted = self._moving_refusal(lim, [(self.actions[0], customer)], hit=False)
                if acted is not None:
                    window, retry = acted
                    return (RateLimited, window, f"this account has reached its limit of {window.item.amount} "
                            f"actions an hour; try again in {retry} s", retry)
            if self.messages:
                busy = self._moving_refusal(lim, [(self.messages[0], conversation_id)])
                if busy is not None:
                    window, retry = busy
                    return (RateLimited, window, f"too many messages in this conversation: the limit is "
                            f"{window.item.amount} a {window.per}; try again in {retry} s", retry)
            return None

        refused = self._storage(run)
        if refused is not None:
            self.refuse(refused[0], refused[1].name, refused[2], refused[3])

    def admit_verify(self, conversation_id: str) -> None:
        """A ``/verify`` appends an event too: it counts against the conversation's message rate."""
        if not self.on or not self.messages:
            return
        busy = self._storage(lambda lim: self._moving_refusal(lim, [(self.messages[0], conversation_id)]))
        if busy is not None:
            window, retry = busy
            self.refuse(RateLimited, window.name, f"too many requests in this conversation: the limit is "
                        f"{window.item.amount} a {window.per}; try again in {retry} s", retry)

    def charge_turn(self, customer: str | None, *, actions: int, llm_calls: int, cost_usd: Decimal,
                    models: bool) -> None:
        """What a finished turn used: its actions (for a signed-in customer) and its model calls and
        spend (for the desk)."""
        if not self.on:
            return
        spend = math.ceil(cost_usd * MICRO_USD) if cost_usd > 0 else 0

        def run(lim: _Limiters) -> None:
            if customer and actions > 0 and self.actions:
                for _ in range(actions):  # one at a time: a hit that would overflow records nothing
                    lim.moving.hit(self.actions[0].item, self.actions[0].name, _hashed(customer))
            if models:
                for window in self.model_calls if llm_calls > 0 else ():
                    lim.fixed.hit(window.item, window.name, DESK, cost=llm_calls)
                for window in self.model_spend if spend > 0 else ():
                    lim.fixed.hit(window.item, window.name, DESK, cost=spend)

        self._storage(run)

    # agent keys -----------------------------------------------------------------------------
    def _key_checks(self, ip: str, key_id: str | None) -> list[tuple[Window, str]]:
        checks = [(w, ip) for w in self.key_failures_ip]
        if key_id is not None:
            checks += [(w, key_id) for w in self.key_failures_key]
        return checks

    def admit_key_attempt(self, ip: str, key_id: str | None) -> None:
        """Refuse to even check a key while this address, or this key id, has too many failures."""
        if not self.on:
            return
        checks = self._key_checks(ip, key_id)
        refused = self._storage(lambda lim: self._moving_refusal(lim, checks, hit=False)) if checks else None
        if refused is not None:
            window, retry = refused
            whose = "this address" if window.name == "key_failures_per_ip_minute" else "this key id"
            self.refuse(RateLimited, window.name, f"too many wrong agent keys from {whose}: the limit is "
                        f"{window.item.amount} a {window.per}; try again in {retry} s", retry)

    def key_failed(self, ip: str, key_id: str | None) -> None:
        if not self.on:
            return
        checks = self._key_checks(ip, key_id)

        def run(lim: _Limiters) -> None:
            for window, ident in checks:
                lim.moving.hit(window.item, window.name, ident)

        self._storage(run)

    # streams --------------------------------------------------------------------------------
    def open_stream(self, claims: Sequence[tuple[str, str, int]]) -> StreamSlot | None:
        """Take a slot in each ``(quota, identifier, limit)`` (all or none), or refuse."""
        claims = [(quota, ident, limit) for quota, ident, limit in claims if limit > 0]
        if not self.on or not claims:
            return None
        member = uuid.uuid4().hex

        def run(leases: Leases) -> tuple[str, int] | None:
            taken: list[str] = []
            for quota, ident, limit in claims:
                key = f"streams:{quota}:{ident}"
                if not leases.acquire(key, member, limit, self.stream_lease_s):
                    for held in taken:
                        leases.release(held, member)
                    return quota, limit
                taken.append(key)
            return None

        leases, refused = self._slots(run)
        if refused is not None:
            quota, limit = refused
            whose = "this conversation" if quota == "streams_per_conversation" else "this address"
            self.refuse(QuotaExceeded, quota, f"{whose} already has {limit} open event streams; close one "
                        f"(or wait for one to end) and try again", STREAM_RETRY_S)
        keys = tuple(f"streams:{quota}:{ident}" for quota, ident, _ in claims)
        return StreamSlot(leases, keys, member, self.stream_lease_s)

    def open_streams(self, quota: str, ident: str) -> int:
        """How many slots are held now (for tests and diagnostics)."""
        key = f"streams:{quota}:{ident}"
        return self._slots(lambda leases: leases.count(key))[1]


def _redis_storage(uri: str, prefix: str) -> Any:
    try:
        return storage_from_string(uri, key_prefix=prefix, wrap_exceptions=True,
                                   socket_connect_timeout=1, socket_timeout=1)
    except Exception as exc:  # limits.errors.ConfigurationError: the redis package is missing
        raise ConfigError(f"cannot use {uri.split('@')[-1]!r} for quotas: {exc}") from exc
