"""One owned partition: its instances' state and histories, its timers, and its transactions.

Effectively-once, without trusting faust's `exactly_once` (open bugs in github.com/faust-streaming/
faust: #323, #517, #177, #606): every batch of inputs of a partition is processed inside one Kafka
transaction of a producer whose `transactional_id` belongs to the partition. The transaction holds
the state changelog (`status`), history chunks, audit history, work items, messages to other
instances, and the input positions its state includes (`POSITIONS_HEADER`, in `history-store`, not
the group's offsets: two round trips fewer per transaction). Either all of it is visible to
`read_committed` readers or none of it is; a new owner's producer fences the old one (a zombie after
SIGSTOP cannot commit), and it restores state and positions from the committed records before it
reads a single input.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiokafka.producer.sender as aiokafka_sender
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.structs import ConsumerRecord

from ..core import commands as cmd
from ..core.effects import apply_outcome, due_message
from ..core.events import HistoryEvent
from ..core.orchestrator import Orchestrator, StateWrite
from ..core.retention import RetentionPolicy, awaiting_purge, is_retention
from ..core.state import InstanceState
from ..core.timers import DurableTimer, Timer
from ..core.values import FailureDetails, RuntimeStatus
from ..errors import DecodeError, PayloadTooLargeError, PoisonedInputError
from ..read.to_end import latest_by_key, latest_values, reading, wait_until_settled
from ..settings import AuditMode, Settings
from ..topics import Topics, java_partitioner, partition_for, producer_options, record_limit
from ..wire.records import (
    MESSAGES,
    POSITIONS_HEADER,
    POSITIONS_KEY,
    SNAPSHOT_SUFFIX,
    SNAPSHOTS_MARKER,
    STORE_HEADER,
    decode_chunk,
    decode_positions,
    decode_state,
    encode_positions,
    encode_state,
    parse_history_chunk_key,
    state_snapshot_key,
)
from .apps import AppTopics
from .departed import fence_departed
from .history_store import StoredHistory
from .sink import RecordInput, Send, Source, Together, TransactionSink
from .telemetry import EngineMetrics, TurnObserver

__all__ = ["PartitionOwner", "PreparedCommit", "send_all"]

log = logging.getLogger(__name__)

#: Finished instances whose state stays in memory (the most recent ones). Older ones live only in
#: the status topic, so the engine's memory does not grow with the count of finished workflows;
#: the few commands that still concern them (a purge, a late raise or terminate) read their state
#: back from there (`_recall`).
FINISHED_KEPT = 10_000

PRODUCER_RETRY_BACKOFF_MS = 5
#: How long the broker lets a transaction of the engine's process-wide producer stay open before it
#: aborts it (`runtime.poll_transactions`): what a crashed or paused engine's partitions wait for
#: before a new owner reads them. Kafka Streams' exactly-once processing uses the same 10 s
#: (https://kafka.apache.org/documentation/streams/developer-guide/config-streams.html#default-values).
TRANSACTION_TIMEOUT_MS = 10_000
#: A new owner waits at most this long for a transaction still open on its partition (then its
#: start fails, and is tried again): the timeout above with room for a slow broker.
SETTLE_TIMEOUT_S = 3 * TRANSACTION_TIMEOUT_MS / 1000
#: A transaction still open this long on a new owner's partition may be a departed engine's: its
#: writer is looked up, and fenced if it has left the group (`runtime.departed`). A live owner's
#: transactions take milliseconds; this only spares the lookup in a handover.
FENCE_DEPARTED_AFTER_S = 0.5

#: Seconds a transaction's first AddPartitionsToTxn waits to be sent again when the coordinator
#: still completes the previous transaction of the same producer (`CONCURRENT_TRANSACTIONS`).
CONCURRENT_TRANSACTIONS_BACKOFF_S = 0.002


def retry_concurrent_transactions_sooner() -> None:
    """Ask again after `CONCURRENT_TRANSACTIONS_BACKOFF_S` instead of aiokafka's fixed 20 ms.

    A commit returns once the coordinator has logged it as prepared; its markers are written and
    the transaction closed a few milliseconds later, and until then the producer's next
    transaction is answered `CONCURRENT_TRANSACTIONS` (KAFKA-5477, where the Java client chose
    20 ms, as aiokafka's `BACKOFF_OVERRIDE` does). A partition owner under load begins its next
    transaction as soon as the last commit returns, so it met those 20 ms on most commits.
    Measured with aiokafka against the local broker (warm, one producer, 300 transactions of three
    records back to back): p50/p90 3.9/23.8 ms with 20 ms, 2.8/8.9 with 5, 2.3/4.8 with 2,
    2.3/4.5 with 1; `headrace bench constant-30` on a warm broker, two runs each, alternated:
    156-158 -> 163-164 wf/s, p50 185-188 -> 179 ms. aiokafka reads the module constant when it
    answers, so this applies to every transactional producer of the process (a shorter wait only
    means a cheaper request sooner).
    """
    aiokafka_sender.BACKOFF_OVERRIDE = CONCURRENT_TRANSACTIONS_BACKOFF_S


#: Room a record needs beside its key and value (batch and record headers), below the size limit.
RECORD_OVERHEAD = 1024

#: Header of the audit-history record (no value) that says an instance was purged, and by what.
PURGED_HEADER = "headrace-purged"

#: Inputs set aside at once; old entries go first (they were dead-lettered long ago).
POISON_KEPT = 10_000

#: How far back (offsets of `status`) the state of a finished instance no longer in memory is
#: looked for when a command other than a purge reaches it (`PartitionOwner._recall`);
#: older ones are answered as unknown (dead-lettered), a purge always reads back far enough.
RECALL_LOOK_BACK = 50_000


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class _StoreRecord:
    offset: int
    value: bytes | None
    headers: Any


@dataclass(slots=True)
class _Store:
    """What a restore read of `history-store`: each key's latest record, and the offsets of the
    last record an engine that keeps snapshots wrote and of the last one any other wrote (-1: none)."""

    records: dict[bytes, _StoreRecord]
    kept_at: int = -1
    other_at: int = -1
    #: The highest input positions the records carry (`POSITIONS_HEADER`).
    positions: dict[str, int] = field(default_factory=dict)

    def saw_positions(self, raw: bytes, where: int) -> None:
        try:
            found = decode_positions(raw)
        except DecodeError as exc:
            log.error("history-store offset %d: ignoring unreadable input positions: %s", where, exc)
            return
        for topic, offset in found.items():
            if offset > self.positions.get(topic, -1):
                self.positions[topic] = offset


#: An input record of a batch, decoded (or why it could not be).
_Decoded = tuple[str, ConsumerRecord[bytes, bytes], "cmd.InstanceMessage | DecodeError"]


@dataclass(frozen=True, slots=True)
class _Result:
    """A task's result in a batch (an activity's or a child workflow's), with its record
    (`PartitionOwner._result_runs`)."""

    topic: str
    record: ConsumerRecord[bytes, bytes]
    message: cmd.TaskResult

    @property
    def source(self) -> RecordInput:
        return RecordInput(self.topic, self.record.offset)


@dataclass(slots=True)
class _Poison:
    """An input that could not be applied: why, and whether failing its instance was tried."""

    reason: str
    #: For the dead-letter metric: "too_large" (its turn could not be written) or "poisoned".
    kind: str = "poisoned"
    fail_tried: bool = False


#: What sends a batch's transaction: the owner's `_commit` unless given another (`PartitionOwner`).
Commit = Callable[[TransactionSink, dict[TopicPartition, int]], Awaitable[None]]


class PartitionOwner:
    """State and processing of partition `number` of every input topic (see the module docstring).

    `commit` replaces the sending of each batch's transaction: a test or harness that runs turns
    without Kafka collects the records instead. It is a parameter rather than a patch because the
    native build compiles this class, whose methods cannot be replaced."""

    def __init__(
        self, number: int, settings: Settings, topics: Topics, orchestrator: Orchestrator, group_id: str,
        partitions: int | None = None, metrics: EngineMetrics | None = None, commit: Commit | None = None,
        writer: str = "",
    ) -> None:
        self.number = number
        #: The engine process's transactional ID, which is also its consumer's client ID, when it
        #: commits per poll; else '' (`runtime.departed`).
        self.writer = writer
        self._commit_with = commit
        #: Partitions of the input topics, to check that each record was keyed onto this one.
        self.partitions = partitions or settings.partitions
        self.settings = settings
        self.topics = topics
        self.orchestrator = orchestrator
        self.group_id = group_id
        #: Topics of the other apps this partition's workflows call (`runtime.apps`).
        self.apps = AppTopics(settings)
        self.states: dict[str, InstanceState] = {}
        self.histories: dict[str, StoredHistory] = {}
        self._finished: OrderedDict[str, None] = OrderedDict()
        #: Instances that wait for workflow code this engine lacks (`engine.core.unknown_code`).
        self.waiting_for_code: set[str] = set()
        self._timers: list[Timer] = []
        #: Dapr 1.17's state retention policy (`engine.core.retention`) and its due purges, as
        #: (due, instance ID): computed from the states, so a restore finds them again (durable).
        self.retention = RetentionPolicy.parse(settings.retention_any_terminal, settings.retention_completed,
                                               settings.retention_failed, settings.retention_terminated)
        self._expiries: list[tuple[datetime, str]] = []
        #: Finished states let go from memory (`FINISHED_KEPT`) whose purge is still due, without
        #: their payloads: what the purge needs (ID, execution, children) and no more.
        self._expiring: dict[str, InstanceState] = {}
        #: Instances purged by the retention policy (this owner's lifetime; a test's evidence).
        self.expired = 0
        self.producer: AIOKafkaProducer | None = None
        #: Input topic -> the offset after the last input the committed state includes: read back
        #: by a restore (`POSITIONS_HEADER`), advanced by each commit. The engine reads on from here.
        self.positions: dict[str, int] = {}
        self.processed = 0
        #: Inputs that broke a turn; kept across rebuilds (see `PoisonedInputError`).
        self.poisoned: OrderedDict[Source, _Poison] = OrderedDict()
        #: Fail turns of inputs set aside in the batch being applied, with their inputs (see
        #: `_fail_turns_kept_if_committed`).
        self._fail_turns: list[tuple[_Poison, Source]] = []
        #: Results whose turn together failed: applied one at a time from then on, so the one that
        #: breaks a turn alone is found and set aside (`_apply_results`).
        self.one_by_one: OrderedDict[Source, None] = OrderedDict()
        self.metrics = metrics or EngineMetrics()
        #: Metrics, traces and the log context of each turn (telemetry.TurnObserver).
        self.observer = TurnObserver(self.metrics, number)
        #: Timers fired by the last `fire_due_timers`.
        self.fired = 0
        #: Records found unreadable during the last restore (skipped, and logged).
        self.restore_problems = 0
        #: Instance states the last restore read: running work only, once snapshots are kept.
        self.read_at_restore = 0
        #: Largest record the topics take: a turn that would write a larger one is set aside.
        self.record_limit = record_limit(settings)
        # An audit record holds a turn's events; a turn of several large payloads is split across
        # records so none is over the limit (each event alone is under it, or the turn fails).
        self.audit_bytes = max(self.record_limit // 2, 256 * 1024)
        #: The audit topic gets each turn's events (HEADRACE_AUDIT=turn), or an execution's at its end.
        self.audit_turns = settings.audit is AuditMode.TURN
        #: Largest history-store value a turn writes with its key (a chunk with the state it carries).
        self.store_bytes = self.record_limit - RECORD_OVERHEAD
        #: Instances whose state snapshot is a record of its own in `history-store` (not tombstoned):
        #: the ones whose snapshot must be tombstoned when they no longer need one (`TransactionSink`).
        self.snapshot_keys: set[str] = set()

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, *, settle_timeout_s: float = SETTLE_TIMEOUT_S) -> None:
        """Fence earlier owners, wait (at most `settle_timeout_s`, else `ReadStalledError`) for a
        transaction left open on the partition, and restore its running instances."""
        retry_concurrent_transactions_sooner()
        self.producer = AIOKafkaProducer(**producer_options(
            self.settings,
            transactional_id=f"{self.group_id}-p{self.number}",
            # Kafka 4 verifies each transactional write with the coordinator; a write that follows
            # the previous commit before its markers landed is refused as retriable and retried
            # after this back-off. aiokafka's 100 ms default was the whole p99 of a one-step workflow.
            retry_backoff_ms=PRODUCER_RETRY_BACKOFF_MS,
        ))
        # Starting registers the transactional ID: any earlier owner's open transaction is aborted
        # and its producer fenced, so the restore below reads the last committed state.
        await self.producer.start()
        # An earlier owner that committed one transaction for all its partitions is fenced by the
        # group instead (`runtime.poll_transactions`): a transaction of it still open here ends
        # (committed, aborted, or timed out) before the restore reads the partition. One a
        # departed engine left open is aborted now rather than at its timeout (`runtime.departed`).
        await wait_until_settled(
            self.settings, [TopicPartition(self.topics.history_store, self.number),
                            TopicPartition(self.topics.status, self.number)],
            settle_timeout_s, stalled=self._fence_departed if self.writer else None,
            stalled_after_s=FENCE_DEPARTED_AFTER_S)
        began = time.monotonic()
        await self._restore()
        self.metrics.restore(self.number, time.monotonic() - began)

    async def _fence_departed(self, left_s: float) -> None:
        """A transaction is still open on the partition: fence its writer if it left the group."""
        inputs = [TopicPartition(topic, self.number) for topic in self.topics.inputs]
        try:
            async with asyncio.timeout(left_s):
                await fence_departed(self.settings, self.group_id, self.writer, inputs)
        except Exception as exc:  # not allowed to look, too slow...: the transaction's timeout ends it
            log.warning("partition %d: looking for a departed writer failed (%r)", self.number, exc)

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()
            self.producer = None

    async def _restore(self) -> None:
        observer = self.observer
        observer.restoring()
        # The records' headers hold each run's trace context (only read when tracing is on).
        status_headers: dict[bytes, Any] | None = {} if observer.tracer is not None else None
        # `history-store` holds what running instances need (issue 16: a restore proportional to
        # running work): their history chunks and their states, in the open chunk (issue 17) or in
        # a snapshot of their own (`TransactionSink.put_state`). Finished instances have neither.
        # `status` (every instance, the read side) is read once, when the partition was written
        # before snapshots were kept, and the snapshots are seeded from it.
        store = await self._read_store(status_headers is not None)
        # A record after the last one written by an engine that keeps snapshots was written by one
        # that keeps none (a mixed fleet during an upgrade): the snapshots may be stale, so they
        # are rebuilt from `status`.
        seeding = store.kept_at < 0 or store.other_at > store.kept_at
        self.restore_problems = 0
        chunks: dict[tuple[str, str], dict[int, list[HistoryEvent]]] = {}
        # Instance key -> the latest record that carries its state: (offset, state, headers). A
        # state is in the open chunk, or in a snapshot when it is not running or did not fit
        # beside its chunk; whichever was written last is the state (records written before
        # issue 17 carry it in snapshots only, and are read the same way).
        found: dict[bytes, tuple[int, bytes | dict[str, Any], Any]] = {}
        snapshot_keys: set[str] = set()
        live_snapshots: set[bytes] = set()
        raw: bytes | dict[str, Any]
        self.positions = store.positions
        for key, entry in store.records.items():
            if entry.value is None or key == SNAPSHOTS_MARKER:
                continue
            if key.endswith(SNAPSHOT_SUFFIX):
                owner_key, raw = key[:-len(SNAPSHOT_SUFFIX)], entry.value
                live_snapshots.add(key)
                with contextlib.suppress(UnicodeDecodeError):  # not an ID: its state is reported below
                    snapshot_keys.add(owner_key.decode())
            else:
                try:
                    iid, execution_id, number = parse_history_chunk_key(key)
                    chunk = decode_chunk(entry.value)
                except DecodeError as exc:
                    self.restore_problems += 1
                    log.error("partition %d: skipping unreadable history chunk %r: %s", self.number, key[:200], exc)
                    continue
                chunks.setdefault((iid, execution_id), {})[number] = chunk.events
                if chunk.state is None:
                    continue
                owner_key, raw = iid.encode(), chunk.state
            held = found.get(owner_key)
            if held is None or held[0] < entry.offset:
                found[owner_key] = (entry.offset, raw, entry.headers)
        states: dict[bytes, bytes | dict[str, Any] | None]
        if seeding:
            states = dict(await latest_by_key(self.settings, self.topics.status, self.number, headers=status_headers))
        else:
            states = {key: raw for key, (_, raw, _) in found.items()}
            if status_headers is not None:
                status_headers.update((key, headers) for key, (_, _, headers) in found.items())
        # Tombstones of finished instances' snapshots are skipped without decoding; compaction
        # removes them (`max.compaction.lag.ms`, `delete.retention.ms`: docs/data-retention.md).
        self.read_at_restore = sum(1 for value in states.values() if value is not None)
        self.states = {}
        self._finished = OrderedDict()
        self._expiries = []
        self._expiring = {}
        self.waiting_for_code = set()
        decoded: list[InstanceState] = []
        for key, value in states.items():
            if value is None:
                continue
            try:
                decoded.append(decode_state(value))
            except DecodeError as exc:
                # One unreadable record must not keep the partition from being owned at all.
                self.restore_problems += 1
                log.error("partition %d: skipping unreadable status record %r: %s", self.number, key[:200], exc)
        epoch = datetime.min.replace(tzinfo=UTC)
        for state in sorted(decoded, key=lambda st: st.last_updated_at or epoch):
            self.remember(state)
            if status_headers:
                observer.restored(state, status_headers.get(state.instance_id.encode()))
        self.histories = {}
        self._timers = []
        for iid, state in self.states.items():
            for timer in state.timers():
                heapq.heappush(self._timers, timer)
            if not (state.is_running or state.status is RuntimeStatus.CONTINUED_AS_NEW):
                continue
            parts = chunks.get((iid, state.execution_id), {})
            ordered = [parts[i] for i in sorted(parts)]
            stored = StoredHistory(iid, state.execution_id, [e for part in ordered for e in part],
                                   [len(part) for part in ordered])
            if len(stored) != state.history_length:
                log.error("history of %s has %d events, state says %d", iid, len(stored), state.history_length)
            self.histories[iid] = stored
        self.snapshot_keys = snapshot_keys
        if seeding:
            await self._seed_snapshots(live_snapshots)
        log.info("partition %d restored: %d instances read, %d running, %d timers", self.number,
                 self.read_at_restore, len(self.histories), len(self._timers))

    def snapshot(self, state: InstanceState, encoded: bytes) -> bytes | None:
        """The restore snapshot of `state` (`encoded`), or None (a tombstone) when a restore does not
        need it: finished, with no child left to report and no retention purge due. One due for a
        purge is kept without its payloads, what the purge needs."""
        if not state.is_terminal or state.unfinished_children:
            return encoded
        if self.retention.enabled and self.retention.due(state) is not None:
            return encode_state(awaiting_purge(state))
        return None

    async def _read_store(self, headers: bool) -> _Store:
        """The latest record of each `history-store` key of this partition, and where the last
        record of an engine that keeps snapshots is (`_restore`)."""
        store = _Store({})
        async with reading(self.settings, self.topics.history_store, [self.number]) as batches:
            async for records in batches:
                for record in records:
                    if record.key is None:
                        continue
                    if record.key == POSITIONS_KEY:
                        if record.value is not None:
                            store.saw_positions(record.value, record.offset)
                    else:
                        store.records[record.key] = _StoreRecord(record.offset, record.value,
                                                                 record.headers if headers else None)
                    for name, value in record.headers:
                        if name == POSITIONS_HEADER:
                            store.saw_positions(value, record.offset)
                    # Before issue 17 every transaction that kept snapshots ended with the marker;
                    # since, every record carries `STORE_HEADER` (`_commit` says why).
                    if STORE_HEADER in record.headers or (record.key == SNAPSHOTS_MARKER
                                                          and record.value is not None):
                        store.kept_at = record.offset
                    else:
                        store.other_at = record.offset
        return store

    async def _seed_snapshots(self, stale: set[bytes]) -> None:
        """Restore from `status` of a partition whose snapshots are missing or may be stale: write
        them, tombstone the `stale` ones no state needs, and end with the marker, in one
        transaction (a crash before its commit seeds again). The snapshots are written as records
        of their own, as before issue 17, which every engine version that keeps snapshots reads."""
        producer = self.producer
        assert producer is not None
        headers = [STORE_HEADER]
        if self.positions:  # carried on, so compaction of the records these replace loses none
            headers.append((POSITIONS_HEADER, encode_positions(self.positions)))
        self.snapshot_keys = set()
        async with producer.transaction():
            for iid, state in [*self.states.items(), *self._expiring.items()]:
                snapshot = self.snapshot(state, encode_state(state))
                if snapshot is not None:
                    key = state_snapshot_key(iid)
                    stale.discard(key)
                    self.snapshot_keys.add(iid)
                    await producer.send(self.topics.history_store, snapshot, key=key, partition=self.number,
                                        headers=headers)
            for key in stale:
                await producer.send(self.topics.history_store, None, key=key, partition=self.number,
                                    headers=headers)
            await producer.send(self.topics.history_store, b"1", key=SNAPSHOTS_MARKER, partition=self.number,
                                headers=headers)

    # -- processing --------------------------------------------------------------------------

    async def process(self, batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        """Apply a batch of input records and commit everything they caused, with their offsets.

        Raises `PoisonedInputError` when one record broke its turn: the caller rebuilds the
        partition from committed state and reads the batch again, and that record is then set
        aside (`_set_aside`) instead of applied.
        """
        with self._fail_turns_kept_if_committed():
            await self._process(batches)

    async def _process(self, batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        pending = TransactionSink(self)
        decoded = [(tp.topic, record, self._decode(record)) for tp, records in batches.items() for record in records]
        # Finished instances let go from memory that commands reach are read back first, in one
        # read per batch: as far back as needed for a purge, `RECALL_LOOK_BACK` for the others.
        purges: dict[str, Source] = {}
        late: dict[str, Source] = {}
        for topic, record, message in decoded:
            if not isinstance(message, cmd.Command) or isinstance(message, cmd.StartWorkflow) \
                    or message.instance_id in self.states:
                continue
            source: Source = RecordInput(topic, record.offset)
            if source not in self.poisoned:
                wanted = purges if isinstance(message, cmd.PurgeWorkflow) else late
                wanted.setdefault(message.instance_id, source)
        await self._recall(purges, limit=None)
        await self._recall(late, limit=RECALL_LOOK_BACK)
        together, later = self._result_runs(decoded)
        for index, (topic, record, message) in enumerate(decoded):
            run = together.get(index)
            if run is not None:
                self._apply_results(run, pending)
            elif index not in later:
                self._apply_input(topic, record, message, pending)
        pending.source = None
        offsets = {tp: records[-1].offset + 1 for tp, records in batches.items() if records}
        await self._transact(pending, offsets)

    def _apply_input(self, topic: str, record: ConsumerRecord[bytes, bytes],
                     message: cmd.InstanceMessage | DecodeError, pending: TransactionSink) -> None:
        """One input in a turn of its own (or set aside, if it broke one before)."""
        source = RecordInput(topic, record.offset)
        pending.source = source
        # Asked only when something is set aside: hashing a `RecordInput` runs the dataclass's
        # interpreted `__hash__`, for a map that is nearly always empty.
        poison = self.poisoned.get(source) if self.poisoned else None
        if poison is not None:
            self._set_aside(topic, record, message, poison, pending)
            return
        mark = pending.mark()
        try:
            self._apply_record(topic, record, message, pending)
        except Exception as exc:
            pending.rollback(mark)
            log.exception("partition %d: applying %s[%d]@%d failed", self.number, topic, record.partition,
                          record.offset)
            raise self._broken(source, exc) from exc

    def _result_runs(self, decoded: list[_Decoded]) -> tuple[dict[int, list[_Result]], set[int]]:
        """Task results of one instance in a batch with no other input of that instance between
        them (a fan-in's, mostly): each run, by the place of its first, to apply in one turn there
        (`_apply_results`), and the places of the others. A result that broke a turn, or was in a
        run that did, and one that is not on its instance's partition, stays alone."""
        runs: dict[int, list[_Result]] = {}
        open_runs: dict[str, int] = {}
        later: set[int] = set()
        for index, (topic, record, message) in enumerate(decoded):
            if isinstance(message, DecodeError):
                continue
            iid = message.instance_id
            source = RecordInput(topic, record.offset)
            if not isinstance(message, (cmd.ActivityResult, cmd.ChildResult)) \
                    or (self.poisoned and source in self.poisoned) \
                    or (self.one_by_one and source in self.one_by_one) or self._misplaced(record, message) is not None:
                open_runs.pop(iid, None)
                continue
            first = open_runs.get(iid)
            if first is None:
                open_runs[iid] = index
                runs[index] = [_Result(topic, record, message)]
            else:
                runs[first].append(_Result(topic, record, message))
                later.add(index)
        return {first: run for first, run in runs.items() if len(run) > 1}, later

    def _apply_results(self, run: list[_Result], pending: TransactionSink) -> None:
        """A run of one instance's results (`_result_runs`) in one turn, if its state takes them so
        (`Orchestrator.together`); whatever it does not take, after it, one at a time as always."""
        iid = run[0].message.instance_id
        taken = self.orchestrator.together(self.states.get(iid), [r.message for r in run])
        if len(taken) > 1:
            chosen = {id(message) for message in taken}
            merged = [r for r in run if id(r.message) in chosen]
            run = [r for r in run if id(r.message) not in chosen]
            mark = pending.mark()
            try:
                self._apply_merged(merged, pending)
            except Exception as exc:
                pending.rollback(mark)
                log.exception("partition %d: applying %d results to %r together failed", self.number, len(merged),
                              iid[:200])
                raise self._one_at_a_time([result.source for result in merged],
                                           f"applying {len(merged)} results together failed: "
                                           f"{type(exc).__name__}: {exc}") from exc
        for result in run:
            self._apply_input(result.topic, result.record, result.message, pending)

    def _one_at_a_time(self, sources: Sequence[RecordInput], reason: str) -> PoisonedInputError:
        """Remember results whose turn together failed, and the error that makes the caller rebuild:
        nothing is set aside yet; the batch is read again with these one at a time, so the one that
        breaks a turn alone is found (`_result_runs`)."""
        for source in sources:
            self.one_by_one[source] = None
        while len(self.one_by_one) > POISON_KEPT:
            self.one_by_one.popitem(last=False)
        return PoisonedInputError(sources[0], f"{reason}; next, one at a time")

    def _apply_merged(self, run: list[_Result], pending: TransactionSink) -> None:
        first = run[0]
        iid = first.message.instance_id
        state, now = self.states.get(iid), utcnow()
        assert state is not None  # `Orchestrator.together` took them
        # A record of the turn too large for Kafka: the run is read again one result at a time,
        # and the turn that makes it then is the one set aside (`_commit`).
        pending.source = Together(tuple(r.source for r in run))
        pending.input = (first.topic, first.record)
        observer = self.observer
        observer.begin(first.message, state, first.record.headers, first.record.timestamp, now)
        for other in run[1:]:
            observer.link(other.record.headers)
        try:
            outcome = self.orchestrator.handle_results(state, [r.message for r in run], now,
                                                       lambda: self._events(iid))
            self.processed += len(run)
            apply_outcome(iid, outcome, pending, first.message)
            observer.end(outcome.state, bool(outcome.events), now)
        finally:
            pending.input = None

    def _misplaced(self, record: ConsumerRecord[bytes, bytes], message: cmd.InstanceMessage) -> int | None:
        """The partition of `message`'s instance when the record must go there to be applied
        (`_apply_record`): it was produced without a key, or to another partition (by a client
        whose partitioner is not the Java default: librdkafka's is CRC32). None: apply it here."""
        home = partition_for(message.instance_id.encode(), self.partitions)
        return home if record.key is None or home != self.number else None

    def _broken(self, source: Source, exc: Exception, doing: str = "applying it") -> PoisonedInputError:
        """`_poison` for an input whose turn raised `exc`, or would write a record Kafka refuses."""
        if isinstance(exc, PayloadTooLargeError):
            return self._poison(source, f"its turn would write {exc}", kind="too_large")
        return self._poison(source, f"{doing} failed: {type(exc).__name__}: {exc}")

    def _poison(self, source: Source, reason: str, kind: str = "poisoned") -> PoisonedInputError:
        """Remember `source` as an input to set aside, and the error that makes the caller rebuild."""
        if source not in self.poisoned:
            self.poisoned[source] = _Poison(reason, kind)
            while len(self.poisoned) > POISON_KEPT:
                self.poisoned.popitem(last=False)
        return PoisonedInputError(source, reason)

    def _set_aside(self, topic: str, record: ConsumerRecord[bytes, bytes],
                   message: cmd.InstanceMessage | DecodeError, poison: _Poison, pending: TransactionSink) -> None:
        """Dead-letter an input that broke a turn, and fail its instance (once) with the reason."""
        reason = f"the engine could not apply this record: {poison.reason}"
        log.error("partition %d: setting aside %s[%d]@%d: %s", self.number, topic, record.partition, record.offset,
                  poison.reason)
        pending.dead_letter(poison.kind, reason, topic, record)
        if isinstance(message, cmd.InstanceMessage):
            start = message if isinstance(message, cmd.StartWorkflow) else None
            self._fail_instance(message.instance_id, poison, reason, pending, start)

    def _fail_instance(self, iid: str, poison: _Poison, reason: str, pending: TransactionSink,
                       start: cmd.StartWorkflow | None = None) -> None:
        state = self.states.get(iid)
        running = state is not None and state.is_running
        if poison.fail_tried or not (running or start is not None):
            return
        # Failing the instance is itself a turn that could break; it is tried once, and after that
        # the input is only dead-lettered.
        poison.fail_tried = True
        failure = FailureDetails(error_type="EngineError", message=reason, non_retriable=True)
        outcome = self.orchestrator.fail(state, failure, utcnow(), start)
        apply_outcome(iid, outcome, pending)
        self.observer.failed_by_engine(state, outcome.state)  # counted, and its span ended, on commit
        if pending.source is not None:
            self._fail_turns.append((poison, pending.source))

    @contextlib.contextmanager
    def _fail_turns_kept_if_committed(self) -> Iterator[None]:
        """A fail turn (`_fail_instance`) counts as tried once it broke, or was committed: when the
        transaction fails for another input's sake, the batch is read again and it is tried again
        (else its instance would only have the input dead-lettered, and wait forever)."""
        self._fail_turns = []
        try:
            yield
        except BaseException as exc:
            blamed = exc.source if isinstance(exc, PoisonedInputError) else None
            for poison, source in self._fail_turns:
                if source != blamed:
                    poison.fail_tried = False
            raise
        finally:
            self._fail_turns = []

    async def _recall(self, wanted: dict[str, Source], limit: int | None) -> None:
        """Bring back the states of finished instances let go from memory (`FINISHED_KEPT`) that
        commands of this batch reach (`wanted`: ID -> the input), so they apply as to any finished
        instance: a purge purges, a late raise or terminate is moot instead of dead-lettered as
        unknown. One backward read of `status` for all of them (`to_end.latest_values`: the
        instances that finished last cost least), at most `limit` offsets back: a command to an ID
        nobody started costs that much and no more."""
        keys = {iid.encode() for iid in wanted if iid not in self.states}
        if not keys:
            return
        values = await latest_values(self.settings, self.topics.status, self.number, keys, limit=limit)
        for key, value in values.items():
            if value is None:
                continue
            iid = key.decode()
            try:
                self.remember(decode_state(value))
            except DecodeError as exc:
                raise self._poison(wanted[iid], f"its instance's stored state is unreadable: {exc}") from exc

    def remember(self, state: InstanceState) -> None:
        """Keep a state in memory; finished ones only while they are among the most recent few."""
        iid = state.instance_id
        self.states[iid] = state
        if state.waiting_for_code is not None:
            self.waiting_for_code.add(iid)
        else:
            self.waiting_for_code.discard(iid)
        self._expiring.pop(iid, None)
        if self.retention.enabled and (expires := self.retention.due(state)) is not None:
            heapq.heappush(self._expiries, (expires, iid))
        # A finished parent whose children still run stays: their late results must find it, and
        # until they do it refuses a restart (as daprd does).
        if state.is_terminal and not state.unfinished_children:
            self._finished[iid] = None
            self._finished.move_to_end(iid)
            while len(self._finished) > FINISHED_KEPT:
                old, _ = self._finished.popitem(last=False)
                gone = self.states.pop(old, None)
                if gone is not None and self.retention.enabled and self.retention.due(gone) is not None:
                    self._expiring[old] = awaiting_purge(gone)
        else:
            self._finished.pop(iid, None)

    def forget(self, iid: str) -> None:
        self.states.pop(iid, None)
        self._expiring.pop(iid, None)
        self._finished.pop(iid, None)
        self.waiting_for_code.discard(iid)

    def add_timer(self, timer: Timer) -> None:
        heapq.heappush(self._timers, timer)

    async def fire_due_timers(self, now: datetime) -> int:
        self.fired = 0
        due = self.next_timer()
        if due is None or due > now:
            return 0
        with self._fail_turns_kept_if_committed():
            return await self._fire_due_timers(now)

    async def _fire_due_timers(self, now: datetime) -> int:
        pending = TransactionSink(self)
        fired = 0
        while self._timers and self._timers[0].due <= now and fired < 1000:
            timer = heapq.heappop(self._timers)
            iid = timer.instance_id
            what = f"timer #{timer.timer_id}" if isinstance(timer, DurableTimer) else "scheduled start"
            pending.source = timer
            poison = self.poisoned.get(timer)
            if poison is not None:
                log.error("partition %d: setting aside %s of %r: %s", self.number, what, iid[:200], poison.reason)
                self._fail_instance(iid, poison, f"the engine could not fire {what}: {poison.reason}", pending)
                continue
            message = due_message(timer, self.states.get(iid))
            if message is None:
                continue
            mark = pending.mark()
            try:
                self._apply(message, pending)
            except Exception as exc:
                pending.rollback(mark)
                log.exception("partition %d: firing %s of %r failed", self.number, what, iid[:200])
                raise self._broken(timer, exc, "firing it") from exc
            fired += 1
        pending.source = None
        fired += self._expire(now, pending, 1000 - fired)
        await self._transact(pending, {})
        self.fired = fired
        return fired

    def _expire(self, now: datetime, pending: TransactionSink, limit: int) -> int:
        """Purge the finished instances whose retention ended (recursively: children go too)."""
        purged = 0
        while self._expiries and self._expiries[0][0] <= now and purged < limit:
            due, iid = heapq.heappop(self._expiries)
            state = self.states.get(iid) or self._expiring.get(iid)
            if state is None or self.retention.due(state) != due:
                continue  # purged, restarted or finished again since: an older entry
            self.states[iid] = state  # `_apply` reads it there; the purge forgets it
            message = cmd.PurgeWorkflow(instance_id=iid, command_id=self.retention.command_id(state))
            mark = pending.mark()
            try:
                self._apply(message, pending)
            except Exception:
                # Left in place (and in memory): the next restore schedules it again.
                pending.rollback(mark)
                log.exception("partition %d: the retention purge of %r failed", self.number, iid[:200])
                continue
            purged += 1
        return purged

    @property
    def timer_count(self) -> int:
        return len(self._timers)

    def next_timer(self) -> datetime | None:
        timer = self._timers[0].due if self._timers else None
        expiry = self._expiries[0][0] if self._expiries else None
        if timer is None or expiry is None:
            return timer or expiry
        return min(timer, expiry)

    def _decode(self, record: ConsumerRecord[bytes, bytes]) -> cmd.InstanceMessage | DecodeError:
        try:
            if record.value is None:
                raise DecodeError("empty record")
            if len(record.value) > self.settings.max_payload_bytes + 8192:  # room for the envelope
                raise DecodeError(f"record of {len(record.value)} bytes is over the payload limit")
            message: cmd.InstanceMessage = cmd.check_message(MESSAGES.decode(record.value))
            if isinstance(message, cmd.TimerFiring):
                # Timers fire inside the owner (never through a topic): a firing from outside would
                # end anyone's durable timer early, with IDs readable from the status topic.
                raise DecodeError("TimerFiring is internal to the engine and is not accepted from a topic")
            if record.key is not None and record.key != message.instance_id.encode():
                raise DecodeError(f"record key {record.key[:200]!r} does not match instance_id "
                                  f"{message.instance_id[:200]!r}")
            return message
        except DecodeError as exc:
            return exc
        except Exception as exc:  # e.g. RecursionError: nothing a record holds may escape decoding
            return DecodeError(f"undecodable record: {type(exc).__name__}: {exc}")

    def _apply_record(self, topic: str, record: ConsumerRecord[bytes, bytes],
                      message: cmd.InstanceMessage | DecodeError, pending: TransactionSink) -> None:
        if isinstance(message, DecodeError):
            log.warning("dead-lettering %s[%d]@%d: %s", topic, record.partition, record.offset, message)
            pending.dead_letter("invalid_record", str(message), topic, record)
            return
        home = self._misplaced(record, message)
        if home is not None:
            # The instance's state lives on `home`, so the record goes there, keyed, within this
            # transaction; applying it here would split the instance.
            log.warning("%s[%d]@%d for %r belongs on partition %d; forwarding it there", topic, record.partition,
                        record.offset, message.instance_id[:200], home)
            pending.add(topic, message.instance_id.encode(), record.value, home, list(record.headers) or None)
            pending.set_aside.append("wrong_partition")
            return
        pending.input = (topic, record)
        try:
            self._apply(message, pending)
        finally:
            pending.input = None

    def _apply(self, message: cmd.InstanceMessage, pending: TransactionSink) -> None:
        iid = message.instance_id
        state, now, record = self.states.get(iid), utcnow(), pending.input
        observer = self.observer
        if record is None:  # a timer fired in-process
            observer.begin(message, state, now=now)
        else:
            observer.begin(message, state, record[1].headers, record[1].timestamp, now)
        outcome = self.orchestrator.handle(state, message, now, lambda: self._events(iid))
        self.processed += 1
        apply_outcome(iid, outcome, pending, message)
        if isinstance(message, cmd.PurgeWorkflow) and is_retention(message.command_id) \
                and outcome.write is StateWrite.PURGE:
            # The audit history shows why the instance is gone: a keyed record with no events.
            pending.add(self.topics.history, iid.encode(), None, self.number, [(PURGED_HEADER, b"retention")])
            self.expired += 1
        observer.end(outcome.state, bool(outcome.events), now)

    def _events(self, iid: str) -> list[HistoryEvent]:
        stored = self.histories.get(iid)
        return stored.events if stored is not None else []

    async def _transact(self, pending: TransactionSink, offsets: dict[TopicPartition, int]) -> None:
        """Send a batch's transaction, or hand it to the `commit` this owner was given. Looked up
        at each call, not bound once, so a test may still patch `_commit` on the pure build."""
        if self._commit_with is None:
            await self._commit(pending, offsets)
        else:
            await self._commit_with(pending, offsets)

    async def commit_alone(self, pending: TransactionSink, offsets: dict[TopicPartition, int]) -> None:
        """A batch in a transaction of this owner's own producer, whatever commit it was given."""
        await self._commit(pending, offsets)

    async def _commit(self, pending: TransactionSink, offsets: dict[TopicPartition, int]) -> None:
        producer = self.producer
        assert producer is not None
        prepared = await self.prepare_commit(pending, offsets, producer)
        if prepared is None:
            return
        futures: list[asyncio.Future[Any]] = []
        began = time.monotonic()
        try:
            async with producer.transaction():
                await send_all(producer, prepared.sends, futures, self.own_topics)
                # Every record delivered before the commit (the commit itself waits for the same
                # deliveries): aiokafka fails a batch the broker refuses for good (a record too
                # large for the topic, a denied write) on its future only, and would then commit
                # the transaction without it, where Kafka's Java producer refuses to commit a
                # transaction with a failed send (`KafkaProducer.commitTransaction`'s contract,
                # https://github.com/apache/kafka/pull/12264). Raised here, it aborts instead.
                await asyncio.gather(*futures)
        except BaseException:
            # The transaction's failure is what the caller handles; the sends' own errors are the
            # same failure seen per record, and left unread they flood the log when fenced.
            for future in futures:
                future.add_done_callback(_consume_exception)
            self.commit_failed(began)
            raise
        self.commit_done(prepared, began)

    @property
    def own_topics(self) -> tuple[str, ...]:
        """The topics whose records of this owner all go to its own partition (`send_all`)."""
        return (self.topics.status, self.topics.history_store, self.topics.history)

    async def prepare_commit(self, pending: TransactionSink, offsets: dict[TopicPartition, int],
                             producer: AIOKafkaProducer) -> PreparedCommit | None:
        """A batch's records as its transaction writes them, with the input positions they carry
        (None: nothing to write). Raises, before anything is sent, for a record over the limit.
        `producer` is the one that will send them (another app's topics are made known to it)."""
        if not pending.sends and not offsets:
            return None
        sends = pending.records()
        # Until issue 17 each transaction ended with a `SNAPSHOTS_MARKER` record, so that a restore
        # could tell records of an engine that keeps no snapshots (an older one in a mixed fleet
        # during an upgrade) by their place after the last marker. Every history-store record now
        # carries `STORE_HEADER` instead, which says the same of the record itself: a transaction
        # writes one record less, and a headerless record after the last headed one (or marker) is
        # the older engine's (`_read_store`). The marker is still written once, when a restore
        # seeds the snapshots, so an engine that predates the header (issue 16) reads the seeded
        # snapshots as current, and seeds again from `status` once this one has written after it.
        if pending.apps:
            # Kafka refuses a transaction that writes to a missing topic: another app's are made
            # first, and the producer is told to keep metadata for them (`AppTopics.track`).
            await self.apps.ensure(pending.apps)
            await self.apps.track(producer, (send.topic for send in sends))
        positions = self.positions
        if offsets:
            positions = {**positions, **{tp.topic: offset for tp, offset in offsets.items()}}
        if positions:
            # The inputs this state includes ride in the same transaction (`POSITIONS_HEADER`):
            # on every `history-store` record it writes, or in a record of their own.
            header = (POSITIONS_HEADER, encode_positions(positions))
            store = self.topics.history_store
            carried = False
            for send in sends:
                if send.topic == store:
                    send.headers = [*send.headers, header] if send.headers else [header]
                    carried = True
            if offsets and not carried:
                sends.append(Send(store, POSITIONS_KEY, header[1], self.number, None, [STORE_HEADER]))
        for send in sends:
            # Measured as the producer measures a record (key, value and headers, the positions
            # header included), before anything is queued: Kafka would refuse it and the
            # transaction with it, on every retry. The input that made it is set aside instead
            # (its instance fails with this reason); a record of no input fails as `send` would.
            size = send.size
            if size > self.record_limit:
                error = PayloadTooLargeError(f"a record to {send.topic}", size, self.record_limit)
                source = pending.blame(send, self.record_limit)
                if source is None:
                    raise MessageSizeTooLargeError(str(error))
                if isinstance(source, Together):
                    raise self._one_at_a_time(source.inputs, f"their turn would write {error}")
                raise self._broken(source, error)
        return PreparedCommit(pending, sends, positions)

    def commit_done(self, prepared: PreparedCommit, began: float) -> None:
        """The transaction with `prepared` in it committed (`began`: when it was sent)."""
        self.metrics.transaction(self.number, time.monotonic() - began)
        self.positions = prepared.positions
        self.observer.committed()  # spans and per-turn metrics of these turns, now that they are in
        for send in prepared.sends:
            # Snapshots this transaction tombstoned (a turn set aside, its records rolled back,
            # tombstoned nothing): the set stays what `history-store` holds.
            if send.value is None and send.topic == self.topics.history_store and send.key.endswith(SNAPSHOT_SUFFIX):
                self.snapshot_keys.discard(send.key[:-len(SNAPSHOT_SUFFIX)].decode(errors="replace"))
        for kind in prepared.pending.set_aside:
            self.metrics.dead_letter(kind)

    def commit_failed(self, began: float) -> None:
        """The transaction with this owner's batch in it was aborted, or its outcome is unknown."""
        self.metrics.transaction(self.number, time.monotonic() - began, committed=False)
        self.observer.discard()


@dataclass(slots=True)
class PreparedCommit:
    """One owner's share of a transaction: its batch, the records to send, the positions they carry."""

    pending: TransactionSink
    sends: list[Send]
    positions: dict[str, int]


async def send_all(producer: AIOKafkaProducer, sends: list[Send], futures: list[asyncio.Future[Any]],
                    batched: tuple[str, ...]) -> None:
    """Hand a transaction's records (each within the record limit: `_commit`) to `producer`, each
    future in `futures`.

    Records go in record batches built here, one per partition (more only past
    `PRODUCE_BATCH_BYTES`), instead of a `send` each: a `send` waits on the topic's metadata, picks
    the partition, finds the batch and gives the record a future of its own, and a chain-5
    workflow writes 23 records (its work items among them). A partition's records keep their
    order (a compacted topic keeps a key's last); the broker receives what the accumulator would
    build, one batch per partition. The owner's own topics (`batched`: status, history-store,
    audit) always go so, each record on the owner's partition; another topic (work items, messages
    to other instances, dead letters) once the producer knows its partitions, a keyed record on
    the partition `send` would give it (`engine.topics.java_partitioner`). Until then its records
    go through `send`, all of them: a topic is written one way in a transaction, so no partition
    gets records both ways and out of order (the commands topic gets keyed messages and forwarded
    records with a partition)."""
    batches: dict[tuple[str, int], Any] = {}
    cluster = producer.client.cluster
    #: Other topics of this transaction: their partitions, or None to go through `send`.
    known: dict[str, list[int] | None] = {}
    for send in sends:
        topic, partition = send.topic, send.partition
        if topic not in batched:
            if topic not in known:
                partitions = cluster.partitions_for_topic(topic)
                known[topic] = sorted(partitions) if partitions else None
            every = known[topic]
            if every is None:
                partition = None  # through `send`, as every record of the topic in this transaction
            elif partition is None:
                partition = java_partitioner(send.key, every, every)
        if partition is None:
            futures.append(await producer.send(topic, value=send.value, key=send.key, partition=send.partition,
                                               headers=send.headers))
            continue
        where = (topic, partition)
        batch = batches.get(where)
        while batch is None or batch.append(timestamp=None, key=send.key, value=send.value,
                                            headers=send.headers or []) is None:
            if batch is not None:  # full: it goes now, and the record begins the next
                futures.append(await producer.send_batch(batch, topic, partition=partition))
            batch = batches[where] = producer.create_batch()
    for (topic, partition), batch in batches.items():
        batch.close()  # nothing else may join it once it is queued
        futures.append(await producer.send_batch(batch, topic, partition=partition))


def _consume_exception(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()

