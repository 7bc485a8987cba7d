"""Pure ASGI middleware: request metrics, API-token auth, and the request body limit.

Errors raised here are answered by `errors.error_response`, like every other error.
"""

from __future__ import annotations

import hmac
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import BodyTooLarge, Unauthorized, error_response
from .metrics import ApiMetrics

__all__ = ["HEALTH_PREFIX", "BodyLimitMiddleware", "MetricsMiddleware", "TokenAuthMiddleware"]

#: Health routes stay open without a token, as daprd's do (orchestrators probe them).
HEALTH_PREFIX = "/v1.0/healthz"


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            # The route template, not the path: instance IDs must not become label values.
            route: Any = scope.get("route")
            label = getattr(route, "path", None) or "<unmatched>"
            self.metrics.observe(label, scope["method"], status, time.perf_counter() - started)


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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.token is None or scope["type"] != "http" or self._open(scope["path"]):
            await self.app(scope, receive, send)
            return
        given = b""
        for name, value in scope["headers"]:
            if name == b"dapr-api-token":
                given = value
                break
        # Constant time, so the response time does not tell how much of a guess was right.
        if not hmac.compare_digest(given, self.token):
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
