"""Settings, read once from the environment (``DESKLINE_*``), overridable in code and tests."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path

from deskline.errors import ConfigError

DEFAULT_DATABASE_URL = "sqlite:///./deskline.db"


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    max_message_chars: int = 4000
    approval_limit: Decimal | None = None  # None: the desk's own policy
    max_llm_calls: int = 2
    max_cost_usd: Decimal = Decimal("0.05")
    max_conversation_cost_usd: Decimal = Decimal("1.00")
    abstain_threshold: float | None = None  # None: the classifier's own calibrated default
    failed_turns_before_human: int = 3
    negative_turns_before_human: int = 2
    verify_rounds: int = 1
    turn_lease_s: float = 10.0  # how long a crashed desk's claim on a turn blocks the next one
    turn_wait_s: float = 60.0  # how long to wait for another desk deciding the same turn
    step_timeout_s: float = 10.0
    step_retries: int = 2
    state_cache: int = 4096  # conversations whose folded state a desk keeps (0: fold from the store every turn)
    models_path: Path | None = None
    default_customer: str | None = None  # None: the desk's own default customer
    desk: str | None = None  # module:attribute of the desk definition (None: $DESKLINE_DESK or the built-in desk)
    router_path: Path | None = None  # overrides the desk's router file
    log_format: str = "console"
    log_level: str = "warning"
    extra: dict[str, str] = field(default_factory=dict)

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)

        def get(name: str) -> str | None:
            value = env.get(f"DESKLINE_{name}")
            return value if value not in (None, "") else None

        try:
            base = cls()
            models = get("MODELS")
            threshold = get("ABSTAIN_THRESHOLD")
            limit = get("APPROVAL_LIMIT")
            router = get("ROUTER")
            return replace(
                base,
                database_url=get("DATABASE_URL") or base.database_url,
                max_message_chars=int(get("MAX_MESSAGE_CHARS") or base.max_message_chars),
                approval_limit=Decimal(limit) if limit else None,
                max_llm_calls=int(get("MAX_LLM_CALLS") or base.max_llm_calls),
                turn_lease_s=float(get("TURN_LEASE_S") or base.turn_lease_s),
                state_cache=int(get("STATE_CACHE") or base.state_cache),
                abstain_threshold=float(threshold) if threshold else None,
                models_path=Path(models) if models else None,
                default_customer=get("CUSTOMER") or base.default_customer,
                desk=get("DESK"),
                router_path=Path(router) if router else None,
                log_format=get("LOG_FORMAT") or base.log_format,
                log_level=get("LOG_LEVEL") or base.log_level,
            )
        except (ValueError, ArithmeticError) as exc:
            raise ConfigError(f"a DESKLINE_* setting is not valid: {exc}") from exc
