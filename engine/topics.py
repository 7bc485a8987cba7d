"""The topics of one deployment, and their idempotent creation with the right configs."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from aiokafka.partitioner import murmur2

from .settings import Settings

__all__ = [
    "MANAGED_CONFIGS", "PRODUCE_BATCH_BYTES", "Topics", "ensure_topics", "partition_count", "producer_options",
    "record_limit", "topic_configs",
]

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
    #: Turns of workflows whose code runs in connected apps (`engine.core.remote`, `headrace grpc`).
    orchestrations: str

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
            orchestrations=settings.topic("orchestrations"),
        )

    @property
    def inputs(self) -> tuple[str, str]:
        return (self.commands, self.results)


def record_limit(settings: Settings) -> int:
    """Largest record (batch) the deployment's topics accept and its producers send."""
    return 3 * settings.max_payload_bytes + 1024 * 1024


def dead_letter_value_bytes(settings: Settings, limit: int | None = None) -> int:
    """How much of a refused record's value its dead letter copies: HEADRACE_DEAD_LETTER_VALUE_BYTES,
    cut so the dead letter fits in a record (of `limit` bytes, `record_limit` by default) whatever
    the value holds (in its JSON a byte takes up to six: a control character is written
    `\u0001`). A dead letter too large to write would leave the record it sets aside in the way."""
    return min(settings.dead_letter_value_bytes, (record_limit(settings) if limit is None else limit) // 8)


#: Largest batch of records a producer builds per partition (aiokafka's `max_batch_size`).
#: aiokafka sends a node one produce request at a time with at most one batch per partition in it,
#: so with its default of 16 KiB a transaction of ~200 KiB (an engine partition's turns under load)
#: went out in about twelve requests, one after another, each a round trip inside the commit. Half
#: of Kafka's default `max.message.bytes` (1 MiB, the limit of one batch), so that a topic made by
#: hand with the defaults takes any batch.
PRODUCE_BATCH_BYTES = 512 * 1024


@functools.lru_cache(maxsize=65_536)
def partition_for(key: bytes, partitions: int) -> int:
    """The partition the Java client's default partitioner (murmur2) gives a key, as aiokafka's does.

    Cached: aiokafka's murmur2 is pure Python (~1 % of the engine's and of a worker's CPU at full
    load), and one instance's records, all keyed by its ID, are many: its inputs, its work items,
    its results.
    """
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


def java_partitioner(key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
    """aiokafka's `DefaultPartitioner` (the Java client's), with the hash cached (`partition_for`)."""
    if key is None:
        return random.choice(available or all_partitions)  # noqa: S311 - spreading load, not a secret
    return all_partitions[partition_for(key, len(all_partitions))]


def producer_options(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """What every producer of the deployment (engine, workers, REST API, Python client) is made
    with, `overrides` on top: idempotent, sent at once (no linger), records up to `record_limit`,
    batches up to `PRODUCE_BATCH_BYTES`, keys partitioned as the Java client does."""
    return {**settings.client_kwargs(), "enable_idempotence": True, "linger_ms": 0,
            "max_request_size": record_limit(settings), "max_batch_size": PRODUCE_BATCH_BYTES,
            "partitioner": java_partitioner, **overrides}


#: Topic configs that follow the settings: set at creation, and changed on existing topics whose
#: values differ. (Partition counts, replication and cleanup policy are never changed here.)
MANAGED_CONFIGS = ("retention.ms", "segment.ms", "delete.retention.ms", "max.compaction.lag.ms")

#: The shortest and longest a segment of an append-only topic stays open. Retention deletes whole
#: segments once their newest record is older than `retention.ms`, so a record can outlive its
#: retention by up to one segment's time; Kafka's default segment is 7 days.
_MIN_SEGMENT_MS = 10 * 60 * 1000
_MAX_SEGMENT_MS = 24 * 60 * 60 * 1000
#: Compacted topics roll a segment every 10 minutes: compaction never touches the open segment.
_COMPACTED_SEGMENT_MS = 10 * 60 * 1000


def _segment_ms(retention_ms: int) -> int:
    if retention_ms < 0:
        return _MAX_SEGMENT_MS
    return max(_MIN_SEGMENT_MS, min(_MAX_SEGMENT_MS, retention_ms // 7))


def topic_configs(settings: Settings) -> dict[str, dict[str, str]]:
    """The configs each of the deployment's topics is created with, by topic name."""
    topics = Topics.for_settings(settings)
    # A record may carry a payload at the limit twice (a status holds input and output) plus its
    # envelope; Kafka's default of about 1 MB per batch would refuse it and stall the transaction.
    common: dict[str, str] = {"max.message.bytes": str(record_limit(settings))}
    if settings.replication_factor > 1:
        common["min.insync.replicas"] = str(min(2, settings.replication_factor))

    def plain(retention_ms: int) -> dict[str, str]:
        return {**common, "cleanup.policy": "delete", "retention.ms": str(retention_ms),
                "segment.ms": str(_segment_ms(retention_ms))}

    # A purge writes tombstones here; `max.compaction.lag.ms` bounds how long the values they replace
    # stay, `delete.retention.ms` how long the tombstones themselves stay readable after compaction.
    compacted = {**common, "cleanup.policy": "compact", "min.compaction.lag.ms": "0",
                 "segment.ms": str(min(_COMPACTED_SEGMENT_MS, max(settings.max_compaction_lag_ms, 1))),
                 "max.compaction.lag.ms": str(settings.max_compaction_lag_ms),
                 "delete.retention.ms": str(settings.tombstone_retention_ms)}
    return {
        topics.commands: plain(settings.retention_commands_ms),
        topics.results: plain(settings.retention_results_ms),
        topics.tasks: plain(settings.retention_tasks_ms),
        topics.status: compacted,
        topics.history: plain(settings.retention_history_ms),
        topics.history_store: compacted,
        topics.dead_letter: plain(settings.retention_dead_letter_ms),
        topics.orchestrations: plain(settings.retention_tasks_ms),
    }


T = TypeVar("T")

#: How long the topic check a process makes at its start waits out retriable errors (a broker of
#: the cluster restarting, a controller moving): aiokafka's admin client sends each request to one
#: node, picked at random, and fails at once if that node cannot be reached.
ADMIN_PATIENCE_S = 30.0


async def _patiently(what: str, call: Callable[[], Awaitable[T]], patience_s: float = ADMIN_PATIENCE_S) -> T:
    """`call()`, again after a growing pause while it fails with a retriable Kafka error, until
    `patience_s` have passed."""
    deadline = time.monotonic() + patience_s
    pause = 0.1
    while True:
        try:
            return await call()
        except KafkaError as exc:
            if not exc.retriable or time.monotonic() + pause > deadline:
                raise
            log.warning("%s: %r; trying again in %.1f s", what, exc, pause)
        await asyncio.sleep(pause)
        pause = min(pause * 2, 2.0)


async def _create(admin: AIOKafkaAdminClient, missing: list[NewTopic]) -> None:
    with contextlib.suppress(TopicAlreadyExistsError):  # another process created them first
        await admin.create_topics(missing)


async def ensure_topics(settings: Settings, *, align: bool = True) -> Topics:
    """Create the deployment's topics if they are missing, and bring existing topics' retention
    configs (`MANAGED_CONFIGS`) to the settings' values (safe to call from every process).
    `align=False` only creates: another app's topics keep the configs its own processes set."""
    topics = Topics.for_settings(settings)
    configs = topic_configs(settings)
    wanted = [
        NewTopic(name, 1 if name == topics.dead_letter else settings.partitions, settings.replication_factor,
                 topic_configs=config)
        for name, config in configs.items()
    ]
    admin = AIOKafkaAdminClient(**settings.client_kwargs())
    await admin.start()
    try:
        existing = set(await _patiently("listing topics", admin.list_topics))
        missing = [t for t in wanted if t.name not in existing]
        if missing:
            await _patiently("creating topics", lambda: _create(admin, missing))
            log.info("created topics %s", ", ".join(t.name for t in missing))
        present = [name for name in configs if name in existing and align]
        if present:
            try:
                await _align_configs(admin, {name: configs[name] for name in present})
            except KafkaError as exc:
                # Without DescribeConfigs/AlterConfigs rights (ACLs) the topics keep their configs;
                # that must not stop a process from starting.
                log.warning("could not check or set the topics' retention configs: %r", exc)
    finally:
        await admin.close()
    return topics


#: DescribeConfigs' `config_source` of a value set on the topic itself (not a broker or default).
_DYNAMIC_TOPIC_CONFIG = 1


async def _align_configs(admin: AIOKafkaAdminClient, configs: dict[str, dict[str, str]]) -> None:
    """Set `MANAGED_CONFIGS` on existing topics whose values differ from `configs`.

    aiokafka has no IncrementalAlterConfigs, and AlterConfigs replaces a topic's whole set of
    topic-level overrides: the request therefore carries every override the topic has now (an
    operator's own included), with only the managed keys changed.
    """
    names = list(configs)
    described = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in names])
    current: dict[str, dict[str, tuple[str, bool]]] = {}
    for response in described:
        for resource in response.resources:
            error_code, _message, _type, name, entries = resource[:5]
            if error_code != 0:
                log.warning("cannot read the configs of topic %s (error %d); leaving them as they are",
                            name, error_code)
                continue
            # v0 entries carry `is_default`, v1+ `config_source`; either way: (name, value, overridden?).
            current[name] = {entry[0]: (entry[1], _overridden(response.API_VERSION, entry)) for entry in entries}
    changes: list[ConfigResource] = []
    for name, entries in current.items():
        want = {key: configs[name][key] for key in MANAGED_CONFIGS if key in configs[name]}
        differ = {key: value for key, value in want.items() if entries.get(key, ("", False))[0] != value}
        if not differ:
            continue
        overrides = {key: value for key, (value, overridden) in entries.items() if overridden and value is not None}
        log.info("topic %s: setting %s", name, ", ".join(f"{k}={v}" for k, v in sorted(differ.items())))
        changes.append(ConfigResource(ConfigResourceType.TOPIC, name, configs={**overrides, **want}))
    if not changes:
        return
    for response in await admin.alter_configs(changes):
        for error_code, message, _type, name in response.resources:
            if error_code != 0:
                log.warning("could not set the retention configs of topic %s: error %d %s", name, error_code,
                            message)


def _overridden(version: int, entry: Any) -> bool:
    if version == 0:
        return not entry[3]  # is_default
    return bool(entry[3] == _DYNAMIC_TOPIC_CONFIG)


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
