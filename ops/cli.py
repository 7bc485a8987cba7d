"""The `headrace` command: an argparse dispatcher whose subcommands live in their own modules.

Each module in COMMANDS exposes `register(subparsers)`, which adds its parser and sets `handler`
(args -> exit code) as a default. The modules are imported here like any other (the registry is
this list, not a list of names). Registration must stay cheap: heavy imports (Kafka clients,
uvicorn, matplotlib) belong inside handlers, so `headrace --help` stays instant. A command with
verbs accepts its own options before and after the verb (`ops.command.group_options`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from api import cli as workflow_cli
from api import server as api_server
from api.grpc import server as grpc_server
from ops import engine_cli, stack, topics_cli
from ops.bench import cli as bench_cli
from ops.chaos import cli as chaos_cli
from ops.command import Subcommands
from ops.errors import OpsError
from ops.kafka import cli as kafka_cli

__all__ = ["COMMANDS", "build_parser", "main"]


Handler = Callable[[argparse.Namespace], int]
Register = Callable[[Subcommands], None]

#: Every subcommand of `headrace`, in the order `headrace --help` lists them.
COMMANDS: tuple[Register, ...] = (
    kafka_cli.register,
    engine_cli.register,
    stack.register,
    api_server.register,
    grpc_server.register,
    workflow_cli.register,
    bench_cli.register,
    chaos_cli.register,
    topics_cli.register,
)


def build_parser(commands: Sequence[Register] = COMMANDS) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="headrace",
        description="Headrace: durable workflows on Apache Kafka with Dapr Workflow's HTTP API.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in commands:
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except OpsError as exc:
        print(f"headrace: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("headrace: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
