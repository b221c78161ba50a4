"""What every route needs, held once per app: the desk, the console, auth, streams, the queue.

Routes receive these through FastAPI dependencies, so the app object is the only container and
two apps (two tests, two databases) in one process never share state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from deskline.api.auth import AuthStore, key_id
from deskline.api.identity import CustomerTokens
from deskline.api.quotas import Quotas
from deskline.api.schemas import CONVERSATION_ID
from deskline.api.settings import WebSettings
from deskline.api.streams import Notifier
from deskline.config import Settings
from deskline.eventlog.queue import HumanQueue
from deskline.hierarchy.desk import SupportDesk
from deskline.hierarchy.humans import HumanConsole


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    web: WebSettings
    desk: SupportDesk
    console: HumanConsole
    auth: AuthStore
    notifier: Notifier
    queue: HumanQueue
    clock: Callable[[], float]
    tokens: CustomerTokens | None = None  # None: no host site vouches; web conversations are anonymous
    quotas: Quotas | None = None  # None only for an app built without create_app: no limits


def services(request: Request) -> Services:
    found: Services = request.app.state.deskline
    return found


ServicesDep = Annotated[Services, Depends(services)]
ConversationId = Annotated[str, Path(pattern=CONVERSATION_ID, description="The conversation's id.")]

_customer_bearer = HTTPBearer(
    scheme_name="conversationToken",
    auto_error=False,
    description="The token POST /v1/conversations returned for this conversation.",
)
_agent_bearer = HTTPBearer(
    scheme_name="agentKey",
    auto_error=False,
    description="A human agent's key, from `deskline agents add NAME`.",
)
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def _not_found(conversation_id: str) -> HTTPException:
    # The same answer for "no such conversation" and "not yours": a token reveals nothing else.
    return HTTPException(404, f"no conversation {conversation_id!r} for this token")


def customer_conversation(
    conversation_id: ConversationId,
    svc: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_customer_bearer)],
) -> str:
    """The conversation id, once the bearer token is shown to open exactly this conversation."""
    if credentials is None:
        raise HTTPException(
            401,
            "send the conversation's token as 'Authorization: Bearer <token>'",
            headers=_CHALLENGE,
        )
    if not svc.auth.token_opens(conversation_id, credentials.credentials):
        raise _not_found(conversation_id)
    return conversation_id


def human_agent(
    request: Request,
    svc: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_agent_bearer)],
) -> str:
    """The name of the human agent whose key was sent; customer tokens are refused.

    Wrong keys are counted per client address and per key id; past either limit a key is not
    checked at all (429), unless this process verified that very key a moment ago.
    """
    if credentials is None:
        raise HTTPException(401, "send a human agent's key as 'Authorization: Bearer <key>'", headers=_CHALLENGE)
    key, quotas = credentials.credentials, svc.quotas
    ip, kid = (quotas.client_ip(request), key_id(key)) if quotas is not None else ("", None)
    if quotas is not None and not svc.auth.is_remembered(key):
        quotas.admit_key_attempt(ip, kid)
    name = svc.auth.agent_for(key)
    if name is None:
        if quotas is not None:
            quotas.key_failed(ip, kid)
        raise HTTPException(401, "this is not a valid human agent key", headers=_CHALLENGE)
    return name


def bearer(request: Request) -> str:
    """The bearer credential of a request the dependencies above already let through."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


CustomerConversation = Annotated[str, Depends(customer_conversation)]
AgentName = Annotated[str, Depends(human_agent)]
