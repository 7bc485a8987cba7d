"""Pure ASGI middleware: request metrics, request traces, the last-resort error answer, the in-flight
limit, API-token auth, and the request body limit.

Errors raised here are answered by `errors.error_response`, like every other error.
"""

from __future__ import annotations

import hmac
import logging
import time
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engine import tracing

from .errors import BodyTooLarge, Busy, Unauthorized, error_response
from .metrics import ApiMetrics

__all__ = [
    "HEALTH_PREFIX",
    "METHOD_LABELS",
    "BodyLimitMiddleware",
    "InFlightLimitMiddleware",
    "MetricsMiddleware",
    "TokenAuthMiddleware",
    "TracingMiddleware",
    "UnexpectedErrorMiddleware",
    "is_authenticated",
]

log = logging.getLogger(__name__)

#: Health routes stay open without a token, as daprd's do (orchestrators probe them).
HEALTH_PREFIX = "/v1.0/healthz"
#: The methods that get a label of their own; any other (a client may send any token) is "other".
METHOD_LABELS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
#: The route label of every request no route matched (a 404, or a 401 before routing).
UNMATCHED = "<unmatched>"
_AUTHENTICATED = "headrace.authenticated"


def is_authenticated(scope: Scope) -> bool:
    """Whether the request carried the API token (always true when none is configured). Open
    routes use it to decide how much they tell."""
    return bool(scope.get(_AUTHENTICATED, False))


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        response = _ResponseStatus(send)
        try:
            await self.app(scope, receive, response.send)
        finally:
            # Every label from a fixed set, so no request can add series: the route template (not
            # the path, which holds instance IDs) and a known method (anyone may send any token).
            label = _route_label(scope)
            method = scope["method"] if scope["method"] in METHOD_LABELS else "other"
            self.metrics.observe(label, method, response.status, time.perf_counter() - started)


class _ResponseStatus:
    """Passes an app's messages on and remembers the status it answered (500 until it answers:
    an app that raised before answering is answered 500 by the error middleware)."""

    __slots__ = ("_send", "status")

    def __init__(self, send: Send) -> None:
        self._send = send
        self.status = 500

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
        await self._send(message)


def _route_label(scope: Scope) -> str:
    route: Any = scope.get("route")
    return getattr(route, "path", None) or UNMATCHED


class TracingMiddleware:
    """A server span per request when tracing is on (`engine.tracing`), child of the
    request's W3C `traceparent` if it has one; the commands the request produces carry the span's
    context in their record headers, so the engine's spans join the caller's trace. Health checks
    and scrapes are not traced: they are many and say nothing about a workflow."""

    def __init__(self, app: ASGIApp, untraced_prefixes: tuple[str, ...] = (HEALTH_PREFIX, "/metrics")) -> None:
        self.app = app
        self.untraced_prefixes = untraced_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        tracer = tracing.tracer()
        if tracer is None or scope["type"] != "http" or scope["path"].startswith(self.untraced_prefixes):
            await self.app(scope, receive, send)
            return
        from opentelemetry.trace import SpanKind, Status, StatusCode

        parent = state = None
        for name, value in scope["headers"]:
            if name == b"traceparent":
                parent = value
            elif name == b"tracestate":
                state = value
        incoming = tracing.TraceContext.parse(parent, state)
        method = scope["method"] if scope["method"] in METHOD_LABELS else "other"
        response = _ResponseStatus(send)
        # Semantic conventions for HTTP server spans:
        # https://opentelemetry.io/docs/specs/semconv/http/http-spans/#http-server
        with tracer.start_as_current_span(
            method, context=tracing.otel_context(incoming), kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": scope["path"][:2048]},
            record_exception=False, set_status_on_exception=False,
        ) as span:
            try:
                await self.app(scope, receive, response.send)
            finally:
                route = _route_label(scope)
                span.update_name(f"{method} {route}")
                span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", response.status)
                if response.status >= 500:
                    span.set_status(Status(StatusCode.ERROR))


class UnexpectedErrorMiddleware:
    """Answers an exception no handler took (a bug) through `error_response`, which logs it
    once. Starlette's own last resort would answer too, but then re-raise it for the server to
    log a second traceback."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking)
        except Exception as exc:
            if started:  # too late to answer: the server closes the connection
                log.error("%s %s failed mid-response", scope["method"], scope["path"], exc_info=exc)
                return
            await error_response(exc, Request(scope))(scope, receive, send)


class InFlightLimitMiddleware:
    """At most `limit` requests in the app at once; more get a 503 `ERR_API_BUSY` with
    Retry-After at once. Each request may buffer a body up to the body limit, so this is what
    bounds the memory of many concurrent uploads (limit x body limit). Health checks and
    metrics are exempt: an overloaded replica is alive, and says so."""

    def __init__(self, app: ASGIApp, limit: int, exempt_prefixes: tuple[str, ...]) -> None:
        self.app = app
        self.limit = limit
        self.exempt_prefixes = exempt_prefixes
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.exempt_prefixes):
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            busy = Busy(f"this API replica is answering {self.limit} requests already; try again")
            await error_response(busy)(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


class TokenAuthMiddleware:
    """When a token is configured, every route but the open ones (health, by default) needs
    `dapr-api-token: <token>`. An open prefix covers the path itself and everything below it."""

    def __init__(
        self, app: ASGIApp, token: str | None, open_prefixes: tuple[str, ...] = (HEALTH_PREFIX,)
    ) -> None:
        self.app = app
        self.token = token.encode() if token else None
        self.open_prefixes = open_prefixes

    def _open(self, path: str) -> bool:
        # "/dashboard" opens "/dashboard" and "/dashboard/...", never "/dashboardish".
        return any(path == p or path.startswith(p.rstrip("/") + "/") for p in self.open_prefixes)

    def _valid(self, scope: Scope) -> bool:
        assert self.token is not None
        given = b""
        for name, value in scope["headers"]:
            if name == b"dapr-api-token":
                given = value
                break
        # Constant time, so the response time does not tell how much of a guess was right.
        return hmac.compare_digest(given, self.token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        valid = self.token is None or self._valid(scope)
        scope[_AUTHENTICATED] = valid
        if not valid and not self._open(scope["path"]):
            await error_response(Unauthorized())(scope, receive, send)
            return
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """413 for a body over `limit` bytes: at once from Content-Length, else while it streams in."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    def _too_large(self, size: int | None = None) -> BodyTooLarge:
        said = f" ({size} bytes)" if size is not None else ""
        return BodyTooLarge(f"the request body{said} is over the limit of {self.limit} bytes")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.limit:
                    await error_response(self._too_large(declared))(scope, receive, send)
                    return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise self._too_large()  # inside the handler's body read: answered as a 413
            return message

        await self.app(scope, limited, send)
