"""The agent server: any desk's skills served over the remote-agent interface.

``deskline agent-server --desk module:attribute --agent NAME`` serves the named agents' skills
(default: all of them) with the desk's own system of record (``Desk.open_records`` on the
configured database), so a team can run its agent as its own service and the desk declares
``Agent(NAME, remote=RemoteAgent(url))``. The interface is described in ``deskline.agents.remote``
and published as OpenAPI at ``/openapi.json`` (``/docs`` to try it).

Each idempotency key runs once: a repeat of a finished task gets the first result back
(``replayed``), a repeat of one still running waits for it, and the same key for another skill
is refused. The book of results is kept in memory (the last ``remember`` keys); actions are also
exactly once across restarts where the system of record keeps an action ledger (the status of a
key it recorded is ``done``). The desk's action policies apply here, where the skills run; the
approval limit and the person who approved travel in the handoff.
"""

# No ``from __future__ import annotations``: FastAPI reads the endpoints' annotations, and they
# name the app's own local dependencies.
import asyncio
import hmac
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Annotated, Any

import structlog
from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import ValidationError

from deskline.agents.registry import ActionLedger, ApprovalRequired, Skill, SkillCall
from deskline.agents.remote import (
    DEADLINE_HEADER,
    KEY_HEADER,
    PROTOCOL,
    TaskError,
    TaskRequest,
    TaskResult,
)
from deskline.definition import Desk
from deskline.errors import DesklineError, RecordChanged, SkillError
from deskline.handoffs.payload import AgentResult

log = structlog.get_logger("deskline.agent_server")
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": TaskError, "description": "The request does not fit the task (key, skill, handoff)"},
    401: {"model": TaskError, "description": "No or a wrong bearer token"},
    404: {"model": TaskError, "description": "The skill is not served here"},
    409: {"model": TaskError, "description": "approval_required, record_changed or idempotency_conflict"},
    422: {"model": TaskError, "description": "Invalid parameters, or the skill failed for good"},
    503: {"model": TaskError, "description": "The skill failed transiently: retry with the same key"},
    504: {"model": TaskError, "description": "The deadline passed: retry with the same key"},
}


class TaskFailed(Exception):
    """An error answer: its HTTP status and body."""

    def __init__(self, status: int, body: TaskError) -> None:
        super().__init__(body.message)
        self.status, self.body = status, body


