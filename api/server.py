"""`headrace api` and `python -m api`: serve the REST API with uvicorn (port 3500 by default).

Registration stays cheap (`headrace --help` must not import Kafka clients); the server and its
settings are imported when the command runs.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ops.command import Subcommands

__all__ = ["main", "register", "serve"]


def serve(
    host: str | None = None,
    port: int | None = None,
    log_level: str | None = None,
    app: str | None = None,
    log_format: str | None = None,
    app_id: str | None = None,
) -> int:
    import uvicorn

    from engine.runtime import kafka_protocol
    from engine.runtime.logs import configure_logging, import_path_like_python_m
    from engine.settings import Settings
    from engine.tracing import configure_from_env

    from .app import create_app
    from .protocol import uvicorn_options
    from .settings import ApiSettings

    settings = ApiSettings.from_env(host=host, port=port, app=app, log_level=log_level)
    if app_id is not None:
        # One API serves one app, as daprd's HTTP API is its sidecar's app's (docs/architecture.md).
        settings = replace(settings, engine=Settings.from_env(app_id=app_id))
    level = settings.log_level
    # The same setup as the engine's processes: repeated errors (aiokafka's reconnects while Kafka
    # is away) are rate-limited rather than silenced.
    configure_logging(level, log_format=log_format)
    kafka_protocol.install()  # as the engine's processes do (`engine.runtime.eventloop`)
    configure_from_env("headrace-api")  # off unless OTEL_* asks for traces
    # --app is imported by create_app; find it in the current directory as `python -m` would.
    import_path_like_python_m()
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=level,
        # uvicorn's own logging config would give its loggers handlers and a format of their own;
        # without it their records reach the root handler configure_logging installed.
        log_config=None,
        access_log=level == "debug",
        lifespan="on",
        **uvicorn_options(settings),
    )
    return 0


def _handle(args: argparse.Namespace) -> int:
    return serve(args.host, args.port, args.log_level, args.app, args.log_format, args.app_id)


def register(subparsers: Subcommands) -> None:
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
    parser.add_argument(
        "--log-format",
        choices=["text", "json"],
        help="text lines, or one JSON object per line (default $HEADRACE_LOG_FORMAT or text)",
    )
    # `headrace stack up` passes the app to every role. The API runs no workflow code: it only
    # reads the registered workflow names, for the dashboard's start form.
    parser.add_argument(
        "--app",
        default=None,
        help="module:attribute of a WorkflowRuntime whose workflow names the dashboard offers "
        "(default $HEADRACE_API_APP)",
    )
    parser.add_argument("--app-id", default=None,
                        help="the app whose workflows this API serves (default $HEADRACE_APP_ID); without "
                        "HEADRACE_TOPIC_PREFIX its topics are headrace.<app-id>.*")
    parser.set_defaults(handler=_handle)


def main() -> int:
    return serve()
