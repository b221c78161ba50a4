"""Errors as HTTP answers: one JSON shape, a status that says whose fault it was, no stack traces.

    InputError (empty, too long, invalid UTF-8) ........ 422
    malformed JSON, a body that is not UTF-8 ........... 400
    a body over the size limit ......................... 413
    pydantic validation (unknown field, wrong type) .... 422
    UnknownConversation ................................ 404
    AlreadyClaimed, NotEscalated, NoPendingAction ...... 409
    NotClaimed ......................................... 403
    RateLimited, QuotaExceeded (deskline.api.quotas) ... 429, with Retry-After (seconds)
    other HumanCommandError (an empty reply) ........... 422
    ConcurrencyConflict ................................ 409 (retry)
    StoreUnavailable, a database that fails ............ 503
    anything else ...................................... 500, logged with its traceback

Every body is ``{"error": code, "message": sentence, ...fields}`` (``DesklineError.to_dict()``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.exceptions import HTTPException

from deskline.api.identity import CustomerMismatch, InvalidCustomerToken
from deskline.api.quotas import RateLimited
from deskline.errors import (
    ConcurrencyConflict,
    DesklineError,
    InputError,
    InvalidEncoding,
    StoreUnavailable,
    UnknownConversation,
)
from deskline.hierarchy.humans import (
    AlreadyClaimed,
    HumanCommandError,
    NoPendingAction,
    NotClaimed,
    NotEscalated,
)

log = structlog.get_logger("deskline.api")

_STATUS: tuple[tuple[tuple[type[DesklineError], ...], int], ...] = (
    ((CustomerMismatch,), 403),
    ((InvalidCustomerToken,), 401),
    ((RateLimited,), 429),
    ((InputError,), 422),
    ((UnknownConversation,), 404),
    ((NotClaimed,), 403),
    ((AlreadyClaimed, NotEscalated, NoPendingAction), 409),
    ((HumanCommandError,), 422),
    ((ConcurrencyConflict,), 409),
    ((StoreUnavailable,), 503),
)
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "body_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def status_for(exc: DesklineError) -> int:
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            return status
    return 500


def problem(
    status: int, error: str, message: str, headers: Mapping[str, str] | None = None, **fields: Any
) -> JSONResponse:
    return JSONResponse({"error": error, "message": message, **fields}, status_code=status, headers=headers)


def _describe(err: dict[str, Any]) -> str:
    where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
    if err.get("type") == "extra_forbidden":
        return f"{where}: unknown field"
    if err.get("type") == "model_attributes_type" and where == "body":
        return "the body must be a JSON object sent with Content-Type: application/json"
    if err.get("type") == "missing" and where == "body":
        return "a JSON body is required"
    return f"{where}: {err.get('msg', 'invalid')}"


async def _validation(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        first = next(e for e in errors if e.get("type") == "json_invalid")
        reason = (first.get("ctx") or {}).get("error", "not JSON")
        return problem(400, "malformed_json", f"the request body is not valid JSON: {reason}")
    # Echo where and why, never the input itself: it may be large, or personal.
    detail = [{"loc": list(e.get("loc", ())), "type": e.get("type"), "msg": e.get("msg")} for e in errors]
    return problem(422, "invalid_request", "; ".join(_describe(e) for e in errors[:5]), detail=detail)


async def _http(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    if isinstance(exc.__cause__, UnicodeDecodeError):
        err = InvalidEncoding(
            f"the request body is not valid UTF-8 (byte {exc.__cause__.start})",
            position=exc.__cause__.start,
        )
        return JSONResponse(err.to_dict(), status_code=400)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    return problem(exc.status_code, code, message, headers=exc.headers)


async def _desk(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DesklineError)
    status = status_for(exc)
    if status >= 500:
        log.error("api.desk_error", error=exc.code, message=exc.message)
    body = exc.to_dict()
    return JSONResponse(
        {k: v if isinstance(v, str | int | float | bool | None) else str(v) for k, v in body.items()},
        status_code=status,
    )


async def _limited(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RateLimited)
    return JSONResponse(exc.to_dict(), status_code=429, headers={"Retry-After": str(max(1, exc.retry_after_s))})


async def _database(_request: Request, exc: Exception) -> JSONResponse:
    log.error("api.database_error", error=type(exc).__name__)
    return problem(503, StoreUnavailable.code, "the database is not available; try again shortly")


async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    log.error("api.unexpected_error", error=type(exc).__name__, exc_info=exc)
    return problem(500, "internal_error", "something went wrong on our side; it has been logged")


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(HTTPException, _http)
    app.add_exception_handler(DesklineError, _desk)
    app.add_exception_handler(RateLimited, _limited)
    app.add_exception_handler(OperationalError, _database)
    app.add_exception_handler(InterfaceError, _database)
    app.add_exception_handler(Exception, _unexpected)
