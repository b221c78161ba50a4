"""The customer's API: open a conversation, send messages, read or follow its events.

A conversation is opened by the API (``ConversationOpened`` on the ``web`` channel) before its
first message, so its token exists before anything is said and ``events?after=0`` is never a
404 for a conversation the customer was just given.

Every route here is under the quotas of ``deskline.api.quotas``: they are checked before anything
is appended, so a 429 changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from deskline.api.deps import CustomerConversation, Services, ServicesDep, bearer
from deskline.api.identity import CustomerMismatch, InvalidCustomerToken, Verified
from deskline.api.quotas import Turn
from deskline.api.schemas import (
    MAX_SEQ,
    PAGE_DEFAULT,
    PAGE_MAX,
    ChatEvents,
    ConversationCreated,
    Error,
    MessageIn,
    OpenConversationIn,
    TurnOut,
    VerifyIn,
    chat_event,
)
from deskline.api.streams import SSE_MEDIA_TYPE, events_response
from deskline.eventlog.events import ConversationOpened, CustomerVerified
from deskline.hierarchy.turn import TurnResult, clean_text, new_conversation_id
from deskline.logs import mask

log = structlog.get_logger("deskline.api")
router = APIRouter(prefix="/v1", tags=["customers"])

_AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Error, "description": "No token was sent."},
    404: {"model": Error, "description": "No such conversation for this token."},
}
_BODY_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Error, "description": "The body is not JSON, or not UTF-8."},
    413: {"model": Error, "description": "The body is over the size limit."},
    422: {
        "model": Error,
        "description": "A field is missing, unknown, or invalid (e.g. message_too_long).",
    },
}
_STORE_ERRORS: dict[int | str, dict[str, Any]] = {
    503: {"model": Error, "description": "The database is not available."},
}
_LIMITED: dict[int | str, dict[str, Any]] = {
    429: {
        "model": Error,
        "description": "A quota is spent (`rate_limited` or `quota_exceeded`; `quota` names it); "
                       "`Retry-After` says when to try again. Nothing was changed.",
        "headers": {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}},
    },
}
_EVENTS_DOC = (
    "The conversation's events after sequence number `after`, as JSON; or, with "
    "`Accept: text/event-stream`, as a live Server-Sent Events stream (`id: <seq>`, "
    "`event: <type>`, `data: <ChatEvent JSON>`) that resumes after `Last-Event-ID`. A JSON answer holds "
    "at most `limit` events (after `after`); `next_after` (and a `Link: rel=\"next\"` header) says where "
    "the next page starts, null at the end. A stream ends when the token stops opening the conversation."
)


@router.post(
    "/conversations",
    status_code=201,
    response_model=ConversationCreated,
    responses={**_STORE_ERRORS, **_BODY_ERRORS, **_LIMITED,
               401: {"model": Error, "description": "The customer token is not valid or has expired."}},
)
def open_conversation(svc: ServicesDep, request: Request, body: OpenConversationIn | None = None
                      ) -> ConversationCreated:
    """Open a conversation and get the token that lets this customer, and only them, use it.

    With `customer_token` (signed by the host site) the conversation is that customer's; without,
    it is anonymous: it answers general questions and says how to sign in for anything else.
    New conversations per client address are limited (429)."""
    if svc.quotas is not None:
        svc.quotas.open_conversation(svc.quotas.client_ip(request))
    who = _verified(svc, body.customer_token) if body is not None and body.customer_token else None
    cid = new_conversation_id()
    opened = (ConversationOpened(customer_id=who.customer_id, channel="web", verified_at=who.verified_at,
                                 verified_by=who.issuer) if who is not None
              else ConversationOpened(customer_id="", channel="web", anonymous=True))
    token = svc.auth.issue_token(cid)
    svc.desk.store.append(cid, 0, 1, [opened])
    log.info("api.conversation_opened", conversation_id=cid, anonymous=who is None)
    return ConversationCreated(id=cid, token=token, anonymous=who is None)


def _verified(svc: ServicesDep, token: str) -> Verified:
    if svc.tokens is None:
        raise InvalidCustomerToken("this desk accepts no customer tokens (no DESKLINE_JWT_SECRET or "
                                   "DESKLINE_JWT_PUBLIC_KEY is set)")
    return svc.tokens.verify(token, now=svc.clock())


@router.post(
    "/conversations/{conversation_id}/verify",
    status_code=204,
    responses={**_AUTH_ERRORS, **_BODY_ERRORS, **_STORE_ERRORS, **_LIMITED,
               403: {"model": Error, "description": "The token names another customer than the conversation's."}},
)
def verify(cid: CustomerConversation, body: VerifyIn, svc: ServicesDep) -> Response:
    """The host site vouches for the customer again (a fresh sign-in), for actions that need a recent
    verification; an anonymous conversation becomes the customer's. Counts against the
    conversation's message rate."""
    if svc.quotas is not None:
        svc.quotas.admit_verify(cid)
    who = _verified(svc, body.customer_token)
    state = svc.desk.states.load(cid)
    if not state.anonymous and state.customer_id and state.customer_id != who.customer_id:
        raise CustomerMismatch("the token names another customer than this conversation's")
    svc.desk.append(cid, state.last_seq, max(state.turn_count, 1),
                    [CustomerVerified(customer_id=who.customer_id, verified_at=who.verified_at,
                                      verified_by=who.issuer)])
    return Response(status_code=204)


