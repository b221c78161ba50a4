"""Remote agents: an agent of the desk served over HTTP by the team that owns it.

A desk declares ``Agent("orders", remote=RemoteAgent("https://orders.internal", token_env=...))``
and keeps declaring the agent's skills (their parameters, facts, templates, intents; ``run`` is
their function, or ``remote_only`` when only the agent's own service has it): the desk plans
with them and writes from their results as ever; only running them crosses the wire. The
operation layer treats a remote skill like a local one: its timeout, its retries on transient
errors, its idempotency key (the agent runs each key once and answers a repeat with the first
result), its approval gate.

The interface (v1), served by ``deskline agent-server`` (``deskline.agents.server``) and
published as OpenAPI at ``/openapi.json``::

    POST /v1/tasks           run a skill, or undo its action (kind "compensate"), for one handoff
        Authorization: Bearer <token>
        Idempotency-Key: <conversation:turn:step>     the handoff's key (compensations: <key>:undo)
        X-Deskline-Deadline: <epoch seconds>          the server gives up at it (504, transient)
        body      TaskRequest {skill, kind, handoff, params, deadline}
        200       TaskResult {key, skill, kind, state: "done", result: AgentResult, replayed}
        4xx, 5xx  TaskError {error, message, transient, fields}
    GET  /v1/tasks/{key}     TaskResult, state "done" | "running" | "unknown"
    GET  /v1/skills          the skills served and their parameters' JSON schemas
    GET  /healthz

Errors come back as the desk's own::

    409 approval_required                 -> ApprovalRequired   the step waits for a person
    409 record_changed / action_rejected  -> RecordChanged      the step reads the record again
    "transient": true, 408 429 502 503 504,
    refused or reset connections, timeouts -> SkillError(transient=True)   retried, same key
    anything else (401, 404, 409 idempotency_conflict, 422, 500)
                                          -> SkillError(transient=False)  the step fails
"""

from __future__ import annotations

import os
import time
import weakref
from asyncio import AbstractEventLoop, get_running_loop
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from deskline.agents.registry import ApprovalRequired, Skill, SkillCall
from deskline.errors import RecordChanged, SkillError
from deskline.handoffs.payload import AgentResult, Handoff, Money

if TYPE_CHECKING:
    import httpx

PROTOCOL = "v1"
TOKEN_ENV = "DESKLINE_AGENT_TOKEN"
KEY_HEADER = "Idempotency-Key"
DEADLINE_HEADER = "X-Deskline-Deadline"
TaskKind = Literal["run", "compensate"]
TaskState = Literal["done", "running", "unknown"]
TRANSIENT_STATUS = frozenset({408, 425, 429, 502, 503, 504})


class TaskRequest(BaseModel):
    """One skill run (or one compensation) for one handoff."""

    skill: str = Field(description="The skill's name, e.g. agent.verb")
    kind: TaskKind = Field("run", description="run the skill, or undo its action (its compensation)")
    handoff: Handoff
    params: dict[str, Any] = Field(default_factory=dict, description="The skill's parameters, as JSON")
    deadline: float | None = Field(None, description="Epoch seconds by which the result is needed")


class TaskResult(BaseModel):
    key: str
    skill: str = ""
    kind: TaskKind = "run"
    state: TaskState
    result: AgentResult | None = None
    replayed: bool = Field(False, description="the first result for this key, returned again")


class TaskError(BaseModel):
    error: str = Field(description="A stable code: approval_required, record_changed, unauthorized, ...")
    message: str
    transient: bool = Field(False, description="Whether the same request may succeed if retried")
    fields: dict[str, Any] = Field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RemoteAgent:
    """Where an agent is served: its base ``url``, the bearer ``token`` (or the environment
    variable holding it, ``token_env``), and ``timeout_s`` for one call (the step's own deadline
    cuts it shorter). ``transport`` is an httpx transport for tests (``httpx.MockTransport``)."""

    url: str
    token: str = ""
    token_env: str = TOKEN_ENV
    timeout_s: float = 10.0
    transport: Any = field(default=None, compare=False, repr=False)

    def bearer(self) -> str:
        return self.token or os.environ.get(self.token_env, "")


_CLIENTS: weakref.WeakKeyDictionary[AbstractEventLoop, dict[RemoteAgent, httpx.AsyncClient]] = (
    weakref.WeakKeyDictionary())


def _client(agent: RemoteAgent) -> httpx.AsyncClient:
    """One pooled client per agent and event loop (a pool's connections belong to their loop);
    created on first use, never at import."""
    import httpx

    per_loop = _CLIENTS.setdefault(get_running_loop(), {})
    client = per_loop.get(agent)
    if client is None:
        client = per_loop[agent] = httpx.AsyncClient(
            base_url=agent.url.rstrip("/"), transport=agent.transport, timeout=agent.timeout_s,
            limits=httpx.Limits(max_keepalive_connections=32, keepalive_expiry=30))
    return client


