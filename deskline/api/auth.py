"""Who may call what: conversation tokens for customers, keys for human agents.

Both live in the desk's own database, next to the event log, and neither is ever stored in the
clear. A conversation token is 256 random bits, so one sha256 is enough to make a stolen table
useless. An agent key is long-lived and reused, so it gets a slow salted hash (scrypt); its
public key id (``dka_<id>_<secret>``) finds the row without hashing every candidate, and a
verified key is remembered in process memory for a minute so a polling console does not pay
scrypt on every request. The remembered key still needs its row: every check reads it (one
primary-key lookup), so ``deskline agents remove`` takes effect at once in every process.

A wrong key costs the same whether its key id exists or not: an unknown id is hashed against a
dummy salt, so the answer's timing does not tell which key ids are real (``slow_checks`` counts
the hashes, for tests).

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
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, SQLModel

from deskline.api.schemas import control_character
from deskline.errors import InputError

CUSTOMER_PREFIX = "dkc_"
AGENT_PREFIX = "dka_"
_AGENT_KEY = re.compile(r"dka_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")  # fullmatch only
AGENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}")  # fullmatch only
# scrypt at n=2**14, r=8: about 16 MiB and tens of milliseconds per check.
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}
# What an unknown key id is checked against, so it costs what a known one costs; never matches.
_DUMMY_SALT, _DUMMY_HASH = secrets.token_hex(16), "-" * 64


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


class AgentExists(InputError):
    code = "agent_exists"


class InvalidAgentName(InputError):
    code = "invalid_agent_name"


def key_id(key: str) -> str | None:
    """The public id of a well-formed agent key, or None."""
    match = _AGENT_KEY.fullmatch(key)
    return match.group(1) if match else None


def check_agent_name(name: str) -> str:
    """The name, stripped; ``InvalidAgentName`` for control characters or anything else outside
    letters, digits, spaces, '.', '_' and '-'."""
    if (at := control_character(name)) is not None:
        raise InvalidAgentName(f"agent names must not contain control characters (U+{ord(name[at]):04X} at "
                               f"index {at})")
    name = name.strip()
    if not AGENT_NAME.fullmatch(name):
        raise InvalidAgentName(f"agent name {name!r} must be 1-64 letters, digits, spaces, '.', '_' or '-'")
    return name


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
        self.slow_checks = 0  # scrypt runs of agent_for: one per uncached key, known id or not
        from deskline.eventlog.schema import prepare

        prepare(engine)  # the tables are migrated with the rest (deskline/migrations)

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
        digest = _sha256(token)  # hashed either way: an unknown conversation costs the same
        with self.engine.connect() as conn:
            stored = conn.execute(
                select(TOKENS.c.token_sha256).where(TOKENS.c.conversation_id == conversation_id)
            ).scalar_one_or_none()
        return hmac.compare_digest(stored or "-" * 64, digest) and stored is not None

    # human agents ------------------------------------------------------------------------
    def add_agent(self, name: str) -> str:
        """Register a human agent and return their key; only its scrypt hash is kept."""
        name = check_agent_name(name)
        new_id, secret, salt = (
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
                            "key_id": new_id,
                            "name": name,
                            "salt": salt,
                            "key_scrypt": _scrypt(secret, salt),
                            "created_at": time.time(),
                        }
                    ],
                )
        except IntegrityError as exc:
            raise AgentExists(f"an agent named {name!r} already exists", name=name) from exc
        return f"{AGENT_PREFIX}{new_id}_{secret}"

    def remove_agent(self, name: str) -> bool:
        """Delete the agent's row: their key stops working at once in every process (each check
        reads the row), and their open streams end at their next re-check."""
        name = check_agent_name(name)
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

    def is_remembered(self, key: str) -> bool:
        """This process verified the key a moment ago (it may have been removed since)."""
        with self._lock:
            cached = self._verified.get(_sha256(key))
        return cached is not None and cached[1] > time.monotonic()

    def agent_for(self, key: str) -> str | None:
        """The agent this key belongs to, or None; customer tokens and garbage never match.

        A key whose id is unknown costs one scrypt, as a known id with a wrong secret does.
        """
        match = _AGENT_KEY.fullmatch(key)
        if match is None:
            return None
        key_id, secret = match.groups()
        digest, now = _sha256(key), time.monotonic()
        with self._lock:
            cached = self._verified.get(digest)
        with self.engine.connect() as conn:
            row = conn.execute(
                select(AGENTS.c.name, AGENTS.c.salt, AGENTS.c.key_scrypt).where(AGENTS.c.key_id == key_id)
            ).first()
        if cached is not None and cached[1] > now:
            if row is not None and row.name == cached[0]:
                return cached[0]
            with self._lock:  # removed (or removed and re-added under a new key) since it was verified
                self._verified.pop(digest, None)
            return None
        salt, stored = (row.salt, row.key_scrypt) if row is not None else (_DUMMY_SALT, _DUMMY_HASH)
        with self._lock:
            self.slow_checks += 1
        matches = hmac.compare_digest(stored, _scrypt(secret, salt))
        if row is None or not matches:
            return None
        with self._lock:
            if len(self._verified) > 10_000:  # a bound, not an eviction policy: keys are few
                self._verified.clear()
            self._verified[digest] = (row.name, now + self.key_cache_s)
        return str(row.name)
