"""One owned partition: its instances' state and histories, its timers, and its transactions.

Effectively-once, without trusting faust's `exactly_once` (open bugs in github.com/faust-streaming/
faust: #323, #517, #177, #606): every batch of inputs of a partition is processed inside one Kafka
transaction of a producer whose `transactional_id` belongs to the partition. The transaction holds
the state changelog (`status`), history chunks, audit history, work items, messages to other
instances, and the consumed offsets. Either all of it is visible to `read_committed` readers or none
of it is; a new owner's producer fences the old one (a zombie after SIGSTOP cannot commit), and it
restores state from the committed changelog before it reads a single input.
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import murmur2
from aiokafka.structs import ConsumerRecord

from ..core import commands as cmd
from ..core.codec import encode
from ..core.events import HistoryEvent
from ..core.orchestrator import Orchestrator, TurnOutcome, scheduled_start_command
from ..core.state import InstanceState
from ..core.values import FailureDetails
from ..errors import DecodeError, PoisonedInputError
from .history_store import StoredHistory
from .records import (
    MESSAGES,
    decode_events,
    decode_state,
    encode_dead_letter,
    encode_event,
    encode_state,
    join_events,
    parse_history_chunk_key,
)
from .settings import Settings
from .telemetry import EngineMetrics
from .topics import Topics, record_limit

__all__ = ["PartitionOwner", "partition_for"]

log = logging.getLogger(__name__)

#: Finished instances whose state stays in memory (the most recent ones). Older ones live only in
#: the status topic, so the engine's memory does not grow with the count of finished workflows;
#: the few commands that still concern them (a purge) read their state back from there.
FINISHED_KEPT = 10_000

PRODUCER_RETRY_BACKOFF_MS = 5

#: Room a record needs beside its key and value (batch and record headers), below the size limit.
RECORD_OVERHEAD = 1024

#: Inputs set aside at once; old entries go first (they were dead-lettered long ago).
POISON_KEPT = 10_000


def utcnow() -> datetime:
    return datetime.now(UTC)


@functools.lru_cache(maxsize=65_536)
def partition_for(key: bytes, partitions: int) -> int:
    """The partition the Java client's default partitioner (murmur2) gives a key, as aiokafka's does.

    Cached: aiokafka's murmur2 is pure Python and every input record is checked, while one
    instance's several inputs share a key.
    """
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


#: What an input was: ("record", topic, offset) or ("timer", instance, execution, timer ID).
Source = tuple[str, str, str | int] | tuple[str, str, str, int]


@dataclass(slots=True)
class _Send:
    topic: str
    key: bytes
    value: bytes | None
    partition: int | None
    #: The input whose turn made this record, to set it aside if the record cannot be written.
    source: Source | None


@dataclass(slots=True)
class _Pending:
    """Records buffered for the current transaction."""

    sends: list[_Send] = field(default_factory=list)
    source: Source | None = None
    #: Kinds of the inputs set aside in this transaction (counted once it commits).
    set_aside: list[str] = field(default_factory=list)

    def add(self, topic: str, key: bytes, value: bytes | None, partition: int | None = None) -> None:
        self.sends.append(_Send(topic, key, value, partition, self.source))

    def mark(self) -> int:
        return len(self.sends)

    def rollback(self, mark: int) -> None:
        del self.sends[mark:]

    def dead_letter(self, kind: str, topic: str, key: bytes, value: bytes) -> None:
        self.add(topic, key, value)
        self.set_aside.append(kind)


@dataclass(slots=True)
class _Poison:
    """An input that could not be applied: why, and whether failing its instance was tried."""

    reason: str
    #: For the dead-letter metric: "too_large" (its turn could not be written) or "poisoned".
    kind: str = "poisoned"
    fail_tried: bool = False


class PartitionOwner:
    """State and processing of partition `number` of every input topic (see the module docstring)."""

    def __init__(
        self, number: int, settings: Settings, topics: Topics, orchestrator: Orchestrator, group_id: str,
        partitions: int | None = None, metrics: EngineMetrics | None = None,
    ) -> None:
        self.number = number
        #: Partitions of the input topics, to check that each record was keyed onto this one.
        self.partitions = partitions or settings.partitions
        self.settings = settings
        self.topics = topics
        self.orchestrator = orchestrator
        self.group_id = group_id
        self.states: dict[str, InstanceState] = {}
        self.histories: dict[str, StoredHistory] = {}
        self._finished: OrderedDict[str, None] = OrderedDict()
        self._timers: list[tuple[datetime, str, str, int]] = []
        self.producer: AIOKafkaProducer | None = None
        self.processed = 0
        #: Inputs that broke a turn; kept across rebuilds (see `PoisonedInputError`).
        self.poisoned: OrderedDict[Source, _Poison] = OrderedDict()
        self.metrics = metrics or EngineMetrics()
        #: Timers fired by the last `fire_due_timers`.
        self.fired = 0
        #: Records found unreadable during the last restore (skipped, and logged).
        self.restore_problems = 0
        self._record_limit = record_limit(settings)
        # An audit record holds a turn's events; a turn of several large payloads is split across
        # records so none is over the limit (each event alone is under it, or the turn fails).
        self._audit_bytes = max(self._record_limit // 2, 256 * 1024)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        self.producer = AIOKafkaProducer(
            **self.settings.client_kwargs(),
            transactional_id=f"{self.group_id}-p{self.number}",
            enable_idempotence=True,
            linger_ms=0,
            max_request_size=record_limit(self.settings),
            # Kafka 4 verifies each transactional write with the coordinator; a write that follows
            # the previous commit before its markers landed is refused as retriable and retried
            # after this back-off. aiokafka's 100 ms default was the whole p99 of a one-step workflow.
            retry_backoff_ms=PRODUCER_RETRY_BACKOFF_MS,
        )
        # Starting registers the transactional ID: any earlier owner's open transaction is aborted
        # and its producer fenced, so the restore below reads the last committed state.
        await self.producer.start()
        began = time.monotonic()
        await self._restore()
        self.metrics.restore(self.number, time.monotonic() - began)

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()
            self.producer = None

    async def _restore(self) -> None:
        states = await _read_compacted(self.settings, self.topics.status, self.number)
        self.states = {}
        self._finished = OrderedDict()
        self.restore_problems = 0
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
            self._remember(state)
        chunks: dict[tuple[str, str], dict[int, list[HistoryEvent]]] = {}
        for key, value in (await _read_compacted(self.settings, self.topics.history_store, self.number)).items():
            if value is None:
                continue
            try:
                iid, execution_id, chunk = parse_history_chunk_key(key)
                chunks.setdefault((iid, execution_id), {})[chunk] = decode_events(value)[2]
            except DecodeError as exc:
                self.restore_problems += 1
                log.error("partition %d: skipping unreadable history chunk %r: %s", self.number, key[:200], exc)
        self.histories = {}
        self._timers = []
        for iid, state in self.states.items():
            if state.status.value == "PENDING" and state.scheduled_start is not None:
                heapq.heappush(self._timers, (state.scheduled_start, iid, "", -1))
            if not (state.is_running or state.status.value == "CONTINUED_AS_NEW"):
                continue
            parts = chunks.get((iid, state.execution_id), {})
            ordered = [parts[i] for i in sorted(parts)]
            stored = StoredHistory(iid, state.execution_id, [e for part in ordered for e in part],
                                   [len(part) for part in ordered])
            if len(stored) != state.history_length:
                log.error("history of %s has %d events, state says %d", iid, len(stored), state.history_length)
            self.histories[iid] = stored
            for timer_id, fire_at in state.pending_timers.items():
                heapq.heappush(self._timers, (fire_at, iid, state.execution_id, timer_id))
        log.info("partition %d restored: %d instances, %d running, %d timers", self.number, len(self.states),
                 len(self.histories), len(self._timers))

    # -- processing --------------------------------------------------------------------------

    async def process(self, batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        """Apply a batch of input records and commit everything they caused, with their offsets.

        Raises `PoisonedInputError` when one record broke its turn: the caller rebuilds the
        partition from committed state and reads the batch again, and that record is then set
        aside (`_set_aside`) instead of applied.
        """
        pending = _Pending()
        decoded = [(tp.topic, record, self._decode(record)) for tp, records in batches.items() for record in records]
        for topic, record, message in decoded:
            if isinstance(message, cmd.PurgeWorkflow) and message.instance_id not in self.states:
                source: Source = ("record", topic, record.offset)
                if source in self.poisoned:
                    continue
                try:
                    await self._recall(message.instance_id)
                except DecodeError as exc:
                    raise self._poison(source, f"its instance's stored state is unreadable: {exc}") from exc
        for topic, record, message in decoded:
            source = ("record", topic, record.offset)
            pending.source = source
            poison = self.poisoned.get(source)
            if poison is not None:
                self._set_aside(topic, record, message, poison, pending)
                continue
            mark = pending.mark()
            try:
                self._apply_record(topic, record, message, pending)
            except Exception as exc:
                pending.rollback(mark)
                log.exception("partition %d: applying %s[%d]@%d failed", self.number, topic, record.partition,
                              record.offset)
                raise self._poison(source, f"applying it failed: {type(exc).__name__}: {exc}") from exc
        pending.source = None
        offsets = {tp: records[-1].offset + 1 for tp, records in batches.items() if records}
        await self._commit(pending, offsets)

    def _poison(self, source: Source, reason: str, kind: str = "poisoned") -> PoisonedInputError:
        """Remember `source` as an input to set aside, and the error that makes the caller rebuild."""
        if source not in self.poisoned:
            self.poisoned[source] = _Poison(reason, kind)
            while len(self.poisoned) > POISON_KEPT:
                self.poisoned.popitem(last=False)
        return PoisonedInputError(source, reason)

    def _set_aside(self, topic: str, record: ConsumerRecord[bytes, bytes],
                   message: cmd.InstanceMessage | DecodeError, poison: _Poison, pending: _Pending) -> None:
        """Dead-letter an input that broke a turn, and fail its instance (once) with the reason."""
        reason = f"the engine could not apply this record: {poison.reason}"
        log.error("partition %d: setting aside %s[%d]@%d: %s", self.number, topic, record.partition, record.offset,
                  poison.reason)
        pending.dead_letter(poison.kind, self.topics.dead_letter, record.key or b"",
                    encode_dead_letter(reason, topic, record.partition, record.offset, record.key, record.value,
                                       self.settings.dead_letter_value_bytes))
        if isinstance(message, cmd.InstanceMessage):
            start = message if isinstance(message, cmd.StartWorkflow) else None
            self._fail_instance(message.instance_id, poison, reason, pending, start)

    def _fail_instance(self, iid: str, poison: _Poison, reason: str, pending: _Pending,
                       start: cmd.StartWorkflow | None = None) -> None:
        state = self.states.get(iid)
        running = state is not None and state.is_running
        if poison.fail_tried or not (running or start is not None):
            return
        # Failing the instance is itself a turn that could break; it is tried once, and after that
        # the input is only dead-lettered.
        poison.fail_tried = True
        failure = FailureDetails(error_type="EngineError", message=reason, non_retriable=True)
        self._stage(iid, self.orchestrator.fail(state, failure, utcnow(), start), pending)

    async def _recall(self, iid: str) -> None:
        """Bring back the state of a finished instance that was let go from memory (for a purge)."""
        records = await _read_compacted(self.settings, self.topics.status, self.number, only=iid.encode())
        value = records.get(iid.encode())
        if value is not None:
            self._remember(decode_state(value))

    def _remember(self, state: InstanceState) -> None:
        """Keep a state in memory; finished ones only while they are among the most recent few."""
        iid = state.instance_id
        self.states[iid] = state
        # A finished parent whose children still run stays: their late results must find it, and
        # until they do it refuses a restart (as daprd does).
        if state.is_terminal and not state.unfinished_children:
            self._finished[iid] = None
            self._finished.move_to_end(iid)
            while len(self._finished) > FINISHED_KEPT:
                old, _ = self._finished.popitem(last=False)
                self.states.pop(old, None)
        else:
            self._finished.pop(iid, None)

    def _forget(self, iid: str) -> None:
        self.states.pop(iid, None)
        self._finished.pop(iid, None)

    async def fire_due_timers(self, now: datetime) -> int:
        self.fired = 0
        if not self._timers or self._timers[0][0] > now:
            return 0
        pending = _Pending()
        fired = 0
        while self._timers and self._timers[0][0] <= now and fired < 1000:
            fire_at, iid, execution_id, timer_id = heapq.heappop(self._timers)
            source: Source = ("timer", iid, execution_id, timer_id)
            pending.source = source
            poison = self.poisoned.get(source)
            if poison is not None:
                log.error("partition %d: setting aside timer %d of %r: %s", self.number, timer_id, iid[:200],
                          poison.reason)
                self._fail_instance(iid, poison, f"the engine could not fire timer #{timer_id}: {poison.reason}",
                                    pending)
                continue
            message: cmd.InstanceMessage
            if timer_id == -1:  # a start scheduled for later (see `_stage`)
                state = self.states.get(iid)
                if state is None or state.status.value != "PENDING":
                    continue
                message = scheduled_start_command(state)
            else:
                message = cmd.TimerFiring(instance_id=iid, execution_id=execution_id, timer_id=timer_id,
                                          fire_at=fire_at)
            mark = pending.mark()
            try:
                self._apply(message, pending)
            except Exception as exc:
                pending.rollback(mark)
                log.exception("partition %d: firing timer %d of %r failed", self.number, timer_id, iid[:200])
                raise self._poison(source, f"firing it failed: {type(exc).__name__}: {exc}") from exc
            fired += 1
        pending.source = None
        await self._commit(pending, {})
        self.fired = fired
        return fired

    @property
    def timer_count(self) -> int:
        return len(self._timers)

    def next_timer(self) -> datetime | None:
        return self._timers[0][0] if self._timers else None

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
                      message: cmd.InstanceMessage | DecodeError, pending: _Pending) -> None:
        if isinstance(message, DecodeError):
            log.warning("dead-lettering %s[%d]@%d: %s", topic, record.partition, record.offset, message)
            pending.dead_letter("invalid_record", self.topics.dead_letter, record.key or b"",
                        encode_dead_letter(str(message), topic, record.partition, record.offset, record.key,
                                           record.value, self.settings.dead_letter_value_bytes))
            return
        key = message.instance_id.encode()
        home = partition_for(key, self.partitions)
        if record.key is None or home != self.number:
            # Produced without a key, or by a client whose partitioner is not the Java default
            # (librdkafka's is CRC32): the instance's state lives on `home`, so the record goes
            # there, keyed, within this transaction; applying it here would split the instance.
            log.warning("%s[%d]@%d for %r belongs on partition %d; forwarding it there", topic, record.partition,
                        record.offset, message.instance_id[:200], home)
            pending.add(topic, key, record.value, home)
            pending.set_aside.append("wrong_partition")
            return
        outcome = self._apply(message, pending)
        refused = outcome.rejected or (self.states.get(message.instance_id) is None and not outcome.changed
                                       and isinstance(message, cmd.Command))
        if refused and outcome.ignored is not None:
            # A command that could not apply (unknown instance, refused start or purge) is kept with
            # its reason, so whoever produced it can find out; results and firings are dropped.
            pending.dead_letter("rejected", self.topics.dead_letter, record.key or b"",
                        encode_dead_letter(outcome.ignored, topic, record.partition, record.offset, record.key,
                                           record.value, self.settings.dead_letter_value_bytes))

    def _apply(self, message: cmd.InstanceMessage, pending: _Pending) -> TurnOutcome:
        iid = message.instance_id
        outcome = self.orchestrator.handle(self.states.get(iid), message, utcnow(), lambda: self._events(iid))
        self.processed += 1
        if outcome.ignored is not None:
            log.debug("%s for %s changed nothing: %s", type(message).__name__, iid, outcome.ignored)
        self._stage(iid, outcome, pending)
        return outcome

    def _stage(self, iid: str, outcome: TurnOutcome, pending: _Pending) -> None:
        key = iid.encode()
        topics = self.topics
        for execution_id, closed in outcome.closed:
            self._audit(pending, key, iid, execution_id, [encode_event(e) for e in closed])
            self._drop_history(iid, pending)
        if outcome.purged:
            self._forget(iid)
            self._drop_history(iid, pending)
            pending.add(topics.status, key, None, self.number)
        state = outcome.state
        if state is not None and outcome.state_changed and not outcome.events:
            self._remember(state)
            pending.add(topics.status, key, encode_state(state), self.number)
        for start in outcome.scheduled_starts:
            assert start.scheduled_start is not None
            heapq.heappush(self._timers, (start.scheduled_start, iid, "", -1))
        if state is not None and outcome.events:
            stored = self.histories.get(iid)
            if outcome.history_reset or stored is None or stored.execution_id != state.execution_id:
                self._drop_history(iid, pending)
                stored = self.histories[iid] = StoredHistory(iid, state.execution_id)
            # Each event is encoded once, for the audit record and for the history-store chunks.
            fresh = stored.append(outcome.events)
            self._audit(pending, key, iid, state.execution_id, fresh)
            if state.is_running:
                for chunk_key, chunk in stored.dirty_chunks():
                    pending.add(topics.history_store, chunk_key, chunk, self.number)
            else:
                # A finished instance is never replayed: its chunks go, the audit history stays.
                self._drop_history(iid, pending)
            self._remember(state)
            pending.add(topics.status, key, encode_state(state), self.number)
        for item in outcome.work_items:
            pending.add(topics.tasks, key, _encode(item), None)
        for timer in outcome.timers:
            f = timer.firing
            heapq.heappush(self._timers, (f.fire_at, f.instance_id, f.execution_id, f.timer_id))
        for message in outcome.messages:
            pending.add(topics.commands, message.instance_id.encode(), _encode(message), None)

    def _audit(self, pending: _Pending, key: bytes, iid: str, execution_id: str, encoded: list[bytes]) -> None:
        """A turn's events on the audit topic: one record, or several when their payloads are large."""
        start, size = 0, 0
        for index, event in enumerate(encoded):
            if index > start and size + len(event) > self._audit_bytes:
                pending.add(self.topics.history, key, join_events(iid, execution_id, encoded[start:index]),
                            self.number)
                start, size = index, 0
            size += len(event) + 1
        pending.add(self.topics.history, key, join_events(iid, execution_id, encoded[start:]), self.number)

    def _events(self, iid: str) -> list[HistoryEvent]:
        stored = self.histories.get(iid)
        return stored.events if stored is not None else []

    def _drop_history(self, iid: str, pending: _Pending) -> None:
        """Forget a history that will not be replayed again, and tombstone its chunks."""
        stored = self.histories.pop(iid, None)
        if stored is not None:
            for chunk_key in stored.chunk_keys():
                pending.add(self.topics.history_store, chunk_key, None, self.number)

    async def _commit(self, pending: _Pending, offsets: dict[TopicPartition, int]) -> None:
        if not pending.sends and not offsets:
            return
        for send in pending.sends:
            size = len(send.key) + len(send.value or b"") + RECORD_OVERHEAD
            if size > self._record_limit and send.source is not None:
                # Kafka would refuse the record and the transaction with it, on every retry: the
                # input that made it is set aside instead (its instance fails with this reason).
                raise self._poison(send.source, f"its turn would write a record of {size} bytes to {send.topic}, "
                                   f"over the limit of {self._record_limit} bytes", kind="too_large")
        producer = self.producer
        assert producer is not None
        futures: list[asyncio.Future[Any]] = []
        began = time.monotonic()
        try:
            async with producer.transaction():
                for send in pending.sends:
                    futures.append(await producer.send(send.topic, value=send.value, key=send.key,
                                                       partition=send.partition))
                if offsets:
                    await producer.send_offsets_to_transaction(offsets, self.group_id)
        except BaseException:
            # The transaction's failure is what the caller handles; the sends' own errors are the
            # same failure seen per record, and left unread they flood the log when fenced.
            for future in futures:
                future.add_done_callback(_consume_exception)
            self.metrics.transaction(self.number, time.monotonic() - began, committed=False)
            raise
        self.metrics.transaction(self.number, time.monotonic() - began)
        for kind in pending.set_aside:
            self.metrics.dead_letter(kind)
        for future in futures:
            future.result()  # surfaced already by the commit; kept so errors are not silently dropped


def _consume_exception(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _encode(value: Any) -> bytes:
    return encode(value)


async def _read_compacted(settings: Settings, topic: str, partition: int, only: bytes | None = None
                          ) -> dict[bytes, bytes | None]:
    """The latest committed value of every key (or of key `only`) in one partition of a compacted topic."""
    consumer = AIOKafkaConsumer(
        **settings.client_kwargs(), enable_auto_commit=False, isolation_level="read_committed",
        auto_offset_reset="earliest", group_id=None, max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        latest: dict[bytes, bytes | None] = {}
        idle = 0
        # Transaction markers take offsets but carry no records: stop at the end offset, or when
        # polls stop moving the position (the rest is markers).
        while idle < 3:
            position = await consumer.position(tp)
            if position >= end:
                break
            batch = await consumer.getmany(tp, timeout_ms=500, max_records=10_000)
            for record in batch.get(tp, []):
                if record.key is not None and (only is None or record.key == only):
                    latest[record.key] = record.value
            idle = idle + 1 if await consumer.position(tp) == position else 0
        return latest
    finally:
        await consumer.stop()