class RemoteSkill:
    """A skill function that runs ``skill`` (or its compensation) on a remote agent."""

    __slots__ = ("agent", "agent_name", "kind", "skill")

    def __init__(self, agent: RemoteAgent, agent_name: str, skill: str, kind: TaskKind = "run") -> None:
        self.agent, self.agent_name, self.skill, self.kind = agent, agent_name, skill, kind

    def __repr__(self) -> str:
        return f"RemoteSkill({self.skill!r}, {self.kind}, {self.agent.url})"

    def _headers(self, key: str, deadline: float | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.agent.bearer()}", KEY_HEADER: key}
        if deadline is not None:
            headers[DEADLINE_HEADER] = f"{deadline:.3f}"
        return headers

    async def __call__(self, call: SkillCall) -> AgentResult:
        import httpx

        handoff = call.handoff
        deadline = call.deadline if call.deadline is not None else time.time() + self.agent.timeout_s
        request = TaskRequest(skill=self.skill, kind=self.kind, handoff=handoff,
                              params=call.params.model_dump(mode="json"), deadline=deadline)
        wait = max(0.001, min(self.agent.timeout_s, deadline - time.time()))
        try:
            response = await _client(self.agent).post(
                "/v1/tasks", content=request.model_dump_json(), timeout=wait,
                headers={**self._headers(handoff.idempotency_key, deadline), "Content-Type": "application/json"})
        except httpx.TimeoutException as exc:
            raise SkillError(f"agent {self.agent_name} did not answer within {wait:.2f} s", transient=True,
                             agent=self.agent_name, skill=self.skill, cause=type(exc).__name__) from exc
        except httpx.TransportError as exc:
            raise SkillError(f"agent {self.agent_name} is unreachable ({type(exc).__name__})", transient=True,
                             agent=self.agent_name, skill=self.skill, cause=type(exc).__name__) from exc
        if response.status_code != 200:
            raise self._error(response)
        try:
            done = TaskResult.model_validate_json(response.content)
        except ValueError as exc:
            raise SkillError(f"agent {self.agent_name} answered with an invalid result", agent=self.agent_name,
                             skill=self.skill) from exc
        result = done.result
        if done.state != "done" or result is None or (result.step_id, result.skill) != (handoff.step_id, handoff.skill):
            # The receiving end checks the contract too: a result for another step never counts.
            raise SkillError(f"agent {self.agent_name} answered for another task", agent=self.agent_name,
                             skill=self.skill, key=done.key)
        return result

    async def status(self, key: str) -> TaskResult:
        """What the agent knows of the task under ``key`` (``state`` "unknown": never run)."""
        import httpx

        try:
            response = await _client(self.agent).get(f"/v1/tasks/{key}", headers=self._headers(key))
        except httpx.TransportError as exc:
            raise SkillError(f"agent {self.agent_name} is unreachable ({type(exc).__name__})", transient=True,
                             agent=self.agent_name) from exc
        if response.status_code != 200:
            raise self._error(response)
        return TaskResult.model_validate_json(response.content)

    def _error(self, response: httpx.Response) -> Exception:
        """The desk's own error for an agent's error answer."""
        try:
            body = TaskError.model_validate_json(response.content)
        except ValueError:
            body = TaskError(error=f"http_{response.status_code}",
                             message=response.text[:200] or response.reason_phrase,
                             transient=response.status_code in TRANSIENT_STATUS or response.status_code >= 500)
        where = {"agent": self.agent_name, "skill": self.skill, "status": response.status_code}
        if body.error == "approval_required":
            amount = body.fields.get("amount")
            return ApprovalRequired(str(body.fields.get("action", self.skill)),
                                    Money.model_validate(amount) if amount else None, body.message)
        if body.error in ("record_changed", "action_rejected"):
            fields = {k: v for k, v in body.fields.items() if k != "transient"}
            return RecordChanged(body.message, **{**fields, **where})
        transient = body.transient or response.status_code in TRANSIENT_STATUS
        return SkillError(f"agent {self.agent_name}: {body.message}", transient=transient, code=body.error,
                          **where)


async def remote_only(call: SkillCall) -> AgentResult:
    """The ``run`` of a skill this desk declares but only its remote agent implements: the desk
    plans and writes with the declaration, and never runs it here (validation checks its agent is
    remote)."""
    raise SkillError(f"{call.handoff.skill} runs only on its remote agent", transient=False,
                     skill=call.handoff.skill)


def remote_skill(skill: Skill, remote: RemoteAgent) -> Skill:
    """``skill`` run by ``remote``: its compensation too, when it is a function of its own."""
    compensate = skill.compensate
    if callable(compensate):
        compensate = RemoteSkill(remote, skill.agent, skill.name, "compensate")
    return replace(skill, run=RemoteSkill(remote, skill.agent, skill.name), compensate=compensate)
