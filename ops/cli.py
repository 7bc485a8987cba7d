"""The `headrace` command: an argparse dispatcher whose subcommands live in their own modules.

Each module in COMMAND_MODULES exposes `register(subparsers)`, which adds its parser and sets
`handler` (args -> exit code) as a default. Registration must stay cheap: heavy imports (Kafka
clients, faust, uvicorn) belong inside handlers, so `headrace --help` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from ops.errors import OpsError

# Later issues add "ops.engine_cli", "ops.worker_cli", "ops.api_cli", "ops.bench", "ops.chaos", ...
COMMAND_MODULES: tuple[str, ...] = (
    "ops.kafka.cli",
    "ops.engine_cli",
    "ops.stack",
    "api.server",
    "api.cli",
    "ops.bench.cli",
    "ops.chaos.cli",
    "ops.topics_cli",
)

Handler = Callable[[argparse.Namespace], int]


def build_parser(modules: Sequence[str] = COMMAND_MODULES) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="headrace",
        description="Headrace: durable workflows on Apache Kafka with Dapr Workflow's HTTP API.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in modules:
        importlib.import_module(name).register(subparsers)
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
