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
| ``DESKLINE_REDIS_URL`` | none | Redis for the event channel (pub/sub) |
| ``DESKLINE_JWT_SECRET`` | none | the host site's shared secret for customer tokens (HS256; 32+ bytes) |
| ``DESKLINE_JWT_PUBLIC_KEY`` | none | or its public key (PEM text or a file; RS256 / ES256) |
| ``DESKLINE_JWT_ISSUER`` / ``DESKLINE_JWT_AUDIENCE`` | none | the ``iss`` and ``aud`` a token must carry |
| ``DESKLINE_JWT_MAX_AGE_S`` | 900 | longest lifetime (``exp - iat``) of a customer token |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace

from deskline.errors import ConfigError


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
    redis_url: str | None = None  # Redis pub/sub for the event channel
    sweep_interval_s: float = 30.0  # how often to finish turns a dead process left open (0: never)
    jwt_secret: str | None = None  # the host site's shared secret for customer tokens
    jwt_public_key: str | None = None  # or its public key (PEM, or a path to one)
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_max_age_s: float = 900.0

    def with_(self, **changes: object) -> WebSettings:
        return replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WebSettings:
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            value = env.get(f"DESKLINE_{name}", "").strip()
            return value or None

        base = cls()
        try:
            origins = tuple(o.strip().rstrip("/") for o in (get("CORS_ORIGINS") or "").split(",") if o.strip())
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
        return settings
