"""The activity worker: runs work items from a task queue and reports their results.

At-least-once: an offset is committed only after the result of that work item, and of every
earlier one in its partition, has been written. A worker killed mid-activity leaves the item to be
delivered again; the engine drops a second result for the same task.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
from collections import defaultdict

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata

from ..core.codec import encode
from ..core.commands import ActivityResult, ActivityWorkItem
from ..core.values import FailureDetails
from ..errors import DecodeError
from ..sdk.activity import run_activity
from ..sdk.registry import Registry
from .records import WORK_ITEMS, encode_dead_letter
from .settings import FETCH_MAX_WAIT_MS, Settings
from .topics import Topics, ensure_topics, record_limit

__all__ = ["ActivityWorker"]

log = logging.getLogger(__name__)


class _Offsets:
    """Per partition: which fetched offsets are still running, so commits never skip one."""

    def __init__(self) -> None:
        self.running: dict[TopicPartition, set[int]] = defaultdict(set)
        self.highest_done: dict[TopicPartition, int] = {}

    def begin(self, tp: TopicPartition, offset: int) -> None:
        self.running[tp].add(offset)

    def done(self, tp: TopicPartition, offset: int) -> None:
        self.running[tp].discard(offset)
        self.highest_done[tp] = max(offset, self.highest_done.get(tp, -1))

    def committable(self) -> dict[TopicPartition, int]:
        out = {}
        for tp, highest in self.highest_done.items():
            running = self.running.get(tp)
            out[tp] = min(running) if running else highest + 1
        return out


class ActivityWorker:
    """A consumer-group member running activities for `registry` (see the module docstring)."""

    def __init__(self, registry: Registry, settings: Settings | None = None) -> None:
        self.settings = settings or Settings.from_env()
        self.registry = registry
        self.topics = Topics.for_settings(self.settings)
        self.group_id = self.settings.topic(f"workers.{self.settings.task_queue}")
        self._limit = self.settings.activity_concurrency
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=self._limit,
                                                           thread_name_prefix="headrace-activity")
        self._running: set[asyncio.Task[None]] = set()
        self._offsets = _Offsets()
        self._committed: dict[TopicPartition, int] = {}
        self._stopping = asyncio.Event()
        self._slot_free = asyncio.Event()
        self.ready = asyncio.Event()
        self.completed = 0

    async def run(self) -> None:
        await ensure_topics(self.settings)
        consumer = AIOKafkaConsumer(
            self.topics.tasks, **self.settings.client_kwargs(), group_id=self.group_id,
            enable_auto_commit=False, isolation_level="read_committed", auto_offset_reset="earliest",
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        )
        producer = AIOKafkaProducer(**self.settings.client_kwargs(), enable_idempotence=True, linger_ms=1,
                                    max_request_size=record_limit(self.settings))
        await producer.start()
        await consumer.start()
        log.info("activity worker started (group %s, %d activities)", self.group_id, len(self.registry.activities))
        try:
            while not self._stopping.is_set():
                await self._poll_once(consumer, producer)
            if self._running:
                await asyncio.wait(self._running, timeout=30)
            await self._commit(consumer)
        finally:
            await consumer.stop()
            await producer.stop()
            self._pool.shutdown(wait=False, cancel_futures=True)

    def stop(self) -> None:
        self._stopping.set()

    async def _poll_once(self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer) -> None:
        free = self._limit - len(self._running)
        assigned = consumer.assignment()
        if free <= 0:
            # Backpressure: stop fetching until a slot frees, rather than buffering unbounded work.
            consumer.pause(*assigned)
            self._slot_free.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._slot_free.wait(), timeout=0.1)
            await self._commit(consumer)
            return
        consumer.resume(*assigned)
        batches = await consumer.getmany(timeout_ms=50, max_records=free)
        if assigned:
            self.ready.set()
        for tp, records in batches.items():
            for record in records:
                self._offsets.begin(tp, record.offset)
                task = asyncio.create_task(self._handle(tp, record, producer))
                self._running.add(task)
                task.add_done_callback(self._finished)
        await self._commit(consumer)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._slot_free.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("activity handling crashed", exc_info=task.exception())

    async def _handle(self, tp: TopicPartition, record: ConsumerRecord[bytes, bytes], producer: AIOKafkaProducer
                      ) -> None:
        try:
            item = WORK_ITEMS.decode(record.value or b"")
        except DecodeError as exc:
            await producer.send_and_wait(self.topics.dead_letter, encode_dead_letter(
                str(exc), tp.topic, tp.partition, record.offset, record.key, record.value))
            self._offsets.done(tp, record.offset)
            return
        result = await run_activity(self.registry, item, self._pool)
        payload = encode(result)
        if len(payload) > self.settings.max_payload_bytes:
            payload = encode(self._too_large(item, len(payload)))
        while True:
            try:
                await producer.send_and_wait(self.topics.results, payload, key=item.instance_id.encode())
                break
            except KafkaError as exc:
                # The result must get out before the offset moves on; keep trying while Kafka is away.
                log.warning("could not write the result of %s#%d (%s); retrying", item.instance_id, item.task_id, exc)
                await asyncio.sleep(1)
        self.completed += 1
        self._offsets.done(tp, record.offset)

    def _too_large(self, item: ActivityWorkItem, size: int) -> ActivityResult:
        return ActivityResult(
            instance_id=item.instance_id, execution_id=item.execution_id, task_id=item.task_id,
            failure=FailureDetails(
                error_type="PayloadTooLargeError",
                message=f"the result of activity '{item.name}' is {size} bytes, over the limit of "
                f"{self.settings.max_payload_bytes} bytes",
                non_retriable=True,
            ),
        )

    async def _commit(self, consumer: AIOKafkaConsumer) -> None:
        assigned = consumer.assignment()
        offsets = {tp: off for tp, off in self._offsets.committable().items()
                   if tp in assigned and self._committed.get(tp) != off}
        if not offsets:
            return
        try:
            await consumer.commit({tp: OffsetAndMetadata(off, "") for tp, off in offsets.items()})
            self._committed.update(offsets)
        except (CommitFailedError, KafkaError) as exc:
            log.info("offset commit skipped (%s); the items may be delivered again", exc)
