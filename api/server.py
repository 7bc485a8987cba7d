"""`headrace api` and `python -m api`: serve the REST API with uvicorn (port 3500 by default).

Registration stays cheap (`headrace --help` must not import Kafka clients); the server and its
settings are imported when the command runs.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

__all__ = ["main", "register", "serve"]


def serve(
    host: str | None = None,
    port: int | None = None,
    log_level: str | None = None,
    app: str | None = None,
) -> int:
    import uvicorn

    from engine.runtime.logs import configure_logging, import_path_like_python_m

    from .app import create_app
    from .protocol import uvicorn_options
    from .settings import ApiSettings

    settings = ApiSettings.from_env(host=host, port=port, app=app)
    level = (log_level or os.environ.get("HEADRACE_LOG_LEVEL") or "info").lower()
    # The same setup as the engine's processes: repeated errors (aiokafka's reconnects while Kafka
    # is away) are rate-limited rather than silenced.
    configure_logging(level)
    # --app is imported by create_app; find it in the current directory as `python -m` would.
    import_path_like_python_m()
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=level,
        access_log=level == "debug",
        lifespan="on",
        **uvicorn_options(settings),
    )
    return 0


def _handle(args: argparse.Namespace) -> int:
    return serve(args.host, args.port, args.log_level, args.app)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "api",
        help="serve Dapr Workflow's HTTP API (default port 3500)",
        description="Serve the REST API. Kafka and topics come from KAFKA_BOOTSTRAP_SERVERS, "
        "HEADRACE_TOPIC_PREFIX, ...; DAPR_API_TOKEN turns on token auth.",
    )
    parser.add_argument(
        "--host", default=None, help="address to bind (default $HEADRACE_API_HOST or 127.0.0.1)"
    )
    parser.add_argument(
        "--port", type=int, default=None, help="port (default $HEADRACE_API_PORT or 3500)"
    )
    parser.add_argument("--log-level", default=None, choices=["debug", "info", "warning", "error"])
    # `headrace stack up` passes the app to every role. The API runs no workflow code: it only
    # reads the registered workflow names, for the dashboard's start form.
    parser.add_argument(
        "--app",
        default=None,
        help="module:attribute of a WorkflowRuntime whose workflow names the dashboard offers "
        "(default $HEADRACE_API_APP)",
    )
    parser.set_defaults(handler=_handle)


def main() -> int:
    return serve()
