"""The API's errors, and the one place where any error becomes an HTTP response.

Handlers raise: `ApiError` subclasses for what the API itself decides (validation, auth, limits,
Kafka unreachable), engine errors (`engine.errors`) for what the instance's state decides. Nothing
else builds an error body. Every body is `{"errorCode": ..., "message": ...}` with Dapr's codes
(`pkg/messages/predefined.go` in dapr/dapr) wherever Dapr has one.

Errors about the backend (Kafka unreachable, the view lagging, anything unexpected) carry no code of
their own: they take the code of the operation that failed (`ERR_START_WORKFLOW`, …), which each
handler declares with `@operation`, as daprd does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from engine.errors import (
    DecodeError,
    InstanceExistsError,
    InstanceNotFoundError,
    InstanceNotTerminalError,
    PayloadTooLargeError,
    SerializationError,
)

from .responses import json_response

__all__ = [
    "ApiError",
    "BackendError",
    "BadRequest",
    "BodyTooLarge",
    "Busy",
    "ComponentNotFound",
    "EventNameMissing",
    "InstanceIdInvalid",
    "InstanceIdMissing",
    "InstanceIdTooLong",
    "NotReady",
    "RequestTimeout",
    "Unauthorized",
    "WorkflowNameMissing",
    "error_body",
    "error_response",
    "handle_exception",
    "operation",
]

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

#: Code for errors raised outside any operation (e.g. by middleware, or on an unknown route).
INTERNAL = "ERR_INTERNAL"


class ApiError(Exception):
    """Root of the API's own errors: an HTTP status and an error code to answer with."""

    status: int = 400
    code: str = "ERR_MALFORMED_REQUEST"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status}, {self.code!r}, {self.message!r})"


class BadRequest(ApiError):
    """A malformed query parameter, body or cursor."""


class ComponentNotFound(ApiError):
    code = "ERR_WORKFLOW_COMPONENT_NOT_FOUND"

    def __init__(self, component: str) -> None:
        super().__init__(f"workflow component '{component}' does not exist")


class InstanceIdMissing(ApiError):
    code = "ERR_INSTANCE_ID_PROVIDED_MISSING"

    def __init__(self) -> None:
        super().__init__("no instance ID was provided")


class InstanceIdTooLong(ApiError):
    code = "ERR_INSTANCE_ID_TOO_LONG"

    def __init__(self, limit: int) -> None:
        super().__init__(f"workflow instance ID exceeds the max length of {limit} characters")


class InstanceIdInvalid(ApiError):
    code = "ERR_INSTANCE_ID_INVALID"

    def __init__(self, instance_id: str, reason: str | None = None) -> None:
        if reason is None:  # daprd's message for a new ID
            super().__init__(
                f"workflow instance ID '{instance_id}' is invalid: only alphanumeric and "
                "underscore characters are allowed"
            )
        else:  # `reason` shows the ID escaped: it may hold control characters
            super().__init__(f"workflow instance ID is invalid: {reason}")


class WorkflowNameMissing(ApiError):
    code = "ERR_WORKFLOW_NAME_MISSING"

    def __init__(self) -> None:
        super().__init__("workflow name is not configured")


class EventNameMissing(ApiError):
    code = "ERR_WORKFLOW_EVENT_NAME_MISSING"

    def __init__(self) -> None:
        super().__init__("missing workflow event name")


class BodyTooLarge(ApiError):
    status = 413
    code = "ERR_REQUEST_BODY_TOO_LARGE"


class Unauthorized(ApiError):
    status = 401
    code = "ERR_UNAUTHORIZED"

    def __init__(self) -> None:
        super().__init__("authentication failed: the dapr-api-token header is missing or wrong")


class NotReady(ApiError):
    status = 503
    code = "ERR_HEALTH_NOT_READY"


class Busy(ApiError):
    """A bounded resource (history reads) stayed full for as long as a request may wait: retry
    after `retry_after_s`. 503 rather than 429: the limit is this replica's, not the caller's
    quota, so a load balancer may retry on another replica."""

    status = 503
    code = "ERR_API_BUSY"

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RequestTimeout(ApiError):
    """The client did not send its whole request (headers or body) within the read deadline."""

    status = 408
    code = "ERR_REQUEST_TIMEOUT"


class BackendError(ApiError):
    """Kafka is unreachable or too slow: a 500 with the failed operation's code."""

    status = 500
    code = ""  # the operation's code, filled in by `error_response`


def operation(code: str) -> Callable[[F], F]:
    """Declare the `ERR_*` code a handler's backend failures answer with (Dapr: one per route)."""

    def mark(handler: F) -> F:
        handler.error_code = code  # type: ignore[attr-defined]
        return handler

    return mark


def error_body(code: str, message: str) -> dict[str, str]:
    return {"errorCode": code, "message": message}


def _operation_code(request: Request | None) -> str:
    endpoint = request.scope.get("endpoint") if request is not None else None
    return str(getattr(endpoint, "error_code", INTERNAL))


def _classify(exc: BaseException, op_code: str) -> tuple[int, str, str]:
    """(status, code, message) for any exception. The one mapping of errors to HTTP."""
    if isinstance(exc, ApiError):
        return exc.status, exc.code or op_code, exc.message
    if isinstance(exc, InstanceNotFoundError):
        return 404, "ERR_INSTANCE_ID_NOT_FOUND", str(exc)
    if isinstance(exc, InstanceExistsError):
        # Dapr answers 500 ERR_START_WORKFLOW; a conflict is a 409, the code stays Dapr's.
        return 409, op_code, str(exc)
    if isinstance(exc, InstanceNotTerminalError):
        return 409, op_code, str(exc)
    if isinstance(exc, PayloadTooLargeError):
        return 413, BodyTooLarge.code, str(exc)
    if isinstance(exc, (DecodeError, SerializationError)):
        return 400, "ERR_MALFORMED_REQUEST", str(exc)
    if isinstance(exc, ClientDisconnect):
        # nginx's "client closed request": nobody reads it, but metrics count it apart.
        return 499, "ERR_CLIENT_DISCONNECTED", "the client disconnected before sending its request"
    if isinstance(exc, HTTPException):
        code = {404: "ERR_ROUTE_NOT_FOUND", 405: "ERR_METHOD_NOT_ALLOWED"}.get(
            exc.status_code, op_code
        )
        return exc.status_code, code, str(exc.detail)
    return 500, op_code, f"internal error: {type(exc).__name__}: {exc}"


def error_response(exc: BaseException, request: Request | None = None) -> Response:
    status, code, message = _classify(exc, _operation_code(request))
    if isinstance(exc, ClientDisconnect):
        # Routine (a client gave up or timed out): one quiet line, never a traceback.
        where = f"{request.method} {request.url.path}" if request is not None else "a request"
        log.info("%s: the client disconnected before sending the whole request body", where)
    elif status >= 500 and not isinstance(exc, (NotReady, Busy)):
        # Readiness probes and back-pressure are not incidents: metrics count them.
        if isinstance(exc, ApiError):
            log.warning("%s %s: %s", code, status, message)
        else:
            log.error("%s failed", code, exc_info=exc)
    headers: dict[str, str] | None = None
    if status == 401:
        headers = {"WWW-Authenticate": "dapr-api-token"}
    elif isinstance(exc, Busy):
        headers = {"Retry-After": str(exc.retry_after_s)}
    return json_response(error_body(code, message), status, headers=headers)


async def handle_exception(request: Request, exc: Exception) -> Response:
    """Starlette exception handler for `Exception` and `HTTPException`: see `error_response`."""
    return error_response(exc, request)
