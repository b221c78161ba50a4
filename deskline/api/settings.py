"""Settings of the web layer only, read from ``DESKLINE_*`` variables beside ``deskline.config``.

They live here rather than in ``Settings`` because nothing but the HTTP server reads them, and the
CLI's fast path (``deskline ask``) should not parse them.

| variable | default | meaning |
| --- | --- | --- |
| ``DESKLINE_CORS_ORIGINS`` | none | comma list of origins allowed to call the API from a browser |
| ``DESKLINE_SLA_SECONDS`` | 300 | an escalation unclaimed for longer is flagged in the queue |
| ``DESKLINE_MAX_BODY_BYTES`` | 65536 | larger request bodies are refused with 413 before parsing |
| ``DESKLINE_HOST`` / ``DESKLINE_PORT`` | 127.0.0.1 / 8000 | where ``deskline serve`` listens |
| ``DESKLINE_POLL_INTERVAL_S`` | 0.5 | how often a live stream reads the store when no event channel is live |
| ``DESKLINE_CHANNEL_POLL_INTERVAL_S`` | 5 | the same, while the event channel is live (a safety net) |
| ``DESKLINE_EVENT_CHANNEL`` | auto | ``auto``, ``postgres``, ``redis`` or ``none``: see ``deskline.api.bus`` |
| ``DESKLINE_REDIS_URL`` | none | Redis for the event channel (pub/sub), and for quotas unless the next names another |
| ``DESKLINE_JWT_SECRET`` | none | the host site's shared secret for customer tokens (HS256; 32+ bytes) |
| ``DESKLINE_JWT_PUBLIC_KEY`` | none | or its public key (PEM text or a file; RS256 / ES256) |
| ``DESKLINE_JWT_ISSUER`` / ``DESKLINE_JWT_AUDIENCE`` | none | the ``iss`` and ``aud`` a token must carry |
| ``DESKLINE_JWT_MAX_AGE_S`` | 900 | longest lifetime (``exp - iat``) of a customer token |
| ``DESKLINE_STREAM_RECHECK_S`` | 5 | how often a live stream re-checks its token or agent key (a revoked one ends it) |

Quotas (``deskline.api.quotas``). A refusal is a 429 with ``Retry-After`` and appends nothing.
Each number may be 0 to turn that one limit off; ``DESKLINE_QUOTAS=off`` turns all of them off
(benchmarks, load tests). Counts live in memory per process, or in Redis (shared) when one is set.

| variable | default | what it limits |
| --- | --- | --- |
| ``DESKLINE_QUOTAS`` | on | ``off``: every limit below (benchmarks only) |
| ``DESKLINE_RATE_LIMIT_STORAGE`` | memory:// | or ``redis://...``; unset, ``DESKLINE_REDIS_URL`` if that is set |
| ``DESKLINE_RATE_LIMIT_PREFIX`` | deskline | the prefix of the quota keys in Redis (two desks, one Redis) |
| ``DESKLINE_TRUSTED_PROXIES`` | none | proxy IPs / CIDRs whose ``X-Forwarded-For`` gives the client address |
| ``DESKLINE_CONVERSATIONS_PER_IP_MINUTE`` | 20 | conversations opened per client address per minute |
| ``DESKLINE_CONVERSATIONS_PER_IP_DAY`` | 200 | the same per day |
| ``DESKLINE_MESSAGES_PER_CONVERSATION_MINUTE`` | 20 | messages (and ``/verify`` calls) per conversation per minute |
| ``DESKLINE_TURNS_PER_CONVERSATION`` | 500 | messages in a conversation's lifetime |
| ``DESKLINE_BYTES_PER_CONVERSATION`` | 2000000 | bytes of customer text in a conversation's lifetime |
| ``DESKLINE_STREAMS_PER_CONVERSATION`` | 5 | open event streams per conversation token |
| ``DESKLINE_STREAMS_PER_IP`` | 50 | open event streams per client address (customers' and agents') |
| ``DESKLINE_ACTIONS_PER_CUSTOMER_HOUR`` | 30 | actions completed per signed-in customer per hour |
| ``DESKLINE_MODEL_CALLS_PER_MINUTE`` | 600 | model calls of the whole desk per minute (with a models file) |
| ``DESKLINE_MODEL_CALLS_PER_DAY`` | 50000 | the same per day |
| ``DESKLINE_MODEL_SPEND_PER_MINUTE_USD`` | 1 | model spend of the whole desk per minute, in dollars |
| ``DESKLINE_MODEL_SPEND_PER_DAY_USD`` | 20 | the same per day |
| ``DESKLINE_KEY_FAILURES_PER_IP_MINUTE`` | 20 | wrong agent keys (or tokens) for the console per address per minute |
| ``DESKLINE_KEY_FAILURES_PER_KEY_MINUTE`` | 10 | wrong secrets for one agent key id per minute |

Why these defaults: each is far above what one person in one chat window does and far below
what an attacker needs. A page load opens one conversation, so 20 a minute per address is only
reached by a script, and 200 a day leaves room for an office or mobile NAT behind one address.
People type a few messages a minute (20 allows bursts); the longest real support chats run to
dozens of turns (500 is ten times that; 2 MB is 500 messages of 4,000 characters). A customer has
a few tabs and a reconnect overlap open (5 streams); 50 per address covers an office. A customer
needs a handful of account changes an hour, not 30. 600 model calls a minute is ~5 turns a second
at two calls a turn, several times a mid-size desk's peak; $20 a day is a budget someone signs off,
and $1 a minute stops a runaway burst within a minute. Agents mistype a key now and then, not 20
times a minute; 10 wrong secrets a minute per key id slows guessing without locking an agent out
(a key this process verified recently is not refused).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

from deskline.errors import ConfigError

# The quota settings read from DESKLINE_<NAME.upper()>, all numbers (0: that limit is off).
QUOTA_NUMBERS = (
    "conversations_per_ip_minute",
    "conversations_per_ip_day",
    "messages_per_conversation_minute",
    "turns_per_conversation",
    "bytes_per_conversation",
    "streams_per_conversation",
    "streams_per_ip",
    "actions_per_customer_hour",
    "model_calls_per_minute",
    "model_calls_per_day",
    "model_spend_per_minute_usd",
    "model_spend_per_day_usd",
    "key_failures_per_ip_minute",
    "key_failures_per_key_minute",
)


@dataclass(frozen=True, slots=True)
class WebSettings:
    cors_origins: tuple[str, ...] = ()
    sla_seconds: float = 300.0
    max_body_bytes: int = 64 * 1024
    host: str = "127.0.0.1"
    port: int = 8000
    poll_interval_s: float = 0.5  # how often a live stream looks for events other processes appended
    heartbeat_s: float = 15.0  # a comment line keeps idle streams open through proxies
    agent_key_cache_s: float = 60.0  # a verified agent key skips the slow hash for this long
    channel_poll_interval_s: float = 5.0  # the poll while a cross-process event channel is live
    event_channel: str = "auto"  # auto | postgres | redis | none (see deskline.api.bus)
    redis_url: str | None = None  # Redis pub/sub for the event channel (and the quotas' counts)
    sweep_interval_s: float = 30.0  # how often to finish turns a dead process left open (0: never)
    jwt_secret: str | None = None  # the host site's shared secret for customer tokens
    jwt_public_key: str | None = None  # or its public key (PEM, or a path to one)
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_max_age_s: float = 900.0
    stream_recheck_s: float = 5.0  # a live stream re-checks its credential (and its slot) this often
    # quotas (deskline.api.quotas); 0 turns one limit off, quotas=False all of them
    quotas: bool = True
    rate_limit_storage: str | None = None  # memory:// or redis://...; None: redis_url if set, else memory
    rate_limit_prefix: str = "deskline"
    trusted_proxies: tuple[str, ...] = ()
    conversations_per_ip_minute: int = 20
    conversations_per_ip_day: int = 200
    messages_per_conversation_minute: int = 20
    turns_per_conversation: int = 500
    bytes_per_conversation: int = 2_000_000
    streams_per_conversation: int = 5
    streams_per_ip: int = 50
    actions_per_customer_hour: int = 30
    model_calls_per_minute: int = 600
    model_calls_per_day: int = 50_000
    model_spend_per_minute_usd: float = 1.0
    model_spend_per_day_usd: float = 20.0
    key_failures_per_ip_minute: int = 20
    key_failures_per_key_minute: int = 10

    def with_(self, **changes: object) -> WebSettings:
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def quota_storage(self) -> str:
        """Where the quotas count: the configured URI, else the event channel's Redis, else memory."""
        return self.rate_limit_storage or self.redis_url or "memory://"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WebSettings:
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            value = env.get(f"DESKLINE_{name}", "").strip()
            return value or None

        base = cls()
        kinds = {f.name: f.type for f in fields(cls)}
        try:
            origins = tuple(o.strip().rstrip("/") for o in (get("CORS_ORIGINS") or "").split(",") if o.strip())
            proxies = tuple(p.strip() for p in (get("TRUSTED_PROXIES") or "").split(",") if p.strip())
            numbers: dict[str, float | int] = {}
            for name in QUOTA_NUMBERS:
                raw = get(name.upper())
                if raw is not None:
                    numbers[name] = float(raw) if kinds[name] in ("float", float) else int(raw)
            switch = (get("QUOTAS") or "on").lower()
            if switch not in ("on", "off", "true", "false", "1", "0"):
                raise ValueError(f"DESKLINE_QUOTAS must be on or off, not {switch!r}")
            settings = replace(
                base,
                cors_origins=origins,
                sla_seconds=float(get("SLA_SECONDS") or base.sla_seconds),
                max_body_bytes=int(get("MAX_BODY_BYTES") or base.max_body_bytes),
                host=get("HOST") or base.host,
                port=int(get("PORT") or base.port),
                poll_interval_s=float(get("POLL_INTERVAL_S") or base.poll_interval_s),
                channel_poll_interval_s=float(get("CHANNEL_POLL_INTERVAL_S") or base.channel_poll_interval_s),
                event_channel=(get("EVENT_CHANNEL") or base.event_channel).lower(),
                redis_url=get("REDIS_URL"),
                sweep_interval_s=float(get("SWEEP_INTERVAL_S") or base.sweep_interval_s),
                jwt_secret=get("JWT_SECRET"),
                jwt_public_key=get("JWT_PUBLIC_KEY"),
                jwt_issuer=get("JWT_ISSUER"),
                jwt_audience=get("JWT_AUDIENCE"),
                jwt_max_age_s=float(get("JWT_MAX_AGE_S") or base.jwt_max_age_s),
                stream_recheck_s=float(get("STREAM_RECHECK_S") or base.stream_recheck_s),
                quotas=switch in ("on", "true", "1"),
                rate_limit_storage=get("RATE_LIMIT_STORAGE"),
                rate_limit_prefix=get("RATE_LIMIT_PREFIX") or base.rate_limit_prefix,
                trusted_proxies=proxies,
                **numbers,  # type: ignore[arg-type]
            )
        except ValueError as exc:
            raise ConfigError(f"a DESKLINE_* web setting is not valid: {exc}") from exc
        if settings.sla_seconds < 0 or settings.max_body_bytes < 1024 or not 0 < settings.port < 65536:
            raise ConfigError(
                "DESKLINE_SLA_SECONDS must be >= 0, DESKLINE_MAX_BODY_BYTES >= 1024 and "
                "DESKLINE_PORT between 1 and 65535"
            )
        if settings.poll_interval_s <= 0 or settings.channel_poll_interval_s <= 0:
            raise ConfigError("DESKLINE_POLL_INTERVAL_S and DESKLINE_CHANNEL_POLL_INTERVAL_S must be > 0")
        if settings.event_channel not in ("auto", "postgres", "redis", "none"):
            raise ConfigError("DESKLINE_EVENT_CHANNEL must be auto, postgres, redis or none")
        settings.check_quotas()
        return settings

    def check_quotas(self) -> None:
        """``ConfigError`` naming the first quota setting that cannot work."""
        for name in QUOTA_NUMBERS:
            if getattr(self, name) < 0:
                raise ConfigError(f"DESKLINE_{name.upper()} must be >= 0 (0 turns the limit off)")
        if self.stream_recheck_s <= 0:
            raise ConfigError("DESKLINE_STREAM_RECHECK_S must be > 0")
        storage = self.quota_storage
        if not storage.startswith(("memory://", "redis://", "rediss://", "redis+unix://")):
            raise ConfigError("DESKLINE_RATE_LIMIT_STORAGE must be memory:// or a redis:// URL", storage=storage)
        for proxy in self.trusted_proxies:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError as exc:
                raise ConfigError(f"DESKLINE_TRUSTED_PROXIES: {proxy!r} is not an IP address or network") from exc
