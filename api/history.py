"""An instance's history events, read from the history topic.

The history topic holds one record per turn (with HEADRACE_AUDIT=execution: per execution, when it
ends, and a running one's events are read from its history chunks on `history-store`), keyed by
instance ID, on the instance's partition.
There is no index by instance: the API reads that partition and keeps the records of this instance's
current execution. To avoid reading the partition from its very beginning, it first seeks to the
records written since the instance was created (Kafka's time index, with a margin for clock
adjustments), so the cost is the partition's traffic during the instance's lifetime, not its whole
retention. An instance that lives for weeks on a busy partition is the expensive case; an index
topic keyed by instance would be the next step if that matters.

Reads are bounded, so no burst of requests can grow the process without limit: at most
`history_concurrency` run at once, each on a consumer from a pool of that size (reused, so a read
pays no connection setup) whose fetch buffer is 1 MiB (a larger record still arrives whole: the
broker always returns the first batch). A read that finds every slot taken waits up to
`history_wait_s`, then gets a 503 `ERR_API_BUSY` with `Retry-After`. Memory is then about the
slots times (the fetch buffer plus the events of the instances being read).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from engine.core.events import HistoryEvent
from engine.core.state import InstanceState
from engine.errors import DecodeError
from engine.read.consumer import committed_reader
from engine.read.to_end import read_to_end
from engine.settings import AuditMode
from engine.wire.records import decode_chunk, decode_events, parse_history_chunk_key

from .errors import BackendError, Busy
from .kafka import KafkaLink

__all__ = ["FETCH_BYTES", "HistoryReader"]

#: Records are stamped by the engine's clock, like `created_at`; this absorbs clock adjustments.
_CLOCK_MARGIN = timedelta(minutes=5)
#: A history read may scan much more than one request's Kafka deadline allows.
_MIN_BUDGET_S = 30.0
#: Per-read fetch buffer. Small on purpose: it is held once per slot, and a bigger one only saves
#: round trips on partitions with a lot of traffic.
FETCH_BYTES = 1024 * 1024
#: Records decoded per `getmany`: bounds the decoded copies held at once, like the fetch buffer.
_MAX_RECORDS = 500


class HistoryReader:
    """Bounded, pooled history reads (see the module docstring)."""

    def __init__(self, link: KafkaLink) -> None:
        self.link = link
        self.limit = link.settings.history_concurrency
        self._slots = asyncio.Semaphore(self.limit)
        self._idle: list[AIOKafkaConsumer] = []
        self._closed = False

    async def read(self, instance: InstanceState) -> list[HistoryEvent]:
        link = self.link
        link.require()
        wait = link.settings.history_wait_s
        try:
            async with asyncio.timeout(wait):
                await self._slots.acquire()
        except TimeoutError:
            raise Busy(
                f"all {self.limit} history read slots of this API replica stayed busy for "
                f"{wait:g}s; try again shortly"
            ) from None
        try:
            return await self._read_on_pooled(instance)
        finally:
            self._slots.release()

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for consumer in idle:
            await _stop(consumer)

    async def _read_on_pooled(self, instance: InstanceState) -> list[HistoryEvent]:
        budget = max(_MIN_BUDGET_S, self.link.settings.kafka_timeout_s)
        consumer: AIOKafkaConsumer | None = self._idle.pop() if self._idle else None
        reusable = False
        try:
            async with asyncio.timeout(budget):
                if consumer is None:
                    consumer = self._new_consumer()
                    await consumer.start()
                events = await _read(self.link, consumer, instance)
            reusable = True
            return events
        except TimeoutError:
            raise BackendError(
                f"reading the history of '{instance.instance_id}' took longer than {budget:g}s"
            ) from None
        finally:
            if consumer is not None:
                if reusable and not self._closed and _unassign(consumer):
                    self._idle.append(consumer)
                else:
                    # After a failure or a timeout its state is unknown: never reuse it.
                    await _stop(consumer)

    def _new_consumer(self) -> AIOKafkaConsumer:
        return committed_reader(
            self.link.settings.engine,
            max_partition_fetch_bytes=FETCH_BYTES,
            fetch_max_bytes=FETCH_BYTES,
            # A read stops at the end it found and never waits for more. A long-polling fetch
            # left in flight would also hold up the next read's offset requests on this
            # connection (the broker answers in order).
            fetch_max_wait_ms=10,
            request_timeout_ms=int(self.link.settings.kafka_timeout_s * 1000),
        )


def _unassign(consumer: AIOKafkaConsumer) -> bool:
    """Unassigned, a consumer stops fetching and drops what it buffered: ready for the next read."""
    try:
        consumer.assign([])
    except Exception:
        return False
    return True


async def _stop(consumer: AIOKafkaConsumer) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(consumer.stop(), 10)


async def _read(
    link: KafkaLink, consumer: AIOKafkaConsumer, instance: InstanceState
) -> list[HistoryEvent]:
    number = link.partition(instance.instance_id)
    history = TopicPartition(link.topics.history, number)
    tps = [history]
    if link.settings.engine.audit is AuditMode.EXECUTION and not instance.is_terminal:
        # HEADRACE_AUDIT=execution: the history topic gets an execution's events when it ends; until
        # then they are the engine's history chunks on `history-store` (the history topic is read
        # too: the run may end while this reads).
        tps.append(TopicPartition(link.topics.history_store, number))
    ends = await consumer.end_offsets(tps)
    starts = {tp: await _start_offset(consumer, tp, instance, ends[tp]) for tp in tps}
    key = instance.instance_id.encode()
    run = (instance.instance_id, instance.execution_id)
    events: dict[int, HistoryEvent] = {}
    chunks: dict[bytes, bytes | None] = {}
    # The caller's budget bounds the read (a stalled one ends as its timeout).
    async for records in read_to_end(consumer, starts, ends=ends, max_records=_MAX_RECORDS, stall_s=None):
        for record in records:
            if record.topic != history.topic:
                if record.key is not None and _chunk_of(record.key) == run:
                    chunks[record.key] = record.value  # the latest of each chunk (a tombstone: ended)
                continue
            if record.key != key or record.value is None:
                continue
            try:
                _, execution_id, turn = decode_events(record.value)
            except (DecodeError, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                continue  # an unreadable record is the engine's bug; skip, do not fail the read
            if execution_id == instance.execution_id:
                events.update((e.seq, e) for e in turn)
    for value in chunks.values():
        if value is not None:
            with contextlib.suppress(DecodeError):
                events.update((e.seq, e) for e in decode_chunk(value).events)
    return [events[seq] for seq in sorted(events)]


def _chunk_of(key: bytes) -> tuple[str, str] | None:
    """(instance, execution) of a history chunk's key; None for the other keys of `history-store`."""
    try:
        instance_id, execution_id, _ = parse_history_chunk_key(key)
    except DecodeError:
        return None
    return instance_id, execution_id


async def _start_offset(
    consumer: AIOKafkaConsumer, tp: TopicPartition, instance: InstanceState, end: int
) -> int | None:
    """Where this instance's records can start (None: from the beginning)."""
    if instance.created_at is None:
        return None
    since = int((instance.created_at - _CLOCK_MARGIN).timestamp() * 1000)
    found = (await consumer.offsets_for_times({tp: since})).get(tp)
    # No record stamped at or after `since`: nothing of this instance is there yet.
    return end if found is None else int(found.offset)
