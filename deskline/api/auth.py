"""Who may call what: conversation tokens for customers, keys for human agents.

Both live in the desk's own database, next to the event log, and neither is ever stored in the
clear. A conversation token is 256 random bits, so one sha256 is enough to make a stolen table
useless. An agent key is long-lived and reused, so it gets a slow salted hash (scrypt); its
public key id (``dka_<id>_<secret>``) finds the row without hashing every candidate, and a
verified key is remembered in process memory for a minute so a polling console does not pay
scrypt on every request.

The two formats never overlap: a customer token (``dkc_...``) can never pass as an agent key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass

from sqlalchemy import Engine, delete, insert, select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlmodel import Field, SQLModel

from deskline.errors import DesklineError, StoreUnavailable

CUSTOMER_PREFIX = "dkc_"
AGENT_PREFIX = "dka_"
_AGENT_KEY = re.compile(r"^dka_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
AGENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")
# scrypt at n=2**14, r=8: about 16 MiB and tens of milliseconds per check.
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}


class ConversationTokenRow(SQLModel, table=True):
    __tablename__ = "conversation_tokens"

    conversation_id: str = Field(primary_key=True, max_length=64)
    token_sha256: str = Field(max_length=64)
    created_at: float


class HumanAgentRow(SQLModel, table=True):
    __tablename__ = "human_agents"

    key_id: str = Field(primary_key=True, max_length=12)
    name: str = Field(max_length=64, unique=True)
    salt: str = Field(max_length=32)
    key_scrypt: str = Field(max_length=64)
    created_at: float


TOKENS = ConversationTokenRow.__table__  # type: ignore[attr-defined]
AGENTS = HumanAgentRow.__table__  # type: ignore[attr-defined]


class AgentExists(DesklineError):
    code = "agent_exists"


class InvalidAgentName(DesklineError):
    code = "invalid_agent_name"


@dataclass(frozen=True, slots=True)
class AgentInfo:
    name: str
    key_id: str
    created_at: float


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def _scrypt(secret: str, salt: str) -> str:
    return hashlib.scrypt(secret.encode(), salt=bytes.fromhex(salt), **_SCRYPT).hex()


class AuthStore:
    """Tokens and agent keys in SQL tables created on first use (SQLite or PostgreSQL)."""

    def __init__(self, engine: Engine, *, key_cache_s: float = 60.0) -> None:
        self.engine = engine
        self.key_cache_s = key_cache_s
        self._verified: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()
        for attempt in (1, 2):  # another process may create the tables between check and create
            try:
                SQLModel.metadata.create_all(engine, tables=[TOKENS, AGENTS])
                break
            except DBAPIError as exc:
                if attempt == 2:
                    raise StoreUnavailable(f"cannot create the auth tables: {exc.orig}") from exc

    # customers ---------------------------------------------------------------------------
    def issue_token(self, conversation_id: str) -> str:
        """A new token that opens this conversation only; returned once, stored hashed."""
        token = CUSTOMER_PREFIX + secrets.token_urlsafe(32)
        with self.engine.begin() as conn:
            conn.execute(
                insert(TOKENS),
                [
                    {
                        "conversation_id": conversation_id,
                        "token_sha256": _sha256(token),
                        "created_at": time.time(),
                    }
                ],
            )
        return token

    def token_opens(self, conversation_id: str, token: str) -> bool:
        with self.engine.connect() as conn:
            stored = conn.execute(
                select(TOKENS.c.token_sha256).where(TOKENS.c.conversation_id == conversation_id)
            ).scalar_one_or_none()
        return stored is not None and hmac.compare_digest(stored, _sha256(token))

    # human agents ------------------------------------------------------------------------
    def add_agent(self, name: str) -> str:
        """Register a human agent and return their key; only its scrypt hash is kept."""
        name = name.strip()
        if not AGENT_NAME.match(name):
            raise InvalidAgentName(f"agent name {name!r} must be 1-64 letters, digits, spaces, '.', '_' or '-'")
        key_id, secret, salt = (
            secrets.token_hex(6),
            secrets.token_urlsafe(32),
            secrets.token_hex(16),
        )
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(AGENTS),
                    [
                        {
                            "key_id": key_id,
                            "name": name,
                            "salt": salt,
                            "key_scrypt": _scrypt(secret, salt),
                            "created_at": time.time(),
                        }
                    ],
                )
        except IntegrityError as exc:
            raise AgentExists(f"an agent named {name!r} already exists", name=name) from exc
        return f"{AGENT_PREFIX}{key_id}_{secret}"

    def remove_agent(self, name: str) -> bool:
        with self.engine.begin() as conn:
            removed = conn.execute(delete(AGENTS).where(AGENTS.c.name == name)).rowcount
        with self._lock:
            self._verified = {k: v for k, v in self._verified.items() if v[0] != name}
        return bool(removed)

    def agents(self) -> list[AgentInfo]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(AGENTS.c.name, AGENTS.c.key_id, AGENTS.c.created_at).order_by(AGENTS.c.name)
            ).all()
        return [AgentInfo(name, key_id, at) for name, key_id, at in rows]

    def agent_for(self, key: str) -> str | None:
        """The agent this key belongs to, or None; customer tokens and garbage never match."""
        match = _AGENT_KEY.match(key)
        if match is None:
            return None
        digest, now = _sha256(key), time.monotonic()
        with self._lock:
            cached = self._verified.get(digest)
        if cached is not None and cached[1] > now:
            return cached[0]
        key_id, secret = match.groups()
        with self.engine.connect() as conn:
            row = conn.execute(
                select(AGENTS.c.name, AGENTS.c.salt, AGENTS.c.key_scrypt).where(AGENTS.c.key_id == key_id)
            ).first()
        if row is None or not hmac.compare_digest(row.key_scrypt, _scrypt(secret, row.salt)):
            return None
        with self._lock:
            if len(self._verified) > 10_000:  # a bound, not an eviction policy: keys are few
                self._verified.clear()
            self._verified[digest] = (row.name, now + self.key_cache_s)
        return str(row.name)
