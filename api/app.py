"""The Starlette application: routes, the error mapping, middleware, and the Kafka lifespan."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiokafka.errors import KafkaError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect

from engine.errors import HeadraceError

from .dashboard import DASHBOARD_PREFIX, dashboard_routes
from .errors import ApiError, handle_exception
from .gateway import Gateway
from .kafka import KafkaLink
from .metrics import ApiMetrics
from .middleware import (
    HEALTH_PREFIX,
    BodyLimitMiddleware,
    InFlightLimitMiddleware,
    MetricsMiddleware,
    TokenAuthMiddleware,
    TracingMiddleware,
    UnexpectedErrorMiddleware,
)
from .overview import load_registered_names, overview_routes
from .routes import routes
from .settings import ApiSettings

__all__ = ["create_app", "wait_connected"]


def create_app(settings: ApiSettings | None = None) -> Starlette:
    """A new API app. Its lifespan connects to Kafka in the background; until then (and whenever
    Kafka is away) requests that need Kafka answer 500 with the operation's code, and readiness
    fails."""
    settings = settings or ApiSettings.from_env()
    metrics = ApiMetrics()
    link = KafkaLink(settings)
    gateway = Gateway(link, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        link.start()
        try:
            yield
        finally:
            await gateway.close()
            await link.stop()

    # Outermost first: every answer is counted, even a 401 or a 413.
    middleware = [
        Middleware(MetricsMiddleware, metrics=metrics),
        # A server span per request when tracing is on (engine.tracing); nothing otherwise.
        Middleware(TracingMiddleware),
        Middleware(UnexpectedErrorMiddleware),
        Middleware(
            InFlightLimitMiddleware,
            limit=settings.max_in_flight,
            exempt_prefixes=(HEALTH_PREFIX, "/metrics"),
        ),
        # The dashboard's static files hold no data: its page asks for the token, then every
        # request for data carries it.
        Middleware(
            TokenAuthMiddleware,
            token=settings.api_token,
            open_prefixes=(HEALTH_PREFIX, DASHBOARD_PREFIX),
        ),
        Middleware(BodyLimitMiddleware, limit=settings.max_body_bytes),
    ]
    handlers = {
        cls: handle_exception
        for cls in (
            ApiError,
            # Caught here, not by Starlette's outermost handler, which would re-raise it for
            # uvicorn to log a second traceback.
            ClientDisconnect,
            HeadraceError,
            HTTPException,
            KafkaError,
            asyncio.TimeoutError,
            OSError,
            Exception,
        )
    }
    app = Starlette(
        routes=[*routes(), *overview_routes(), *dashboard_routes()],
        middleware=middleware,
        exception_handlers=handlers,
        lifespan=lifespan,
    )
    app.router.redirect_slashes = False  # a trailing slash is a missing segment, answered as such
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.link = link
    app.state.gateway = gateway
    app.state.workflow_names = load_registered_names(settings.app)
    return app


async def wait_connected(app: Starlette) -> None:
    """For embedding and tests: wait until the app's Kafka link is connected (no deadline: use
    `asyncio.timeout` around it)."""
    link: KafkaLink = app.state.link
    await link.connected.wait()
