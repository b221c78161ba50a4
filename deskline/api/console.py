"""The human console's API: the queue, and claim / reply / hand back / approve / reject.

Each command is one ``HumanConsole`` call, so each human step is an event in the conversation's
log and two agents racing to claim get one winner and one 409. Commands run in a worker thread
(the console's store calls are synchronous) and wake the conversation's live streams when done.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from deskline.api.deps import AgentName, ConversationId, Services, ServicesDep, bearer
from deskline.api.schemas import (
    MAX_SEQ,
    PAGE_DEFAULT,
    PAGE_MAX,
    AgentOut,
    CommandOut,
    ConsoleEvents,
    Error,
    HumanMessageIn,
    QueueItem,
    QueueOut,
    ReleaseIn,
    console_event,
)
from deskline.api.streams import events_response, load_page
from deskline.errors import UnknownConversation
from deskline.eventlog.events import Recorded
from deskline.hierarchy.turn import clean_text

router = APIRouter(prefix="/v1", tags=["console"])

_AUTH: dict[int | str, dict[str, Any]] = {
    401: {"model": Error, "description": "No valid human agent key (customer tokens are refused)."},
    429: {
        "model": Error,
        "description": "Too many wrong keys from this address or for this key id, or too many open streams; "
                       "`Retry-After` says when to try again.",
        "headers": {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}},
    },
    503: {"model": Error, "description": "The database is not available."},
}
_CONVERSATION: dict[int | str, dict[str, Any]] = {
    **_AUTH,
    404: {"model": Error, "description": "No such conversation."},
    422: {"model": Error, "description": "The path or body is not valid."},
}
_COMMAND: dict[int | str, dict[str, Any]] = {
    **_CONVERSATION,
    400: {"model": Error, "description": "The body is not JSON, or not UTF-8."},
    403: {
        "model": Error,
        "description": "You have not claimed this conversation (not_claimed_by_you).",
    },
    409: {"model": Error, "description": "already_claimed, not_escalated or no_pending_action."},
    413: {"model": Error, "description": "The body is over the size limit."},
}


@router.get("/agents/me", response_model=AgentOut, responses=_AUTH)
def who_am_i(agent: AgentName) -> AgentOut:
    """The human agent the key belongs to (the console uses it to sign in)."""
    return AgentOut(name=agent)


@router.get("/queue", response_model=QueueOut, responses=_AUTH)
def queue(agent: AgentName, svc: ServicesDep) -> QueueOut:
    """Open escalations, most urgent and oldest first, each with its handoff payload."""
    svc.queue.refresh(svc.desk.store)
    now, sla = svc.clock(), svc.web.sla_seconds
    return QueueOut(
        sla_seconds=sla,
        entries=[
            QueueItem(
                conversation_id=e.conversation_id,
                reason=e.reason,
                priority=e.priority,
                summary=e.summary,
                actions_taken=list(e.actions_taken),
                pending_action=e.pending_action,
                requested_at=e.requested_at,
                waiting_s=round(max(0.0, now - e.requested_at), 3),
                claimed_by=e.claimed_by,
                claimed_at=e.claimed_at,
                sla_breached=e.breaching(now, sla),
                language=e.language,
            )
            for e in svc.queue.entries()
        ],
    )


@router.get(
    "/console/conversations/{conversation_id}/events",
    response_model=ConsoleEvents,
    responses={
        **_CONVERSATION,
        200: {
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
            "description": "Events as JSON, or as an event stream.",
        },
    },
)
async def console_events(
    conversation_id: ConversationId,
    agent: AgentName,
    svc: ServicesDep,
    request: Request,
    response: Response,
    after: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0,
    limit: Annotated[int, Query(ge=1, le=PAGE_MAX, description="At most this many events (JSON only).")]
    = PAGE_DEFAULT,
    last_event_id: Annotated[int | None, Header(alias="Last-Event-ID", ge=0, le=MAX_SEQ)] = None,
) -> ConsoleEvents | StreamingResponse:
    """Every event as recorded: JSON (at most `limit`, `next_after` for the next page), or live with
    `Accept: text/event-stream` (it ends soon after the agent's key is removed)."""
    await _known(svc, conversation_id)
    key = bearer(request)
    claims = []
    if svc.quotas is not None:
        claims = [("streams_per_ip", svc.quotas.client_ip(request), svc.web.streams_per_ip)]
    return await events_response(svc, request, response, conversation_id, after, last_event_id, console_event,
                                 ConsoleEvents, limit=limit, still_valid=lambda: svc.auth.agent_for(key) == agent,
                                 stream_claims=claims)


@router.post("/conversations/{conversation_id}/claim", response_model=CommandOut, responses=_COMMAND)
async def claim(conversation_id: ConversationId, agent: AgentName, svc: ServicesDep) -> CommandOut:
    """Take the escalated conversation; a second agent gets 409 already_claimed."""
    return await _command(svc, conversation_id, lambda: [svc.console.claim(conversation_id, agent)])


@router.post("/conversations/{conversation_id}/human-messages", response_model=CommandOut, responses=_COMMAND)
async def human_message(
    conversation_id: ConversationId, body: HumanMessageIn, agent: AgentName, svc: ServicesDep
) -> CommandOut:
    """Write to the customer as the claiming agent."""
    text = clean_text(body.text, svc.settings.max_message_chars)
    return await _command(svc, conversation_id, lambda: [svc.console.reply(conversation_id, agent, text)])


@router.post("/conversations/{conversation_id}/release", response_model=CommandOut, responses=_COMMAND)
async def release(
    conversation_id: ConversationId,
    agent: AgentName,
    svc: ServicesDep,
    body: ReleaseIn | None = None,
) -> CommandOut:
    """Hand the conversation back to the bot, with a note for the record."""
    note = body.note if body is not None else ""
    return await _command(svc, conversation_id, lambda: [svc.console.release(conversation_id, agent, note)])


@router.post("/conversations/{conversation_id}/approve", response_model=CommandOut, responses=_COMMAND)
async def approve(conversation_id: ConversationId, agent: AgentName, svc: ServicesDep) -> CommandOut:
    """Run the action awaiting approval, once, under its original idempotency key."""
    return await _decide(svc, conversation_id, agent, approve=True)


@router.post("/conversations/{conversation_id}/reject", response_model=CommandOut, responses=_COMMAND)
async def reject(conversation_id: ConversationId, agent: AgentName, svc: ServicesDep) -> CommandOut:
    """Refuse the action awaiting approval; nothing is changed and the refusal is recorded."""
    return await _decide(svc, conversation_id, agent, approve=False)


async def _known(svc: Services, conversation_id: str) -> None:
    first, _more = await run_in_threadpool(load_page, svc.desk.store, conversation_id, 0, 1)  # not the whole log
    if not first:
        raise UnknownConversation(f"no conversation {conversation_id!r}", conversation_id=conversation_id)


async def _command(svc: Services, conversation_id: str, run: Callable[[], list[Recorded]]) -> CommandOut:
    try:
        appended = await run_in_threadpool(run)
    finally:
        svc.notifier.notify(conversation_id)
    return CommandOut(conversation_id=conversation_id, events=[console_event(r) for r in appended])


async def _decide(svc: Services, conversation_id: str, agent: str, *, approve: bool) -> CommandOut:
    try:
        appended = await svc.console.decide_action(conversation_id, agent, approve)
    finally:
        svc.notifier.notify(conversation_id)
    return CommandOut(conversation_id=conversation_id, events=[console_event(r) for r in appended])
