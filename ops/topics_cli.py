"""`headrace topics`: the deployment's Kafka topics, their partitions and configs (`--create` makes them).

The names and configs come from the same `Settings` as the engine (environment variables, flags
win) and from `engine.topics`, so what this prints is exactly what the engine creates.
The contract of each topic is in docs/kafka-interface.md.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ops.command import Subcommands

__all__ = ["describe", "register"]

_CARRIES = {
    "commands": "commands to instances (StartWorkflow, RaiseEvent, ...); key = instance ID",
    "results": "activity results from workers (ActivityResult); key = instance ID",
    "tasks": "activity work items for one task queue (ActivityWorkItem); key = instance ID",
    "status": "compacted: the latest state of every instance; tombstone on purge",
    "history": "append-only: every history event, one record per turn",
    "history_store": "compacted: running instances' histories and states, with the input positions they include",
    "dead_letter": "input records the engine or a worker refused, with the reason",
}


def describe(settings: Any) -> list[dict[str, Any]]:
    """One entry per topic: role, name, partitions, replication factor, configs, what it carries."""
    from dataclasses import fields

    from engine.topics import Topics, topic_configs

    topics = Topics.for_settings(settings)
    configs = topic_configs(settings)
    rows = []
    for field in fields(topics):
        name = getattr(topics, field.name)
        rows.append({
            "role": field.name,
            "name": name,
            "partitions": 1 if name == topics.dead_letter else settings.partitions,
            "replication_factor": settings.replication_factor,
            "configs": configs[name],
            "carries": _CARRIES.get(field.name, ""),
        })
    return rows


def _handler(args: argparse.Namespace) -> int:
    import asyncio

    from engine.settings import Settings
    from engine.topics import ensure_topics

    overrides: dict[str, Any] = {}
    for flag, key in (("bootstrap_servers", "bootstrap_servers"), ("topic_prefix", "topic_prefix"),
                      ("partitions", "partitions"), ("replication_factor", "replication_factor"),
                      ("task_queue", "task_queue")):
        value = getattr(args, flag)
        if value is not None:
            overrides[key] = value
    settings = Settings.from_env(**overrides)
    rows = describe(settings)
    if args.create:
        asyncio.run(ensure_topics(settings))
    if args.output == "json":
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            print(f"{row['name']}  partitions={row['partitions']} replication={row['replication_factor']}")
            print(f"    {row['carries']}")
            print("    " + " ".join(f"{k}={v}" for k, v in sorted(row["configs"].items())))
        print(f"activity workers' consumer group: {settings.topic_prefix}workers.<queue>")
        if args.create:
            print("topics present (created where missing)")
    return 0


def register(subparsers: Subcommands) -> None:
    text = "print the deployment's Kafka topics, partitions and configs (--create makes them)"
    parser = subparsers.add_parser("topics", help=text, description=text)
    parser.add_argument("--create", action="store_true", help="create missing topics and align their retention")
    parser.add_argument("--bootstrap-servers", help="Kafka bootstrap servers (KAFKA_BOOTSTRAP_SERVERS)")
    parser.add_argument("--topic-prefix", help="topic and group name prefix (HEADRACE_TOPIC_PREFIX)")
    parser.add_argument("--partitions", type=int, help="partitions of new topics (HEADRACE_PARTITIONS)")
    parser.add_argument("--replication-factor", type=int,
                        help="replication of new topics (HEADRACE_REPLICATION_FACTOR)")
    parser.add_argument("--task-queue", help="activity task queue (HEADRACE_TASK_QUEUE)")
    parser.add_argument("-o", "--output", choices=("table", "json"), default="table")
    parser.set_defaults(handler=_handler)
