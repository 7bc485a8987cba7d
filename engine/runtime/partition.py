"""One owned partition: its instances' state and histories, its timers, and its transactions.

Effectively-once, without trusting faust's `exactly_once` (open bugs, see shared/reference/
stack-notes.md section 1): every batch of inputs of a partition is processed inside one Kafka
transaction of a producer whose `transactional_id` belongs to the partition. The transaction holds
the state changelog (`status`), history chunks, audit history, work items, messages to other
instances, and the consumed offsets. Either all of it is visible to `read_committed` readers or none
of it is; a new owner's producer fences the old one (a zombie after SIGSTOP cannot commit), and it
restores state from the committed changelog before it reads a single input.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from ..core import commands as cmd
from ..core.codec import encode
from ..core.events import HistoryEvent
from ..core.orchestrator import Orchestrator, TurnOutcome, scheduled_start_command
from ..core.state import InstanceState
from ..errors import DecodeError
from .history_store import StoredHistory
from .records import (
    MESSAGES,
    decode_events,
    decode_state,
    encode_dead_letter,
    encode_events,
    encode_state,
    join_events,
    parse_history_chunk_key,
)
from .settings import Settings
from .topics import Topics, record_limit

__all__ = ["PartitionOwner"]

log = logging.getLogger(__name__)

#: Finished instances whose state stays in memory (the most recent ones). Older ones live only in
#: the status topic, so the engine's memory does not grow with the count of finished workflows;
#: the few commands that still concern them (a purge) read their state back from there.
FINISHED_KEPT = 10_000

PRODUCER_RETRY_BACKOFF_MS = 5


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class _Pending:
    """Records buffered for the current transaction."""

    sends: list[tuple[str, bytes, bytes | None, int | None]] = field(default_factory=list)

    def add(self, topic: str, key: bytes, value: bytes | None, partition: int | None = None) -> None:
        self.sends.append((topic, key, value, partition))


class PartitionOwner:
    """State and processing of partition `number` of every input topic (see the module docstring)."""

    def __init__(
        self, number: int, settings: Settings, topics: Topics, orchestrator: Orchestrator, group_id: str
    ) -> None:
        self.number = number
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
        await self._restore()

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()
            self.producer = None

    async def _restore(self) -> None:
        states = await _read_compacted(self.settings, self.topics.status, self.number)
        self.states = {}
        self._finished = OrderedDict()
        decoded = [decode_state(value) for value in states.values() if value is not None]
        epoch = datetime.min.replace(tzinfo=UTC)
        for state in sorted(decoded, key=lambda st: st.last_updated_at or epoch):
            self._remember(state)
        chunks: dict[tuple[str, str], dict[int, list[HistoryEvent]]] = {}
        for key, value in (await _read_compacted(self.settings, self.topics.history_store, self.number)).items():
            if value is None:
                continue
            iid, execution_id, chunk = parse_history_chunk_key(key)
            chunks.setdefault((iid, execution_id), {})[chunk] = decode_events(value)[2]
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
        """Apply a batch of input records and commit everything they caused, with their offsets."""
        pending = _Pending()
        decoded = [(tp.topic, record, self._decode(record)) for tp, records in batches.items() for record in records]
        for _, _, message in decoded:
            if isinstance(message, cmd.PurgeWorkflow) and message.instance_id not in self.states:
                await self._recall(message.instance_id)
        for topic, record, message in decoded:
            self._apply_record(topic, record, message, pending)
        offsets = {tp: records[-1].offset + 1 for tp, records in batches.items() if records}
        await self._commit(pending, offsets)

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
        if state.is_terminal:
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
        if not self._timers or self._timers[0][0] > now:
            return 0
        pending = _Pending()
        fired = 0
        while self._timers and self._timers[0][0] <= now and fired < 1000:
            fire_at, iid, execution_id, timer_id = heapq.heappop(self._timers)
            message: cmd.InstanceMessage
            if timer_id == -1:  # a start scheduled for later (see `_stage`)
                state = self.states.get(iid)
                if state is None or state.status.value != "PENDING":
                    continue
                message = scheduled_start_command(state)
            else:
                message = cmd.TimerFiring(instance_id=iid, execution_id=execution_id, timer_id=timer_id,
                                          fire_at=fire_at)
            self._apply(message, pending)
            fired += 1
        await self._commit(pending, {})
        return fired

    def next_timer(self) -> datetime | None:
        return self._timers[0][0] if self._timers else None

    def _decode(self, record: ConsumerRecord[bytes, bytes]) -> cmd.InstanceMessage | DecodeError:
        try:
            if record.value is None:
                raise DecodeError("empty record")
            if len(record.value) > self.settings.max_payload_bytes + 8192:  # room for the envelope
                raise DecodeError(f"record of {len(record.value)} bytes is over the payload limit")
            message: cmd.InstanceMessage = MESSAGES.decode(record.value)
            if record.key is not None and record.key != message.instance_id.encode():
                raise DecodeError(f"record key {record.key!r} does not match instance_id {message.instance_id!r}")
            return message
        except DecodeError as exc:
            return exc

    def _apply_record(self, topic: str, record: ConsumerRecord[bytes, bytes],
                      message: cmd.InstanceMessage | DecodeError, pending: _Pending) -> None:
        if isinstance(message, DecodeError):
            log.warning("dead-lettering %s[%d]@%d: %s", topic, record.partition, record.offset, message)
            pending.add(self.topics.dead_letter, record.key or b"",
                        encode_dead_letter(str(message), topic, record.partition, record.offset, record.key,
                                           record.value))
            return
        outcome = self._apply(message, pending)
        refused = outcome.rejected or (self.states.get(message.instance_id) is None and not outcome.changed
                                       and isinstance(message, cmd.Command))
        if refused and outcome.ignored is not None:
            # A command that could not apply (unknown instance, refused start or purge) is kept with
            # its reason, so whoever produced it can find out; results and firings are dropped.
            pending.add(self.topics.dead_letter, record.key or b"",
                        encode_dead_letter(outcome.ignored, topic, record.partition, record.offset, record.key,
                                           record.value))

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
            pending.add(topics.history, key, encode_events(iid, execution_id, closed), self.number)
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
            pending.add(topics.history, key, join_events(iid, state.execution_id, fresh), self.number)
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
        producer = self.producer
        assert producer is not None
        futures: list[asyncio.Future[Any]] = []
        try:
            async with producer.transaction():
                for topic, key, value, partition in pending.sends:
                    futures.append(await producer.send(topic, value=value, key=key, partition=partition))
                if offsets:
                    await producer.send_offsets_to_transaction(offsets, self.group_id)
        except BaseException:
            # The transaction's failure is what the caller handles; the sends' own errors are the
            # same failure seen per record, and left unread they flood the log when fenced.
            for future in futures:
                future.add_done_callback(_consume_exception)
            raise
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