@router.post(
    "/conversations/{conversation_id}/messages",
    response_model=TurnOut,
    responses={
        **_AUTH_ERRORS,
        **_BODY_ERRORS,
        **_STORE_ERRORS,
        **_LIMITED,
        409: {"model": Error, "description": "The conversation kept moving; retry."},
    },
)
async def send_message(cid: CustomerConversation, body: MessageIn, svc: ServicesDep, response: Response) -> TurnOut:
    """Send the customer's message and get the turn's result.

    `reply` is null while a person owns the conversation: their answer arrives as an event.
    Resending the same `client_message_id` returns the first result (with
    `Idempotent-Replayed: true`) and appends nothing. Messages per conversation (a rate and a
    lifetime cap), actions per customer and the desk's model budget are limited (429).
    """
    log.info("api.message", conversation_id=cid, chars=len(body.text), excerpt=mask(body.text)[:120])
    limited = svc.quotas is not None and svc.quotas.on
    before = await run_in_threadpool(_admit, svc, cid, body) if limited else None
    try:
        result = await svc.desk.handle(cid, body.text, client_message_id=body.client_message_id)
    finally:
        svc.notifier.notify(cid)
    if before is not None and not result.duplicate:
        await run_in_threadpool(_charge, svc, cid, before, result)
    if result.duplicate:
        response.headers["Idempotent-Replayed"] = "true"
    data = result.to_dict()
    return TurnOut(**{k: v for k, v in data.items() if k in TurnOut.model_fields})


@dataclass(frozen=True, slots=True)
class _Before:
    customer: str | None
    actions: int


def _admit(svc: Services, cid: str, body: MessageIn) -> _Before | None:
    """Refuse (429) a message the quotas cannot afford, before anything is appended; None for a
    resend of a message already taken (it starts no new turn)."""
    assert svc.quotas is not None
    clean_text(body.text, svc.settings.max_message_chars)  # a bad message is a 422 and costs no quota
    state = svc.desk.states.load(cid)
    if body.client_message_id and state.turn_for_message(body.client_message_id) is not None:
        return None
    customer = state.customer_id if state.customer_id and not state.anonymous else None
    text_bytes = sum(len(t.text.encode("utf-8", "surrogatepass")) for t in state.turns)
    svc.quotas.admit_message(cid, Turn(state.turn_count, text_bytes, customer),
                             len(body.text.encode("utf-8", "surrogatepass")), models=svc.desk.models is not None)
    return _Before(customer, len(state.actions_taken))


def _charge(svc: Services, cid: str, before: _Before, result: TurnResult) -> None:
    """Count what the turn used: its actions (``action_completed``) and its model calls and spend."""
    assert svc.quotas is not None
    actions = 0
    if before.customer is not None:
        actions = max(0, len(svc.desk.states.load(cid).actions_taken) - before.actions)
    svc.quotas.charge_turn(before.customer, actions=actions, llm_calls=result.llm_calls, cost_usd=result.cost_usd,
                           models=svc.desk.models is not None)


@router.get(
    "/conversations/{conversation_id}/events",
    response_model=ChatEvents,
    description=_EVENTS_DOC,
    responses={
        **_AUTH_ERRORS,
        **_STORE_ERRORS,
        **_LIMITED,
        422: {"model": Error, "description": "`after`, `limit` or `Last-Event-ID` is not valid."},
        200: {
            "content": {SSE_MEDIA_TYPE: {"schema": {"type": "string"}}},
            "description": "Events as JSON, or as an event stream.",
        },
    },
)
async def conversation_events(
    cid: CustomerConversation,
    svc: ServicesDep,
    request: Request,
    response: Response,
    after: Annotated[int, Query(ge=0, le=MAX_SEQ, description="Only events after this seq.")] = 0,
    limit: Annotated[int, Query(ge=1, le=PAGE_MAX, description="At most this many events (JSON only).")]
    = PAGE_DEFAULT,
    last_event_id: Annotated[
        int | None,
        Header(alias="Last-Event-ID", ge=0, le=MAX_SEQ, description="Resume a stream after this seq."),
    ] = None,
) -> ChatEvents | StreamingResponse:
    """The customer's view of the conversation: messages, replies, and who holds it."""
    token = bearer(request)
    claims = []
    if svc.quotas is not None:
        claims = [("streams_per_conversation", cid, svc.web.streams_per_conversation),
                  ("streams_per_ip", svc.quotas.client_ip(request), svc.web.streams_per_ip)]
    return await events_response(svc, request, response, cid, after, last_event_id, chat_event, ChatEvents,
                                 limit=limit, still_valid=lambda: svc.auth.token_opens(cid, token),
                                 stream_claims=claims)