class TaskBook:
    """Results by idempotency key (the last ``size``), and the tasks still running."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._done: OrderedDict[str, TaskResult] = OrderedDict()
        self._running: dict[str, tuple[str, str, asyncio.Future[TaskResult]]] = {}

    def done(self, key: str) -> TaskResult | None:
        return self._done.get(key)

    def running(self, key: str) -> tuple[str, str, asyncio.Future[TaskResult]] | None:
        return self._running.get(key)

    def start(self, key: str, skill: str, kind: str) -> asyncio.Future[TaskResult]:
        future: asyncio.Future[TaskResult] = asyncio.get_running_loop().create_future()
        self._running[key] = (skill, kind, future)
        return future

    def finish(self, key: str, result: TaskResult | None) -> None:
        self._running.pop(key, None)
        if result is not None:
            self._done[key] = result
            while len(self._done) > self.size:
                self._done.popitem(last=False)


def _error(status: int, code: str, message: str, *, transient: bool = False, **fields: Any) -> TaskFailed:
    return TaskFailed(status, TaskError(error=code, message=message, transient=transient, fields=fields))


def create_agent_app(desk: Desk, *, token: str, agents: Sequence[str] = (), records: Any = None,
                     remember: int = 10_000) -> FastAPI:
    """An app serving ``desk``'s skills (of ``agents``, default all) on ``records`` (default: the
    desk's system of record in memory), behind the bearer ``token``."""
    if not token:
        raise ValueError("an agent server needs a bearer token")
    unknown = sorted(set(agents) - {a.name for a in desk.agents})
    if unknown:
        raise ValueError(f"desk {desk.name!r} has no agents {', '.join(unknown)}")
    served: dict[str, Skill] = {s.name: s for s in desk.skills if not agents or s.agent in agents}
    records = desk.system_of_record() if records is None else records
    book = TaskBook(remember)
    bearer = HTTPBearer(auto_error=False, description="The token the desk's RemoteAgent sends")
    names = ", ".join(sorted({s.agent for s in served.values()}))
    app = FastAPI(title=f"deskline agent server: {desk.name} ({names})", version=PROTOCOL,
                  description="Runs the desk's skills for remote desks: one task per idempotency key.")
    app.state.book, app.state.records = book, records

    def authorised(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        given = credentials.credentials if credentials is not None else ""
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise HTTPException(401, "unauthorized")

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        code = "unauthorized" if exc.status_code == 401 else f"http_{exc.status_code}"
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
        body = TaskError(error=code, message=str(exc.detail), transient=exc.status_code in (429, 503, 504))
        return JSONResponse(body.model_dump(), status_code=exc.status_code, headers=headers)

    @app.exception_handler(TaskFailed)
    async def _failed(_: Request, exc: TaskFailed) -> JSONResponse:
        return JSONResponse(exc.body.model_dump(mode="json"), status_code=exc.status)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "protocol": PROTOCOL}

    @app.get("/v1/skills", dependencies=[Depends(authorised)], responses={401: ERRORS[401]})
    async def skills() -> list[dict[str, Any]]:
        """The skills served: name, agent, whether it acts and can be undone, parameters' schema."""
        return [{**s.tool_schema(), "skill": s.name, "agent": s.agent, "action": s.action,
                 "compensable": s.compensable} for s in served.values()]

    @app.post("/v1/tasks", response_model=TaskResult, dependencies=[Depends(authorised)], responses=ERRORS)
    async def run_task(task: TaskRequest, idempotency_key: Annotated[str, Header(alias=KEY_HEADER)],
                       deadline: Annotated[float | None, Header(alias=DEADLINE_HEADER)] = None) -> TaskResult:
        """Run the skill (or its compensation) for the handoff, once per idempotency key."""
        if idempotency_key != task.handoff.idempotency_key:
            raise _error(400, "key_mismatch", "the Idempotency-Key header is not the handoff's key")
        skill = served.get(task.skill)
        if skill is None or task.handoff.skill != task.skill or task.handoff.agent != skill.agent:
            raise _error(404, "unknown_skill", f"skill {task.skill!r} is not served here for this handoff")
        key = idempotency_key
        seen = book.done(key)
        if seen is not None:
            if (seen.skill, seen.kind) != (task.skill, task.kind):
                raise _error(409, "idempotency_conflict", f"key {key!r} already ran {seen.skill} ({seen.kind})")
            return seen.model_copy(update={"replayed": True})
        running = book.running(key)
        if running is not None:
            if running[:2] != (task.skill, task.kind):
                raise _error(409, "idempotency_conflict", f"key {key!r} is running {running[0]} ({running[1]})")
            return (await asyncio.shield(running[2])).model_copy(update={"replayed": True})
        future = book.start(key, task.skill, task.kind)
        outcome: TaskResult | None = None
        try:
            outcome = await _run(skill, task, records, desk, task.deadline or deadline)
            future.set_result(outcome)
            return outcome
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: a failure nobody else waited for is not "never retrieved"
            raise
        finally:
            book.finish(key, outcome)

    @app.get("/v1/tasks/{key}", response_model=TaskResult, dependencies=[Depends(authorised)],
             responses={401: ERRORS[401]})
    async def task_status(key: str) -> TaskResult:
        """What became of the task under ``key``: done (with its result), running, or unknown."""
        seen = book.done(key)
        if seen is not None:
            return seen
        running = book.running(key)
        if running is not None:
            return TaskResult(key=key, skill=running[0], kind=running[1], state="running")
        if isinstance(records, ActionLedger) and records.recorded(key) is not None:
            return TaskResult(key=key, state="done")  # done before this process: its action is in the ledger
        return TaskResult(key=key, state="unknown")

    return app


async def _run(skill: Skill, task: TaskRequest, records: Any, desk: Desk, deadline: float | None) -> TaskResult:
    """One task, its errors as ``TaskFailed`` answers."""
    run = skill.run
    if task.kind == "compensate":
        if not callable(skill.compensate):
            raise _error(404, "no_compensation", f"{skill.name} has no compensation of its own to run")
        run = skill.compensate
    try:
        params = skill.params.model_validate(task.params)
    except ValidationError as exc:
        raise _error(422, "invalid_params", f"invalid parameters for {skill.name}: {exc.error_count()} error(s)",
                     errors=[{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()]) from exc
    call = SkillCall(handoff=task.handoff, params=params, records=records,
                     policy=desk.policies.actions.get(skill.name), deadline=deadline)
    remaining = None if deadline is None else deadline - time.time()
    if remaining is not None and remaining <= 0:
        raise _error(504, "deadline_exceeded", "the task's deadline passed before it started", transient=True)
    try:
        async with asyncio.timeout(remaining):
            result: AgentResult = await run(call)
    except ApprovalRequired as gate:
        raise _error(409, "approval_required", gate.reason, action=gate.action,
                     amount=gate.amount.model_dump(mode="json") if gate.amount else None) from gate
    except RecordChanged as exc:
        fields: dict[str, Any] = {k: v for k, v in exc.fields.items() if k != "transient"}
        raise _error(409, getattr(exc, "code", "record_changed"), exc.message, **fields) from exc
    except SkillError as exc:
        fields = {k: str(v) for k, v in exc.fields.items() if k != "transient"}
        raise _error(503 if exc.transient else 422, exc.code, exc.message, transient=exc.transient,
                     **fields) from exc
    except TimeoutError as exc:
        raise _error(504, "deadline_exceeded", "the task did not finish by its deadline", transient=True) from exc
    except DesklineError as exc:
        raise _error(422, exc.code, exc.message) from exc
    except Exception as exc:
        log.exception("agent_server.task_failed", skill=skill.name, key=task.handoff.idempotency_key)
        raise _error(500, "internal_error", f"{skill.name} raised {type(exc).__name__}") from exc
    return TaskResult(key=task.handoff.idempotency_key, skill=skill.name, kind=task.kind, state="done", result=result)
