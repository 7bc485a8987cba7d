"""An instance's history events, read from the history topic.

The history topic holds one record per turn, keyed by instance ID, on the instance's partition.
There is no index by instance: the API reads that partition and keeps the records of this instance's
current execution. To avoid reading the partition from its very beginning, it first seeks to the
records written since the instance was created (Kafka's time index, with a margin for clock
adjustments), so the cost is the partition's traffic during the instance's lifetime, not its whole
retention. An instance that lives for weeks on a busy partition is the expensive case; an index
topic keyed by instance would be the next step if that matters.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from engine.core.events import HistoryEvent
from engine.errors import DecodeError
from engine.runtime.records import decode_events

from .errors import BackendError
from .kafka import KafkaLink
from .model import Instance

__all__ = ["read_history"]

#: Records are stamped by the engine's clock, like `created_at`; this absorbs clock adjustments.
_CLOCK_MARGIN = timedelta(minutes=5)
#: A history read may scan much more than one request's Kafka deadline allows.
_MIN_BUDGET_S = 30.0


async def read_history(link: KafkaLink, instance: Instance) -> list[HistoryEvent]:
    link.require()
    budget = max(_MIN_BUDGET_S, link.settings.kafka_timeout_s)
    try:
        async with asyncio.timeout(budget):
            return await _read(link, instance)
    except TimeoutError:
        raise BackendError(
            f"reading the history of '{instance.instance_id}' took longer than {budget:g}s"
        ) from None


async def _read(link: KafkaLink, instance: Instance) -> list[HistoryEvent]:
    settings = link.settings.engine
    tp = TopicPartition(link.topics.history, link.partition(instance.instance_id))
    consumer = AIOKafkaConsumer(
        **settings.client_kwargs(),
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=8 * 1024 * 1024,
        request_timeout_ms=int(link.settings.kafka_timeout_s * 1000),
    )
    await consumer.start()
    try:
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        start = await _start_offset(consumer, tp, instance, end)
        if start is None:
            await consumer.seek_to_beginning(tp)
        else:
            consumer.seek(tp, start)
        key = instance.instance_id.encode()
        events: list[HistoryEvent] = []
        while await consumer.position(tp) < end:
            batch = await consumer.getmany(tp, timeout_ms=200, max_records=10_000)
            for record in batch.get(tp, ()):
                if record.key != key or record.value is None:
                    continue
                try:
                    _, execution_id, turn = decode_events(record.value)
                except (DecodeError, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                    continue  # an unreadable record is the engine's bug; skip, do not fail the read
                if execution_id == instance.execution_id:
                    events.extend(turn)
        events.sort(key=lambda e: e.seq)
        return events
    finally:
        await consumer.stop()


async def _start_offset(
    consumer: AIOKafkaConsumer, tp: TopicPartition, instance: Instance, end: int
) -> int | None:
    """Where this instance's records can start (None: from the beginning)."""
    if instance.created_at is None:
        return None
    since = int((instance.created_at - _CLOCK_MARGIN).timestamp() * 1000)
    found = (await consumer.offsets_for_times({tp: since})).get(tp)
    # No record stamped at or after `since`: nothing of this instance is there yet.
    return end if found is None else int(found.offset)
