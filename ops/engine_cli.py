"""`headrace engine|worker|run --app module:runtime`: the engine's processes.

`engine` runs orchestrator processors, `worker` runs activity workers, `run` both in one process.
Any number of each may run at once; they share the work through Kafka consumer groups.
Settings come from the environment (KAFKA_BOOTSTRAP_SERVERS, HEADRACE_TOPIC_PREFIX, …); flags win.
With --metrics-port (HEADRACE_METRICS_PORT) the process serves /metrics, /healthz and /readyz
(engine/runtime/telemetry.py). SIGTERM or SIGINT stops it: a worker lets running activities finish
for --shutdown-grace seconds (HEADRACE_SHUTDOWN_GRACE_SECONDS) and abandons the rest.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import signal
import sys
from typing import TYPE_CHECKING, Any

from ops.errors import OpsError

if TYPE_CHECKING:
    from ops.command import Subcommands


class AppNotFound(OpsError):
    """The --app reference does not name a WorkflowRuntime."""


def load_runtime(reference: str) -> Any:
    """`package.module:attribute` → the WorkflowRuntime it names."""
    from engine import WorkflowRuntime
    from engine.runtime.logs import import_path_like_python_m

    import_path_like_python_m()
    module_name, _, attribute = reference.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise AppNotFound(f"cannot import {module_name!r} for --app {reference!r}: {exc}") from exc
    runtime = getattr(module, attribute or "runtime", None)
    if not isinstance(runtime, WorkflowRuntime):
        raise AppNotFound(f"--app {reference!r} does not name a WorkflowRuntime")
    return runtime


def _settings(args: argparse.Namespace) -> Any:
    from engine.settings import Settings

    return Settings.from_env(
        bootstrap_servers=args.bootstrap_servers,
        topic_prefix=args.topic_prefix,
        app_id=args.app_id,
        partitions=args.partitions,
        replication_factor=args.replication_factor,
        activity_concurrency=getattr(args, "concurrency", None),
        shutdown_grace_seconds=getattr(args, "shutdown_grace", None),
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
    )


async def _serve(roles: dict[str, Any], settings: Any) -> None:
    from engine.runtime.telemetry import TelemetryServer

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: [role.stop() for role in roles.values()])
    telemetry = None
    if settings.metrics_port:
        telemetry = TelemetryServer(settings.metrics_port, settings.metrics_host)
        for name, role in roles.items():
            # The engine's metrics and problems() hook are picked up by name (telemetry.py).
            telemetry.watch(name, role)
        telemetry.start(loop)
    try:
        tasks = [asyncio.create_task(role.run()) for role in roles.values()]
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for role in roles.values():
            role.stop()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in done:
            task.result()
    finally:
        if telemetry is not None:
            telemetry.stop()


def _run(args: argparse.Namespace) -> int:
    from engine.runtime.engine import Engine
    from engine.runtime.eventloop import run as run_process
    from engine.runtime.logs import configure_logging
    from engine.runtime.worker import ActivityWorker
    from engine.tracing import configure_from_env

    configure_logging(args.log_level, log_format=args.log_format)
    configure_from_env(f"headrace-{args.role}")  # off unless OTEL_* asks for traces
    settings = _settings(args)
    if args.app is not None:
        runtime = load_runtime(args.app)
    elif args.role == "engine" and settings.remote_workflow_names:
        from engine import WorkflowRuntime

        runtime = WorkflowRuntime()  # every workflow runs in apps connected over gRPC (docs/grpc.md)
    else:
        raise OpsError(f"headrace {args.role} needs --app module:attribute of a WorkflowRuntime"
                       + (" (or HEADRACE_REMOTE_WORKFLOWS, when every workflow runs in a connected app)"
                          if args.role == "engine" else ""))
    roles: dict[str, Any] = {}
    if args.role in ("engine", "run"):
        roles["engine"] = Engine(runtime.registry, settings)
    if args.role in ("worker", "run"):
        roles["worker"] = ActivityWorker(runtime.registry, settings)
    run_process(_serve(roles, settings))
    if any(getattr(role, "abandoned", 0) for role in roles.values()):
        # Abandoned activities still run on daemon threads; interpreter shutdown would race them
        # for stdout and the logging locks. Everything worth keeping is committed and flushed.
        from engine.tracing import shutdown as flush_traces

        flush_traces()  # os._exit skips the exporter's own flush at exit
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


def register(subparsers: Subcommands) -> None:
    helps = {
        "engine": "run orchestrator processors for the workflows of --app",
        "worker": "run an activity worker for the activities of --app",
        "run": "run both an engine and a worker in one process",
    }
    for role, text in helps.items():
        parser = subparsers.add_parser(role, help=text, description=text)
        parser.add_argument("--app", required=role != "engine",
                            help="module:attribute of a WorkflowRuntime" + (
                                "; optional with HEADRACE_REMOTE_WORKFLOWS (workflows in apps connected over gRPC)"
                                if role == "engine" else ""))
        parser.add_argument("--bootstrap-servers", help="Kafka bootstrap servers (KAFKA_BOOTSTRAP_SERVERS)")
        parser.add_argument("--topic-prefix", help="topic and group name prefix (HEADRACE_TOPIC_PREFIX)")
        parser.add_argument("--app-id", help="the app these processes serve (HEADRACE_APP_ID); without "
                            "--topic-prefix its topics are headrace.<app-id>.*")
        parser.add_argument("--partitions", type=int, help="partitions of new topics (HEADRACE_PARTITIONS)")
        parser.add_argument("--replication-factor", type=int,
                            help="replication of new topics (HEADRACE_REPLICATION_FACTOR)")
        if role != "engine":
            parser.add_argument("--concurrency", type=int, help="activities at once (HEADRACE_ACTIVITY_CONCURRENCY)")
            parser.add_argument("--shutdown-grace", type=float, metavar="SECONDS",
                                help="on SIGTERM, seconds running activities may finish before they are "
                                "abandoned and delivered again (HEADRACE_SHUTDOWN_GRACE_SECONDS, 30)")
        parser.add_argument("--metrics-port", type=int,
                            help="serve /metrics, /healthz and /readyz on this port (HEADRACE_METRICS_PORT; 0 = off)")
        parser.add_argument("--metrics-host", help="address for --metrics-port (HEADRACE_METRICS_HOST, 127.0.0.1)")
        parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
        parser.add_argument("--log-format", choices=["text", "json"],
                            help="text lines, or one JSON object per line (HEADRACE_LOG_FORMAT, text)")
        parser.set_defaults(handler=_run, role=role)
