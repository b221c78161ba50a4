"""Who the customer is: the host site vouches for them with a short-lived signed token (a JWT).

The host site (where the customer signed in) signs ``{"sub": customer id, "iss", "aud", "exp",
"iat"}`` with a shared secret (HS256) or its private key (RS256 / ES256, the desk holding the
public key) and passes it to ``POST /v1/conversations`` (or ``.../verify`` later, for a sensitive
action that needs a recent sign-in). Issuer, audience and expiry are required and checked; a
token living longer than ``DESKLINE_JWT_MAX_AGE_S`` is refused even if it says otherwise.

Without a token a conversation is anonymous: it answers general questions, takes no action and
shows no account data (``Skill.public`` marks the skills it may run).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from deskline.errors import ConfigError, DesklineError

ALGORITHMS_BY_KEY = {"secret": ("HS256", "HS384", "HS512"), "public": ("RS256", "RS384", "RS512", "ES256", "ES384")}


class InvalidCustomerToken(DesklineError):
    """The token is not one the host site signed for this desk, or it has expired."""

    code = "invalid_customer_token"


class CustomerMismatch(InvalidCustomerToken):
    """A fresh token for a conversation that belongs to another customer."""

    code = "customer_mismatch"


@dataclass(frozen=True, slots=True)
class Verified:
    customer_id: str
    verified_at: float
    issuer: str


@dataclass(frozen=True, slots=True)
class CustomerTokens:
    """Checks the host site's tokens. ``key`` is the shared secret or the PEM public key."""

    key: str
    algorithms: tuple[str, ...]
    issuer: str
    audience: str
    max_age_s: float = 900.0
    leeway_s: float = 30.0

    @classmethod
    def configured(cls, secret: str | None, public_key: str | None, issuer: str | None, audience: str | None,
                   max_age_s: float) -> CustomerTokens | None:
        """The verifier the settings describe, or None when no key is configured (every web
        conversation is then anonymous)."""
        if not secret and not public_key:
            return None
        if secret and public_key:
            raise ConfigError("set DESKLINE_JWT_SECRET or DESKLINE_JWT_PUBLIC_KEY, not both")
        if not issuer or not audience:
            raise ConfigError("DESKLINE_JWT_ISSUER and DESKLINE_JWT_AUDIENCE are required with a JWT key")
        if secret:
            if len(secret.encode()) < 32:
                raise ConfigError("DESKLINE_JWT_SECRET must be at least 32 bytes")
            return cls(secret, ALGORITHMS_BY_KEY["secret"], issuer, audience, max_age_s)
        assert public_key is not None
        pem = Path(public_key).read_text(encoding="utf-8") if not public_key.lstrip().startswith("-----") else public_key
        return cls(pem, ALGORITHMS_BY_KEY["public"], issuer, audience, max_age_s)

    def verify(self, token: str, now: float | None = None) -> Verified:
        """The customer the token names, or ``InvalidCustomerToken`` saying why not."""
        import jwt

        now = time.time() if now is None else now
        try:
            claims = jwt.decode(token, self.key, algorithms=list(self.algorithms), audience=self.audience,
                                issuer=self.issuer, leeway=self.leeway_s,
                                options={"require": ["exp", "iat", "iss", "aud", "sub"]})
        except jwt.ExpiredSignatureError as exc:
            raise InvalidCustomerToken("the customer token has expired") from exc
        except jwt.InvalidTokenError as exc:
            raise InvalidCustomerToken(f"the customer token is not valid: {exc}") from exc
        issued, expires = float(claims["iat"]), float(claims["exp"])
        if expires - issued > self.max_age_s:
            raise InvalidCustomerToken(f"the customer token lives longer than {self.max_age_s:.0f} s")
        if issued > now + self.leeway_s:
            raise InvalidCustomerToken("the customer token was issued in the future")
        subject = str(claims["sub"]).strip()
        if not subject or len(subject) > 128 or not subject.isprintable():
            raise InvalidCustomerToken("the customer token names no valid customer")
        return Verified(subject, issued, self.issuer)


def mint_token(customer_id: str, secret: str, issuer: str, audience: str, ttl_s: float = 300.0,
               now: float | None = None, algorithm: str = "HS256") -> str:
    """A customer token as the host site would sign it (for the demo, tests and host-site code in
    Python; the host site keeps the secret, never the page)."""
    import jwt

    issued = int(time.time() if now is None else now)
    claims = {"sub": customer_id, "iss": issuer, "aud": audience, "iat": issued, "exp": issued + int(ttl_s)}
    return jwt.encode(claims, secret, algorithm=algorithm)
