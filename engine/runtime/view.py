"""The status view: every instance's latest state, read from the compacted status topic."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition

from ..core.state import InstanceState
from ..errors import DecodeError
from .records import decode_state
from .settings import FETCH_MAX_WAIT_MS, Settings
from .topics import Topics, partition_count

__all__ = ["StatusView"]

log = logging.getLogger(__name__)


class StatusView:
    """Follows the status topic from the beginning; waiters are woken on every change."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topic = Topics.for_settings(settings).status
        self.states: dict[str, InstanceState] = {}
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self.caught_up = asyncio.Event()

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(**self.settings.client_kwargs(), group_id=None, enable_auto_commit=False,
                                    isolation_level="read_committed", auto_offset_reset="earliest",
                                    fetch_max_wait_ms=FETCH_MAX_WAIT_MS)
        count = await partition_count(self.settings, self.topic)
        if not count:
            raise RuntimeError(f"topic {self.topic} does not exist: start an engine first")
        await consumer.start()
        tps = [TopicPartition(self.topic, p) for p in range(count)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        self._consumer = consumer
        ends = await consumer.end_offsets(tps)
        self._task = asyncio.create_task(self._follow(consumer, ends))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._consumer is not None:
            await self._consumer.stop()

    async def _follow(self, consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> None:
        # Nothing awaits this task: if it ended, every waiter of this process would wait forever
        # and every read would be stale. It outlives any error (the logging setup rate-limits).
        while True:
            try:
                await self._follow_once(consumer, ends)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("status view of %s: reading failed; trying again in 1 s", self.topic)
                await asyncio.sleep(1.0)  # back-off before the next read, not a wait for a condition

    async def _follow_once(self, consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> None:
        batches = await consumer.getmany(timeout_ms=200, max_records=5000)
        if batches:
            for records in batches.values():
                for record in records:
                    self._apply(record.key, record.value)
            async with self._changed:
                self._changed.notify_all()
        if not self.caught_up.is_set():
            positions = {tp: await consumer.position(tp) for tp in ends}
            if all(positions[tp] >= end for tp, end in ends.items()) or not batches:
                self.caught_up.set()

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        try:
            iid = key.decode()
        except UnicodeDecodeError:
            log.error("status record with a key that is not UTF-8 (%r): skipped", key[:100])
            return
        if value is None:
            self.states.pop(iid, None)
            return
        try:
            self.states[iid] = decode_state(value)
        except DecodeError as exc:
            log.error("unreadable status record for %r: %s", iid[:200], exc)

    async def wait_for(self, instance_id: str, done: Callable[[InstanceState | None], bool],
                       timeout: float | None) -> InstanceState | None:  # noqa: ASYNC109 - Dapr's client API
        """Wait until `done(state)` holds for the instance; None timeout waits forever."""
        async def until() -> InstanceState | None:
            async with self._changed:
                await self._changed.wait_for(lambda: done(self.states.get(instance_id)))
                return self.states.get(instance_id)

        return await asyncio.wait_for(until(), timeout)
