"""The orchestrator process: owns partitions through a consumer group and processes their inputs."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import KafkaError, ProducerFenced
from aiokafka.structs import ConsumerRecord

from ..core.cache import ExecutionCache
from ..core.orchestrator import Orchestrator
from ..sdk.registry import Registry
from .partition import PartitionOwner
from .settings import FETCH_MAX_WAIT_MS, Settings
from .topics import Topics, ensure_topics

__all__ = ["Engine"]

log = logging.getLogger(__name__)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.engine._release({tp.partition for tp in revoked})

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self.engine._claim({tp.partition for tp in assigned})


class Engine:
    """Runs workflows for `registry`: one consumer group member owning a share of the partitions."""

    def __init__(self, registry: Registry, settings: Settings | None = None) -> None:
        self.settings = settings or Settings.from_env()
        self.registry = registry
        self.topics = Topics.for_settings(self.settings)
        self.group_id = self.settings.topic("engine")
        self.orchestrator = Orchestrator(registry.get_workflow, ExecutionCache(self.settings.cache_size))
        self.owners: dict[int, PartitionOwner] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._stopping = asyncio.Event()
        #: Held while a batch or a timer firing is processed, and while partitions are released:
        #: the rebalance listener runs beside the main loop, and stopping a producer in the middle
        #: of its transaction leaves the commit waiting forever (aiokafka cancels its sender).
        self._turn = asyncio.Lock()
        self.ready = asyncio.Event()

    async def run(self) -> None:
        await ensure_topics(self.settings)
        consumer = AIOKafkaConsumer(
            *self.topics.inputs,
            **self.settings.client_kwargs(),
            group_id=self.group_id,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            # Range assignment gives one member the same partition number of every input topic:
            # an instance's commands and results then reach the one owner of its state.
            partition_assignment_strategy=(RangePartitionAssignor,),
            max_partition_fetch_bytes=4 * 1024 * 1024,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        )
        self._consumer = consumer
        consumer.subscribe(list(self.topics.inputs), listener=_Rebalance(self))
        await consumer.start()
        log.info("engine started (group %s)", self.group_id)
        try:
            while not self._stopping.is_set():
                await self._poll_once(consumer)
        finally:
            await consumer.stop()
            await self._release(set(self.owners))
            self._consumer = None

    def stop(self) -> None:
        self._stopping.set()

    async def _poll_once(self, consumer: AIOKafkaConsumer) -> None:
        timeout_ms = self._poll_timeout_ms()
        batches = await consumer.getmany(timeout_ms=timeout_ms, max_records=2000)
        assigned = {tp.partition for tp in consumer.assignment()}
        if assigned and assigned <= set(self.owners) and not self.ready.is_set():
            self.ready.set()
            log.info("engine ready: owns partitions %s", sorted(assigned))
        by_partition: dict[int, dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]] = defaultdict(dict)
        for tp, records in batches.items():
            by_partition[tp.partition][tp] = records
        for number, batch in by_partition.items():
            async with self._turn:
                owner = self.owners.get(number)
                if owner is None:
                    # Not (or no longer) ours: put the position back so nothing fetched is skipped.
                    log.debug("partition %d fetched while unowned; rewinding", number)
                    for tp, records in batch.items():
                        if tp in consumer.assignment():
                            consumer.seek(tp, records[0].offset)
                    continue
                await self._guarded(owner, owner.process(batch), consumer)
        now = datetime.now(UTC)
        async with self._turn:
            for owner in list(self.owners.values()):
                await self._guarded(owner, owner.fire_due_timers(now), consumer)

    async def _guarded(self, owner: PartitionOwner, work: object, consumer: AIOKafkaConsumer) -> None:
        try:
            await work  # type: ignore[misc]
        except ProducerFenced:
            # Another process owns this partition now (we were paused or cut off past the session
            # timeout): write nothing more for it. The rebalance that follows hands it back to us
            # if it is ours after all, with positions reset to the committed offsets.
            log.warning("partition %d: fenced by a newer owner; releasing it", owner.number)
            self.owners.pop(owner.number, None)
            self.orchestrator.cache.clear()
            consumer.pause(*[TopicPartition(t, owner.number) for t in self.topics.inputs])
            await owner.stop()
        except KafkaError as exc:
            # The transaction was aborted (or we were fenced): in-memory state may be ahead of what
            # was committed. Rebuild this partition from the committed topics and re-read its inputs.
            log.warning("partition %d: %s; restoring from committed state", owner.number, exc)
            await self._reset(owner, consumer)

    async def _reset(self, owner: PartitionOwner, consumer: AIOKafkaConsumer) -> None:
        self.orchestrator.cache.clear()
        await owner.stop()
        await owner.start()
        for topic in self.topics.inputs:
            tp = TopicPartition(topic, owner.number)
            if tp in consumer.assignment():
                committed = await consumer.committed(tp)
                if committed is None:
                    await consumer.seek_to_beginning(tp)
                else:
                    consumer.seek(tp, committed)

    def _poll_timeout_ms(self) -> int:
        due = [t for o in self.owners.values() if (t := o.next_timer()) is not None]
        if not due:
            return 100
        wait = (min(due) - datetime.now(UTC)).total_seconds()
        return max(0, min(100, int(wait * 1000)))

    async def _claim(self, numbers: set[int]) -> None:
        # aiokafka runs this listener beside the fetcher: hold the partitions until their state is
        # restored (anything fetched meanwhile is rewound in `_poll_once`).
        consumer = self._consumer
        tps = [TopicPartition(t, n) for t in self.topics.inputs for n in numbers]
        if consumer is not None:
            consumer.pause(*tps)
        new = sorted(numbers - set(self.owners))
        owners = [PartitionOwner(n, self.settings, self.topics, self.orchestrator, self.group_id) for n in new]
        await asyncio.gather(*(owner.start() for owner in owners))
        for owner in owners:
            self.owners[owner.number] = owner
        if consumer is not None:
            consumer.resume(*[tp for tp in tps if tp in consumer.assignment()])

    async def _release(self, numbers: set[int]) -> None:
        async with self._turn:  # never in the middle of a transaction (see `_turn`)
            for number in numbers:
                owner = self.owners.pop(number, None)
                if owner is not None:
                    await owner.stop()
            if numbers:
                # Live generators of instances now owned elsewhere must not be reused if they come back.
                self.orchestrator.cache.clear()
