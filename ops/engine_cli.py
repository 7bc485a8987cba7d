"""`headrace engine|worker|run --app module:runtime`: the engine's processes.

`engine` runs orchestrator processors, `worker` runs activity workers, `run` both in one process.
Any number of each may run at once; they share the work through Kafka consumer groups.
Settings come from the environment (KAFKA_BOOTSTRAP_SERVERS, HEADRACE_TOPIC_PREFIX, …); flags win.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import signal
import sys
from typing import Any

from ops.errors import OpsError


class AppNotFound(OpsError):
    """The --app reference does not name a WorkflowRuntime."""


def load_runtime(reference: str) -> Any:
    """`package.module:attribute` → the WorkflowRuntime it names."""
    from engine import WorkflowRuntime

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
    from engine.runtime.settings import Settings

    return Settings.from_env(
        bootstrap_servers=args.bootstrap_servers,
        topic_prefix=args.topic_prefix,
        partitions=args.partitions,
        replication_factor=args.replication_factor,
        activity_concurrency=getattr(args, "concurrency", None),
    )


async def _serve(roles: list[Any]) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: [role.stop() for role in roles])
    tasks = [asyncio.create_task(role.run()) for role in roles]
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    for role in roles:
        role.stop()
    await asyncio.gather(*pending, return_exceptions=True)
    for task in done:
        task.result()


def _run(args: argparse.Namespace) -> int:
    from engine.runtime.engine import Engine
    from engine.runtime.worker import ActivityWorker

    logging.basicConfig(level=getattr(logging, args.log_level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    runtime = load_runtime(args.app)
    settings = _settings(args)
    roles: list[Any] = []
    if args.role in ("engine", "run"):
        roles.append(Engine(runtime.registry, settings))
    if args.role in ("worker", "run"):
        roles.append(ActivityWorker(runtime.registry, settings))
    asyncio.run(_serve(roles))
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    helps = {
        "engine": "run orchestrator processors for the workflows of --app",
        "worker": "run an activity worker for the activities of --app",
        "run": "run both an engine and a worker in one process",
    }
    for role, text in helps.items():
        parser = subparsers.add_parser(role, help=text, description=text)
        parser.add_argument("--app", required=True, help="module:attribute of a WorkflowRuntime")
        parser.add_argument("--bootstrap-servers", help="Kafka bootstrap servers (KAFKA_BOOTSTRAP_SERVERS)")
        parser.add_argument("--topic-prefix", help="topic and group name prefix (HEADRACE_TOPIC_PREFIX)")
        parser.add_argument("--partitions", type=int, help="partitions of new topics (HEADRACE_PARTITIONS)")
        parser.add_argument("--replication-factor", type=int,
                            help="replication of new topics (HEADRACE_REPLICATION_FACTOR)")
        if role != "engine":
            parser.add_argument("--concurrency", type=int, help="activities at once (HEADRACE_ACTIVITY_CONCURRENCY)")
        parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
        parser.set_defaults(handler=_run, role=role)
