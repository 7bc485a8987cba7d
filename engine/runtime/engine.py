"""The orchestrator process: owns partitions through a consumer group and processes their inputs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import KafkaError, ProducerFenced
from aiokafka.structs import ConsumerRecord

from ..build import native
from ..core.cache import ExecutionCache
from ..core.orchestrator import Orchestrator
from ..core.remote import RemoteNames
from ..errors import GenerationFenced, PoisonedInputError, ReadStalledError
from ..sdk.registry import Registry
from ..settings import FETCH_MAX_WAIT_MS, Settings, TransactionScope
from ..topics import Topics, ensure_topics, partition_count
from .group_offsets import GroupOffsets
from .membership import generation, kept_across, member, rejoin
from .partition import Commit, PartitionOwner
from .poll_transactions import PollTransactions
from .telemetry import EngineMetrics, GaugeRefresh, Problem, partition_offsets

__all__ = ["Engine"]

log = logging.getLogger(__name__)

#: Seconds between attempts to take over a partition whose restore failed (doubling up to the cap).
CLAIM_RETRY_FIRST, CLAIM_RETRY_MAX = 0.5, 30.0
#: How long the assignment listener waits for a transaction left open on a partition before it
#: leaves the partition to a background claim (`_claim`).
CLAIM_SETTLE_S = 2.0
#: A partition whose turns fail this many times in a row is paused between attempts (doubling).
FAILURES_BEFORE_BACKOFF, BACKOFF_FIRST, BACKOFF_MAX = 3, 0.2, 10.0


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.engine._hold({tp.partition for tp in revoked})

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self.engine._claim({tp.partition for tp in assigned})


class Engine:
    """Runs workflows for `registry`: one consumer group member owning a share of the partitions."""

    def __init__(self, registry: Registry, settings: Settings | None = None) -> None:
        self.settings = settings or Settings.from_env()
        self.registry = registry
        self.topics = Topics.for_settings(self.settings)
        self.group_id = self.settings.topic("engine")
        self.orchestrator = Orchestrator(registry.get_workflow, ExecutionCache(self.settings.cache_size),
                                         unknown_code_timeout=timedelta(seconds=self.settings.unknown_code_timeout),
                                         versions=registry, app_id=self.settings.app_id,
                                         remote=RemoteNames(self.settings.remote_workflow_names,
                                                            {*registry.workflows, *registry.versions}))
        self.owners: dict[int, PartitionOwner] = {}
        self._consumer: AIOKafkaConsumer | None = None
        #: The group's committed offsets, following each commit (`runtime.group_offsets`).
        self._group_offsets: GroupOffsets | None = None
        self._stopping = asyncio.Event()
        #: Held while a batch or a timer firing is processed, and while partitions are released:
        #: the rebalance listener runs beside the main loop, and stopping a producer in the middle
        #: of its transaction leaves the commit waiting forever (aiokafka cancels its sender).
        self._turn = asyncio.Lock()
        self.ready = asyncio.Event()
        #: Partitions of the input topics (read from the cluster at start).
        self.partitions = self.settings.partitions
        #: Assigned partitions that could not be restored yet, with the last error.
        self._claim_errors: dict[int, str] = {}
        self._claim_retries: dict[int, asyncio.Task[None]] = {}
        #: Prometheus metrics (served by `headrace engine --metrics-port`, see telemetry.py).
        self.metrics = EngineMetrics(workflow_names=registry.workflows)  # labels: registered names only
        #: Partitions whose turns keep failing: since when (monotonic), the latest error, how many in a row.
        self._failing: dict[int, tuple[float, str, int]] = {}
        self._gauges = GaugeRefresh()
        #: How long input may wait on a partition without its position moving before it is reported.
        self.stall_seconds = self.settings.stall_seconds
        #: Owners of revoked partitions, with the group generation they were owned in, until the
        #: assignment that follows says whether they stay (`_hold`, `_claim`).
        self._held: dict[int, tuple[PartitionOwner, int]] = {}
        #: Partitions handed back by a rebalance and kept without a restore (a test's evidence).
        self.kept = 0
        #: One transaction per poll (`HEADRACE_TRANSACTIONS=poll`), or None: one per partition.
        self._transactions = (PollTransactions(self.settings, self.group_id, lambda: member(self._consumer))
                              if self.settings.transactions is TransactionScope.POLL else None)

    async def run(self) -> None:
        await ensure_topics(self.settings)
        self.partitions = await partition_count(self.settings, self.topics.commands) or self.settings.partitions
        consumer = AIOKafkaConsumer(
            *self.topics.inputs,
            **self.settings.client_kwargs(),
            group_id=self.group_id,
            group_instance_id=self.settings.group_instance_id,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            # Range assignment gives one member the same partition number of every input topic:
            # an instance's commands and results then reach the one owner of its state.
            partition_assignment_strategy=(RangePartitionAssignor,),
            max_partition_fetch_bytes=4 * 1024 * 1024,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            # The process's transactional ID names the member, so that a partition's next owner
            # can tell a departed writer from a live one (`runtime.departed`).
            **({"client_id": writer} if (writer := self._writer()) else {}),
        )
        self._consumer = consumer
        self._group_offsets = GroupOffsets(consumer, urgent_topic=self.topics.commands, metadata=writer)
        if self._transactions is not None:
            self._transactions.offsets_committed = self._group_offsets.committed_in_transaction
        consumer.subscribe(list(self.topics.inputs), listener=_Rebalance(self))
        if self._transactions is not None:
            await self._transactions.start()
        try:
            await consumer.start()
        except BaseException:
            if self._transactions is not None:
                await self._transactions.stop()
            raise
        log.info("engine started (group %s, %s build, a transaction per %s)", self.group_id,
                 "native" if native() else "pure-Python", self.settings.transactions.value)
        try:
            while not self._stopping.is_set():
                await self._poll_once(consumer)
        finally:
            for retry in self._claim_retries.values():
                retry.cancel()
            await self._group_offsets.flush()
            await self._group_offsets.close()
            await consumer.stop()
            await self._release(set(self.owners))
            await self._drop_held()
            if self._transactions is not None:
                await self._transactions.stop()
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
        # Partitions are processed concurrently, their turns one after another (a turn is
        # synchronous) and their commits together: in one transaction when their batches are
        # small (`runtime.poll_transactions`), or each its partition's own, side by side. A commit
        # is several broker round trips, and awaited partition after partition they added up to
        # most of a step's latency at moderate load.
        if by_partition:
            async with self._turn:
                await self._together([(number, self._process(number, batch, consumer))
                                      for number, batch in by_partition.items()])
        now = datetime.now(UTC)
        async with self._turn:
            await self._together([(owner.number, self._fire(owner, now, consumer))
                                  for owner in list(self.owners.values()) if owner.next_timer() is not None])
        self._observe(consumer)

    async def _together(self, work: list[tuple[int, Coroutine[Any, Any, None]]]) -> None:
        """Owners' work side by side: their commits overlap, or make one transaction (`poll`)."""
        if self._transactions is not None:
            await self._transactions.run_round(work)
        else:
            await asyncio.gather(*(coroutine for _, coroutine in work))

    async def _process(self, number: int, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
                       consumer: AIOKafkaConsumer) -> None:
        owner = self.owners.get(number)
        if owner is None:
            # Not (or no longer) ours: put the position back so nothing fetched is skipped.
            log.debug("partition %d fetched while unowned; rewinding", number)
            for tp, records in batch.items():
                if tp in consumer.assignment():
                    consumer.seek(tp, records[0].offset)
            return
        if await self._guarded(owner, owner.process(batch), consumer):
            # After a transaction a poll's partitions shared, which committed them itself (they
            # fence it), `group_offsets` sends them only where an earlier commit could land after.
            if self._group_offsets is not None:
                self._group_offsets.advance({tp: owner.positions[tp.topic] for tp in batch})
            self.metrics.turns(number, sum(len(records) for records in batch.values()))
            self.metrics.progress(number)

    async def _fire(self, owner: PartitionOwner, now: datetime, consumer: AIOKafkaConsumer) -> None:
        if await self._guarded(owner, owner.fire_due_timers(now), consumer) and owner.fired:
            self.metrics.turns(owner.number, owner.fired)  # a timer that fires is a turn too
            self.metrics.progress(owner.number)

    def _observe(self, consumer: AIOKafkaConsumer) -> None:
        """Input lag and timers of every owned partition, for metrics and stall detection."""
        if not self._gauges.due():
            return
        for number, owner in self.owners.items():
            waiting = 0
            for topic in self.topics.inputs:
                offsets = partition_offsets(consumer, TopicPartition(topic, number))
                if offsets is not None:
                    waiting += max(0, offsets[1] - offsets[0])
            self.metrics.input_lag(number, waiting)
            if waiting == 0:
                self.metrics.progress(number)  # idle is not stuck
            self.metrics.timers_pending(number, owner.timer_count)
            self.metrics.waiting_for_code(number, len(owner.waiting_for_code))

    async def _guarded(self, owner: PartitionOwner, work: object, consumer: AIOKafkaConsumer) -> bool:
        """Run one batch or timer firing of `owner`; recover from any failure. True if it succeeded."""
        try:
            await work  # type: ignore[misc]
        except Exception as exc:
            since, _, count = self._failing.get(owner.number, (time.monotonic(), "", 0))
            if isinstance(exc, PoisonedInputError):
                count = 0  # the next attempt sets the input aside: that is progress
            self._failing[owner.number] = (since, type(exc).__name__, count + 1)
            if self._transactions is not None:
                self._transactions.leave(owner.number)  # the others' batches do not wait for its restore
            await self._recover(owner, consumer, exc)
            if count + 1 >= FAILURES_BEFORE_BACKOFF:
                self._back_off(owner.number, consumer, count + 1)
            return False
        self._failing.pop(owner.number, None)
        return True

    def _back_off(self, number: int, consumer: AIOKafkaConsumer, failures: int) -> None:
        """Pause a partition whose turns keep failing, so it does not rebuild itself in a tight loop."""
        delay = min(BACKOFF_FIRST * 2 ** (failures - FAILURES_BEFORE_BACKOFF), BACKOFF_MAX)
        tps = [tp for tp in (TopicPartition(t, number) for t in self.topics.inputs) if tp in consumer.assignment()]
        consumer.pause(*tps)
        log.warning("partition %d: %d failures in a row; pausing it for %.1f s", number, failures, delay)

        def resume() -> None:
            if self._consumer is not None and self._consumer is consumer and number in self.owners:
                consumer.resume(*[tp for tp in tps if tp in consumer.assignment()])

        asyncio.get_running_loop().call_later(delay, resume)

    async def _recover(self, owner: PartitionOwner, consumer: AIOKafkaConsumer, error: Exception) -> None:
        if isinstance(error, (ProducerFenced, GenerationFenced)):
            # Another process owns this partition now (we were paused or cut off past the session
            # timeout): write nothing more for it. The rebalance that follows hands it back to us
            # if it is ours after all, with positions reset to the committed offsets.
            log.warning("partition %d: fenced by a newer owner; releasing it", owner.number)
            self.owners.pop(owner.number, None)
            self.metrics.released(owner.number)
            self.orchestrator.cache.clear()
            consumer.pause(*[TopicPartition(t, owner.number) for t in self.topics.inputs])
            await owner.stop()
            if isinstance(error, GenerationFenced):
                # The group moved on, or this engine's process ID was fenced while it may still be
                # a member (`runtime.poll_transactions`): rejoin now rather than at the next
                # heartbeat's error, or never, so the partition is not left paused.
                rejoin(consumer)
            return
        # Every other failure rebuilds the partition from the committed topics and re-reads its
        # inputs. A poisoned input is then set aside (PartitionOwner.process); an aborted
        # transaction is simply retried; anything unforeseen never ends the process, and if it
        # keeps failing the partition shows as stalled in `problems()`.
        if isinstance(error, (PoisonedInputError, ReadStalledError, KafkaError)):
            log.warning("partition %d: %s; restoring from committed state", owner.number, error)
        else:
            log.error("partition %d: processing failed; restoring from committed state", owner.number,
                      exc_info=error)
        await self._reset(owner, consumer)

    async def _reset(self, owner: PartitionOwner, consumer: AIOKafkaConsumer) -> None:
        self.orchestrator.cache.clear()
        await owner.stop()
        try:
            await owner.start()
        except Exception as exc:
            log.exception("partition %d: restore failed; retrying in the background", owner.number)
            self.owners.pop(owner.number, None)
            tps = [TopicPartition(t, owner.number) for t in self.topics.inputs]
            consumer.pause(*[tp for tp in tps if tp in consumer.assignment()])
            await owner.stop()
            self._retry_claim(owner.number, exc)
            return
        await self._seek_owned(owner, consumer)

    async def _seek_owned(self, owner: PartitionOwner, consumer: AIOKafkaConsumer) -> None:
        """Read `owner`'s inputs on from where its committed state ends.

        That is the state's own positions (`POSITIONS_HEADER`), or the group's committed offset
        where it is higher: written by an engine of an earlier version in a mixed fleet, which
        commits offsets in its transactions. The group's never runs ahead of a state
        (`runtime.group_offsets`), so the higher of the two is the truth. A partition nobody has
        consumed starts at the beginning.
        """
        behind: dict[TopicPartition, int] = {}
        for topic in self.topics.inputs:
            tp = TopicPartition(topic, owner.number)
            if tp not in consumer.assignment():
                continue
            committed = await consumer.committed(tp)
            stored = owner.positions.get(topic)
            if stored is not None and (committed is None or stored > committed):
                behind[tp] = stored
            position = max((p for p in (stored, committed) if p is not None), default=None)
            if position is None:
                await consumer.seek_to_beginning(tp)
                continue
            consumer.seek(tp, position)
            owner.positions[topic] = position
        if behind and self._group_offsets is not None:
            self._group_offsets.advance(behind)  # the group catches up (a commit lost to a rebalance)

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
        await self._keep_held(numbers, generation(consumer))
        # Owners no longer assigned (one a background claim made just before the rebalance) go.
        await self._release(set(self.owners) - numbers)
        new = sorted(numbers - set(self.owners))
        owners = [self._new_owner(n) for n in new]
        # aiokafka sends no heartbeat while this listener runs: a partition whose last owner left a
        # transaction open (a crash: until `runtime.departed` fences the writer, or the broker
        # aborts it) is waited for in the background instead of here, past the session timeout.
        results = await asyncio.gather(*(owner.start(settle_timeout_s=CLAIM_SETTLE_S) for owner in owners),
                                       return_exceptions=True)
        ready: set[int] = set(numbers) - set(new)
        for owner, result in zip(owners, results, strict=True):
            if isinstance(result, BaseException):
                # The listener must not fail: aiokafka would go on with the partitions assigned
                # and paused, processing nothing and saying nothing. Retry it until it works.
                if isinstance(result, ReadStalledError):
                    log.warning("partition %d: %s; restoring in the background", owner.number, result)
                else:
                    log.error("partition %d: restore failed (%r); retrying in the background", owner.number, result)
                with contextlib.suppress(Exception):
                    await owner.stop()
                self._retry_claim(owner.number, result)
                continue
            self.owners[owner.number] = owner
            self._claim_errors.pop(owner.number, None)
            ready.add(owner.number)
        if consumer is not None:
            owned = [self.owners[number] for number in sorted(ready) if number in self.owners]
            await asyncio.gather(*(self._seek_owned(owner, consumer) for owner in owned))
            consumer.resume(*[tp for tp in tps if tp in consumer.assignment() and tp.partition in ready])

    def _writer(self) -> str:
        """The process's transactional ID, if it commits per poll; else ''."""
        return self._transactions.transactional_id if self._transactions is not None else ""

    def _new_owner(self, number: int) -> PartitionOwner:
        commit: Commit | None = None
        if self._transactions is not None:
            commit = self._transactions.commit_for(lambda: owner)
        owner = PartitionOwner(number, self.settings, self.topics, self.orchestrator, self.group_id,
                               partitions=self.partitions, metrics=self.metrics, commit=commit,
                               writer=self._writer())
        return owner

    def _retry_claim(self, number: int, error: BaseException) -> None:
        self._claim_errors[number] = f"restore failed ({type(error).__name__})"
        if number not in self._claim_retries:
            self._claim_retries[number] = asyncio.create_task(self._claim_later(number, generation(self._consumer)))

    async def _claim_later(self, number: int, assigned_in: int) -> None:
        """Take partition `number` over in the background, assigned in generation `assigned_in`: a
        rebalance cancels this (`_hold`), and an owner is installed only in that generation."""
        delay = CLAIM_RETRY_FIRST
        try:
            while True:
                await asyncio.sleep(delay)  # back-off between attempts, not a wait for a condition
                consumer = self._consumer
                if consumer is None or number not in {tp.partition for tp in consumer.assignment()}:
                    self._claim_errors.pop(number, None)
                    return
                owner = self._new_owner(number)
                try:
                    await owner.start()
                except BaseException as exc:
                    with contextlib.suppress(Exception):
                        await owner.stop()
                    if not isinstance(exc, Exception):
                        raise  # cancelled by a rebalance
                    self._claim_errors[number] = f"restore failed ({type(exc).__name__})"
                    log.error("partition %d: restore failed again (%r)", number, exc)
                    delay = min(delay * 2, CLAIM_RETRY_MAX)
                    continue
                async with self._turn:
                    if number not in {tp.partition for tp in consumer.assignment()} or number in self.owners \
                            or generation(consumer) != assigned_in:
                        await owner.stop()
                        return
                    self.owners[number] = owner
                    self._claim_errors.pop(number, None)
                    await self._seek_owned(owner, consumer)
                    consumer.resume(*[TopicPartition(topic, number) for topic in self.topics.inputs])
                log.info("partition %d: restored after earlier failures", number)
                return
        finally:
            self._claim_retries.pop(number, None)

    def problems(self) -> list[Problem]:
        """Owned or assigned partitions that are not making progress (empty when healthy).

        Reasons name the kind of error only: the health route is for anyone who can reach the
        port, and Kafka's error texts carry broker addresses (the logs have the whole error).
        """
        found = [Problem(n, reason) for n, reason in sorted(self._claim_errors.items())]
        now = time.monotonic()
        for number, (since, error, _) in sorted(self._failing.items()):
            if number in self.owners and now - since >= self.stall_seconds:
                found.append(Problem(number, f"no progress for {now - since:.0f} s: every turn fails ({error})"))
        # Instances waiting for workflow code are not a problem of this process: anyone may start a
        # workflow under a name no engine knows, and no request may make an engine unready. They are
        # counted in `headrace_engine_instances_waiting_for_code` and shown on the instance itself.
        reported = {p.partition for p in found}
        found.extend(p for p in self.metrics.stalled(self.stall_seconds) if p.partition not in reported)
        return sorted(found, key=lambda p: p.partition if p.partition is not None else -1)

    async def _hold(self, numbers: set[int]) -> None:
        """Set revoked partitions' owners aside, producers open, until the assignment that follows.

        aiokafka's rebalances are eager (`runtime.membership`): each revokes every partition, and
        restoring them all would cost every engine a full restore whenever one joins or leaves;
        `_keep_held` gives back the ones that stay instead.
        """
        held_in = generation(self._consumer)
        for retry in self._claim_retries.values():
            retry.cancel()  # a claim of the ending generation: the next assignment decides anew
        async with self._turn:  # never in the middle of a transaction (see `_turn`)
            if self._group_offsets is not None:
                await self._group_offsets.flush()  # an earlier engine that takes over reads on from them
            for number in numbers:
                self._failing.pop(number, None)
                owner = self.owners.pop(number, None)
                if owner is not None:
                    self._held[number] = (owner, held_in)

    async def _keep_held(self, numbers: set[int], now: int) -> None:
        """Take back held owners of `numbers` whose state is still the committed one; stop the rest.

        An owner's memory is exactly its last commit (state and input offsets go in one
        transaction), and the consumer restarts from the committed offsets. It is still current
        when nobody else owned the partition since (`membership.kept_across`); else it restores.
        """
        async with self._turn:
            held, self._held = self._held, {}
            dropped = False
            for number, (owner, held_in) in held.items():
                if number in numbers and kept_across(held_in, now):
                    self.owners[number] = owner
                    self.kept += 1
                    log.info("partition %d: kept across the rebalance (generation %d), not restored", number, now)
                    continue
                dropped = True
                self.metrics.released(number)
                await owner.stop()
            if dropped:
                # Live generators of instances now owned elsewhere must not be reused if they come back.
                self.orchestrator.cache.clear()

    async def _drop_held(self) -> None:
        async with self._turn:
            held, self._held = self._held, {}
            for number, (owner, _) in held.items():
                self.metrics.released(number)
                await owner.stop()

    async def _release(self, numbers: set[int]) -> None:
        async with self._turn:  # never in the middle of a transaction (see `_turn`)
            for number in numbers:
                self._failing.pop(number, None)
                self.metrics.released(number)
                owner = self.owners.pop(number, None)
                if owner is not None:
                    await owner.stop()
            if numbers:
                # Live generators of instances now owned elsewhere must not be reused if they come back.
                self.orchestrator.cache.clear()

