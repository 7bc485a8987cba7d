"""The web dashboard: static HTML, JavaScript modules and CSS served at /dashboard/.

There is no build step and nothing is fetched from elsewhere: the files under `static/` are what
the browser runs. The page holds no data of its own; its scripts call the same REST routes as
any client, with the `dapr-api-token` header when the API has a token. So the static files are
served without the token (the page must load to ask for it), and every answer with data still
needs it.

The scripts render with DOM APIs and `textContent` only; the Content-Security-Policy below backs
that up: no inline script, no script from anywhere but this origin, no `eval`.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["DASHBOARD_PREFIX", "SECURITY_HEADERS", "dashboard_routes"]

DASHBOARD_PREFIX = "/dashboard"

SECURITY_HEADERS: dict[str, str] = {
    "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


class _SecurityHeaders:
    """Adds SECURITY_HEADERS to every response of the wrapped app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.raw = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.raw]
            await send(message)

        await self.app(scope, receive, with_headers)


async def _to_index(request: Request) -> Response:
    # The router does not add slashes (app.py), and relative links in the page need one.
    return RedirectResponse(f"{DASHBOARD_PREFIX}/", status_code=307)


def dashboard_routes() -> list[BaseRoute]:
    files = StaticFiles(packages=[("api.dashboard", "static")], html=True)
    return [
        Route(DASHBOARD_PREFIX, _to_index, methods=["GET", "HEAD"]),
        Mount(DASHBOARD_PREFIX, app=_SecurityHeaders(files), name="dashboard"),
    ]
