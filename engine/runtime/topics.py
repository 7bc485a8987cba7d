"""The topics of one deployment, and their idempotent creation with the right configs."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from .settings import Settings

__all__ = ["Topics", "ensure_topics", "partition_count", "record_limit"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Topics:
    """Names under the configured prefix. All are keyed by instance ID and co-partitioned."""

    commands: str
    results: str
    tasks: str
    status: str
    history: str
    history_store: str
    dead_letter: str

    @classmethod
    def for_settings(cls, settings: Settings) -> Topics:
        return cls(
            # Commands from the API, clients, users, and other instances (children, parents).
            commands=settings.topic("commands"),
            # Activity results from workers.
            results=settings.topic("results"),
            # Activity work items for one task queue.
            tasks=settings.topic(f"tasks.{settings.task_queue}"),
            # Compacted: the latest state of every instance; the engine's state changelog and the
            # API's status view in one.
            status=settings.topic("status"),
            # Append-only: every history event, one record per turn (audit and external replay).
            history=settings.topic("history"),
            # Compacted: histories of running instances in chunks, to replay after a restart.
            history_store=settings.topic("history-store"),
            dead_letter=settings.topic("dead-letter"),
        )

    @property
    def inputs(self) -> tuple[str, str]:
        return (self.commands, self.results)


def record_limit(settings: Settings) -> int:
    """Largest record (batch) the deployment's topics accept and its producers send."""
    return 3 * settings.max_payload_bytes + 1024 * 1024


async def ensure_topics(settings: Settings) -> Topics:
    """Create the deployment's topics if they are missing (safe to call from every process)."""
    topics = Topics.for_settings(settings)
    # A record may carry a payload at the limit twice (a status holds input and output) plus its
    # envelope; Kafka's default of about 1 MB per batch would refuse it and stall the transaction.
    common: dict[str, str] = {"max.message.bytes": str(record_limit(settings))}
    if settings.replication_factor > 1:
        common["min.insync.replicas"] = str(min(2, settings.replication_factor))
    compacted = {**common, "cleanup.policy": "compact", "min.compaction.lag.ms": "0",
                 "segment.ms": "600000"}
    plain = {**common, "cleanup.policy": "delete"}
    wanted = [
        NewTopic(topics.commands, settings.partitions, settings.replication_factor, topic_configs=plain),
        NewTopic(topics.results, settings.partitions, settings.replication_factor, topic_configs=plain),
        NewTopic(topics.tasks, settings.partitions, settings.replication_factor, topic_configs=plain),
        NewTopic(topics.status, settings.partitions, settings.replication_factor, topic_configs=compacted),
        NewTopic(topics.history, settings.partitions, settings.replication_factor, topic_configs=plain),
        NewTopic(topics.history_store, settings.partitions, settings.replication_factor,
                 topic_configs=compacted),
        NewTopic(topics.dead_letter, 1, settings.replication_factor, topic_configs=plain),
    ]
    admin = AIOKafkaAdminClient(**settings.client_kwargs())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in wanted if t.name not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another process created them first
                await admin.create_topics(missing)
            log.info("created topics %s", ", ".join(t.name for t in missing))
    finally:
        await admin.close()
    return topics


async def partition_count(settings: Settings, topic: str) -> int:
    """Partitions of an existing topic (0 when it does not exist)."""
    admin = AIOKafkaAdminClient(**settings.client_kwargs())
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    for entry in described:
        if entry.get("topic") == topic and entry.get("error_code", 0) == 0:
            return len(entry.get("partitions", []))
    return 0
