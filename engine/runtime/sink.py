"""The Kafka engine's effect sink: a partition owner's turns as the records of one transaction.

`TransactionSink` buffers every record a batch of turns writes (status, history-store chunks, audit
history, work items, messages to other instances, dead letters) for the owner to send in one
transaction with the consumed offsets, and keeps the owner's memory (states, live histories, the
timer heap) in step. What a turn writes is decided by `engine.core.effects.apply_outcome`; this
module only knows where each effect goes.

Several turns of one instance in one batch (parallel results, a burst of events) collapse when the
transaction is sent (`TransactionSink.records`, issue 17): the compacted topics get each key's last
value once, and an instance's audit events of one execution are joined into one record (split as
one turn's are when payloads are large). States and audit records are encoded then, not per turn,
so the turns a collapse drops cost no encoding (`StateSend`). Everything is committed together, so no reader could see
the intermediate records as committed state before the last one anyway, except as a step: the
status keeps every `STATUS_STEP`-th of an instance's states, so a command ID never falls out of
`recent_commands` unseen (a client waits for its command's ID there: `engine.core.preconditions`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.structs import ConsumerRecord

from ..core import commands as cmd
from ..core.apps import AppMessage
from ..core.codec import encode
from ..core.events import HistoryEvent
from ..core.orchestrator import Unapplied
from ..core.remote import WorkflowWorkItem
from ..core.state import RECENT_COMMANDS, InstanceState
from ..core.timers import Timer
from ..errors import PayloadTooLargeError
from ..topics import dead_letter_value_bytes
from ..wire.records import (
    STORE_HEADER,
    encode_dead_letter,
    encode_event,
    encode_state,
    encode_workflow_item,
    join_events,
    state_snapshot_key,
)
from .history_store import StoredHistory

if TYPE_CHECKING:
    from .partition import PartitionOwner

__all__ = ["AuditEvents", "RecordInput", "Send", "Source", "StateSend", "Together", "TransactionSink"]

log = logging.getLogger(__name__)

#: Of an instance's status records in one transaction, every this-many-th (counted from its last)
#: is kept: a state holds the last `RECENT_COMMANDS` command IDs, so every command a client waits
#: for shows in one written state.
STATUS_STEP = RECENT_COMMANDS // 2

#: Every history-store record carries `STORE_HEADER` (a restore's evidence of who wrote it).
_STORE_HEADERS = [STORE_HEADER]

@dataclass(frozen=True, slots=True, init=False)
class RecordInput:
    """An input record of the owner's partition, by topic and offset."""

    topic: str
    offset: int

    # Spelled out, as in the other classes made per turn in compiled modules: mypyc compiles an
    # `__init__` written here, while a dataclass's generated one stays interpreted (and a frozen
    # one sets each field through `object.__setattr__`): docs/performance.md, "The compiled build".
    # With `init=False` a field's default would be dead, so the defaults live in `__init__` only.
    def __init__(self, topic: str, offset: int) -> None:
        object.__setattr__(self, "topic", topic)
        object.__setattr__(self, "offset", offset)


@dataclass(frozen=True, slots=True)
class Together:
    """Inputs applied in one turn (a fan-in's results: `PartitionOwner._apply_results`). Which of
    them made a record too large is found by reading them again one at a time."""

    inputs: tuple[RecordInput, ...]


#: What an input was: a record, or a timer that came due; or what a turn's records were made of.
Source = RecordInput | Timer | Together


@dataclass(slots=True, init=False)
class AuditEvents:
    """The events an audit-history record holds, encoded (`encode_event`): the record's value is
    joined from them when the transaction is sent (`TransactionSink.records`), after an instance's
    records of one execution were joined into one. Grows in place as they are (so a wide fan-out's
    turns cost their own events, not the whole record each)."""

    execution_id: str
    events: list[bytes]
    #: Bytes of the events joined, separators included.
    size: int

    def __init__(self, execution_id: str, events: list[bytes], size: int) -> None:
        self.execution_id = execution_id
        self.events = events
        self.size = size

    def join(self, other: AuditEvents) -> None:
        self.events.extend(other.events)
        self.size += other.size


@dataclass(slots=True, init=False)
class Send:
    topic: str
    key: bytes
    value: bytes | None
    partition: int | None
    #: The input whose turn made this record, to set it aside if the record cannot be written.
    source: Source | None
    #: Kafka record headers: the W3C trace context when tracing is on (engine.tracing).
    headers: list[tuple[str, bytes]] | None
    #: An audit-history record's events (None: any other record); its `value` is None until
    #: `TransactionSink.records` joins them.
    audit: AuditEvents | None
    #: For a `history-store` record, the state it was written with (`TransactionSink.blame`).
    written_with: StateSend | None = field(repr=False)

    def __init__(self, topic: str, key: bytes, value: bytes | None, partition: int | None,
                 source: Source | None, headers: list[tuple[str, bytes]] | None = None,
                 audit: AuditEvents | None = None, written_with: StateSend | None = None) -> None:
        self.topic = topic
        self.key = key
        self.value = value
        self.partition = partition
        self.source = source
        self.headers = headers
        self.audit = audit
        self.written_with = written_with

    @property
    def size(self) -> int:
        """Bytes as the producer measures a record: key, value and headers."""
        size: int = DefaultRecordBatchBuilder.estimate_size_in_bytes(self.key, self.value, self.headers or [])
        return size


@dataclass(slots=True, kw_only=True, eq=False, init=False)
class StateSend(Send):
    """An instance's state after a turn: its `status` record, and for the instance's last state in
    the transaction the `history-store` records that carry it too. Encoded when the transaction is
    sent (`TransactionSink.records`), and only if still needed: of several turns of one instance in
    a transaction (a fan-in's results) only the last state's records survive the collapse, so the
    earlier ones are never encoded; a state holds the instance's pending work, so a fan-out of N
    encoded N states of up to N tasks before."""

    state: InstanceState = field(repr=False)
    #: Its place in the buffer, and the instance's state before it in this transaction (a rollback
    #: to a place before this one makes that one the instance's last again).
    at: int
    previous: StateSend | None = field(repr=False)
    #: Its `history-store` records, once written (`TransactionSink.records` may be called again).
    store: list[Send] | None

    def __init__(self, topic: str, key: bytes, value: bytes | None, partition: int | None,
                 source: Source | None, headers: list[tuple[str, bytes]] | None = None, *,
                 state: InstanceState, at: int, previous: StateSend | None) -> None:
        # Not `super().__init__`: `slots=True` makes a new class, which its zero-argument form
        # does not see before Python 3.14 (https://github.com/python/cpython/issues/90562).
        Send.__init__(self, topic, key, value, partition, source, headers)
        self.state = state
        self.at = at
        self.previous = previous
        self.store = None


@dataclass(frozen=True, slots=True)
class _Dropped:
    """A history `_drop_history` let go at buffer place `at`, with the instance's last state then
    (whose chunks it tombstoned): what a rollback to before it puts back."""

    at: int
    stored: StoredHistory
    latest: StateSend | None


class TransactionSink:
    """Records buffered for one transaction of `owner` (see the module docstring)."""

    __slots__ = ("_dropped", "_states", "apps", "input", "owner", "sends", "set_aside", "source")

    def __init__(self, owner: PartitionOwner) -> None:
        self.owner = owner
        self.sends: list[Send] = []
        #: The input being applied: records written now are its turn's.
        self.source: Source | None = None
        #: The input record being applied, as (topic, record): a refused command is dead-lettered.
        self.input: tuple[str, ConsumerRecord[bytes, bytes]] | None = None
        #: Kinds of the inputs set aside in this transaction (counted once it commits).
        self.set_aside: list[str] = []
        #: Other apps this transaction writes to: their topics must exist before it (`runtime.apps`).
        self.apps: set[str] = set()
        #: Each instance's last state in the buffer whose `history-store` records are still to be
        #: written: gone once its history is dropped (what they would write is tombstoned).
        self._states: dict[str, StateSend] = {}
        self._dropped: list[_Dropped] = []

    # -- the buffer ------------------------------------------------------------------------------

    def add(self, topic: str, key: bytes, value: bytes | None, partition: int | None = None,
            headers: list[tuple[str, bytes]] | None = None) -> None:
        self.sends.append(Send(topic, key, value, partition, self.source, headers))

    def mark(self) -> int:
        return len(self.sends)

    def rollback(self, mark: int) -> None:
        """Forget what was buffered since `mark` (a turn that failed), states included: each
        instance's last state is the one before again, and a history dropped since is put back."""
        del self.sends[mark:]
        while self._dropped and self._dropped[-1].at >= mark:
            dropped = self._dropped.pop()
            self.owner.histories[dropped.stored.instance_id] = dropped.stored
            if dropped.latest is not None:
                self._states[dropped.stored.instance_id] = dropped.latest
        for iid, latest in list(self._states.items()):
            last: StateSend | None = latest
            while last is not None and last.at >= mark:
                last = last.previous
            if last is None:
                del self._states[iid]
            else:
                self._states[iid] = last

    def records(self) -> list[Send]:
        """The records to send: the buffer with an instance's turns collapsed (the module docstring)."""
        owner = self.owner
        status, store, history = owner.topics.status, owner.topics.history_store, owner.topics.history
        buffered: list[Send] = []
        for buffer_item in self.sends:
            buffered.append(buffer_item)
            if isinstance(buffer_item, StateSend) and self._states.get(buffer_item.state.instance_id) is buffer_item:
                buffered.extend(self._store_records(buffer_item))
        kept: list[Send | None] = list(buffered)
        # Backwards, so each key keeps its last value, in its own place (a restore takes the state
        # an instance's records carry from the latest of them: `PartitionOwner._restore`).
        stored: set[bytes] = set()
        statuses: dict[bytes, int] = {}
        for index in range(len(kept) - 1, -1, -1):
            item = buffered[index]
            if item.topic == store:
                if item.key in stored:
                    kept[index] = None
                stored.add(item.key)
            elif item.topic == status:
                count = statuses.get(item.key, 0)
                statuses[item.key] = count + 1
                if count % STATUS_STEP:
                    kept[index] = None
                elif isinstance(item, StateSend) and item.value is None:
                    item.value = encode_state(item.state)
        # Forwards: each audit record joins the instance's previous one of the same execution while
        # they fit in one; any other record of that key between them (a purge's) keeps them apart.
        # A joined record is a new one, at the later place, grown in place as more join it.
        joined: dict[bytes, int] = {}
        merged: set[int] = set()
        limit = owner.audit_bytes
        for index, send in enumerate(kept):
            if send is None or send.topic != history:
                continue
            part, at = send.audit, joined.get(send.key)
            if part is None:
                joined.pop(send.key, None)
                continue
            head = kept[at] if at is not None else None
            if at is not None and head is not None and head.audit is not None \
                    and head.audit.execution_id == part.execution_id and head.audit.size + part.size <= limit:
                kept[at] = None
                if at not in merged:
                    head = Send(history, send.key, None, send.partition, head.source,
                                audit=AuditEvents(part.execution_id, list(head.audit.events), head.audit.size))
                assert head.audit is not None
                head.audit.join(part)
                kept[index] = head
                merged.discard(at)
                merged.add(index)
            joined[send.key] = index
        out = [send for send in kept if send is not None]
        for send in out:
            if send.audit is not None:
                send.value = join_events(send.key.decode(), send.audit.execution_id, send.audit.events)
        return out

    def blame(self, send: Send, limit: int) -> Source | None:
        """The input whose turn made `send` (a record of `records`) larger than `limit` bytes.

        A record carries the source of the turn that wrote it, but an instance's status and
        history-store records are its last state's in the transaction, and hold what every turn of
        it before added: the one to blame is the turn that made the state too large, the first of
        the turns since whose states all were. (An event too large for any record fails the turn
        that adds it: `_encode`.) Blaming the last would set aside an innocent input, and the next
        read of the batch would blame the one before it."""
        latest = send if isinstance(send, StateSend) else send.written_with
        if latest is None:
            return send.source
        # Back through the states of the same execution while each was too large as well: the
        # first of that run made it so (one before it that was too large and then shrank, or of
        # an execution a purge or restart ended, wrote no record that is refused).
        execution_id, blamed = latest.state.execution_id, latest
        before = latest.previous
        while before is not None and before.state.execution_id == execution_id \
                and Send(send.topic, send.key, encode_state(before.state), None, None, send.headers).size > limit:
            blamed, before = before, before.previous
        return blamed.source

    def dead_letter(self, kind: str, reason: str, topic: str, record: ConsumerRecord[bytes, bytes]) -> None:
        """Set input `record` of `topic` aside on the dead-letter topic, with `reason`."""
        owner = self.owner
        self.add(owner.topics.dead_letter, record.key or b"",
                 encode_dead_letter(reason, topic, record.partition, record.offset, record.key, record.value,
                                    dead_letter_value_bytes(owner.settings, owner.record_limit)))
        self.set_aside.append(kind)

    # -- effects (`engine.core.effects.EffectSink`) -------------------------------------------------

    def close_execution(self, instance_id: str, execution_id: str, events: Sequence[HistoryEvent]) -> None:
        encoded = self._encode(instance_id, execution_id, events)
        stored = self.owner.histories.get(instance_id)
        if not self.owner.audit_turns and stored is not None and stored.execution_id == execution_id:
            encoded = [*stored.encoded(), *encoded]  # the audit record(s) of the whole execution
        self._audit(instance_id, execution_id, encoded)
        self._drop_history(instance_id)

    def remove_instance(self, instance_id: str) -> None:
        owner = self.owner
        owner.forget(instance_id)
        self._drop_history(instance_id)
        self.add(owner.topics.history_store, state_snapshot_key(instance_id), None, owner.number, _STORE_HEADERS)
        self.add(owner.topics.status, instance_id.encode(), None, owner.number)

    def append_history(self, state: InstanceState, events: Sequence[HistoryEvent], *, reset: bool) -> None:
        owner = self.owner
        iid = state.instance_id
        # Each event is encoded once, for the audit record and for the history-store chunks (which
        # `put_state`, always next, writes with the state); first, so a turn that cannot be written
        # fails before anything changed.
        fresh = self._encode(iid, state.execution_id, events)
        stored = owner.histories.get(iid)
        if reset or stored is None or stored.execution_id != state.execution_id:
            self._drop_history(iid)
            stored = owner.histories[iid] = StoredHistory(iid, state.execution_id)
        stored.append(events, fresh)
        if owner.audit_turns:
            self._audit(iid, state.execution_id, fresh)
        if not state.is_running:
            if not owner.audit_turns:  # HEADRACE_AUDIT=execution: all of it, now that it ended
                self._audit(iid, state.execution_id, stored.encoded())
            # A finished instance is never replayed: its chunks go, the audit history stays.
            self._drop_history(iid)

    def put_state(self, state: InstanceState) -> None:
        """The instance's state after the turn: in memory now, its records when the transaction is
        sent (`StateSend`)."""
        owner = self.owner
        owner.remember(state)
        iid = state.instance_id
        previous = self._states.get(iid)
        if previous is None and self._dropped and self._dropped[-1].stored.instance_id == iid:
            dropped = self._dropped[-1].latest  # this turn ended its execution (`_drop_history`)
            if dropped is not None and dropped.state.execution_id == state.execution_id:
                previous = dropped
        send = StateSend(owner.topics.status, iid.encode(), None, owner.number, self.source,
                         owner.observer.status_headers(state), state=state, at=len(self.sends),
                         previous=previous)
        self.sends.append(send)
        self._states[iid] = send

    def _store_records(self, send: StateSend) -> list[Send]:
        """The `history-store` records of an instance's last state in the transaction (encoding its
        `status` value too), from the instance's history as that turn left it: any later turn of
        the instance would have put a later state."""
        if send.store is not None:
            return send.store
        owner = self.owner
        state, headers, source = send.state, send.headers, send.source
        value = send.value = encode_state(state)
        iid = state.instance_id
        out = send.store = []
        # What a restore reads instead of all of `status`: a running instance's open history chunk
        # carries its state (one record per turn, issue 17); any other state a restore needs
        # (`PartitionOwner.snapshot`) is a snapshot of its own, tombstoned once the instance no
        # longer needs an owner, so finished ones cost a restore nothing.
        stored = owner.histories.get(iid)
        if state.is_running and stored is not None and stored.chunk_count \
                and stored.execution_id == state.execution_id:
            # The record: key and value both name the instance and execution, beside events and state.
            if stored.open_bytes() + len(value) + 2 * len(send.key) + 512 <= owner.store_bytes:
                store_headers = [*headers, STORE_HEADER] if headers else _STORE_HEADERS
                for chunk_key, chunk in stored.dirty_chunks(value):
                    out.append(Send(owner.topics.history_store, chunk_key, chunk, owner.number, source, store_headers,
                                    written_with=send))
                return out
            # The state and the open chunk do not fit in one record: each gets its own, and a
            # restore takes the later (`PartitionOwner._restore`).
            for chunk_key, chunk in stored.dirty_chunks():
                out.append(Send(owner.topics.history_store, chunk_key, chunk, owner.number, source, _STORE_HEADERS,
                                written_with=send))
            snapshot: bytes | None = value
        else:
            snapshot = owner.snapshot(state, value)
        if snapshot is not None:
            owner.snapshot_keys.add(iid)
            out.append(Send(owner.topics.history_store, state_snapshot_key(iid), snapshot, owner.number, source,
                            [*headers, STORE_HEADER] if headers else _STORE_HEADERS, written_with=send))
        elif iid in owner.snapshot_keys:
            # Taken out of `snapshot_keys` once committed (`PartitionOwner._commit`).
            out.append(Send(owner.topics.history_store, state_snapshot_key(iid), None, owner.number, source,
                            _STORE_HEADERS))
        return out

    def send_task(self, item: cmd.ActivityWorkItem) -> None:
        topic = self.owner.topics.tasks
        if item.app_id is not None:  # another app's activity: that app's task topic (`runtime.apps`)
            topic = self.owner.apps.of(item.app_id).tasks
            self.apps.add(item.app_id)
        self.add(topic, item.instance_id.encode(), encode(item), None, self.owner.observer.headers())

    def send_workflow_item(self, item: WorkflowWorkItem) -> None:
        self.add(self.owner.topics.orchestrations, item.instance_id.encode(), encode_workflow_item(item), None,
                 self.owner.observer.headers())

    def schedule_timer(self, timer: Timer) -> None:
        self.owner.add_timer(timer)

    def send_message(self, message: cmd.InstanceMessage) -> None:
        self.add(self.owner.topics.commands, message.instance_id.encode(), encode(message), None,
                 self.owner.observer.headers())

    def send_to_app(self, sent: AppMessage) -> None:
        message = sent.message
        self.apps.add(sent.app_id)
        self.add(self.owner.apps.of(sent.app_id).commands, message.instance_id.encode(), encode(message), None,
                 self.owner.observer.headers())

    def ignore(self, message: cmd.InstanceMessage | None, unapplied: Unapplied) -> None:
        if message is not None:
            log.debug("%s for %s changed nothing: %s", type(message).__name__, message.instance_id, unapplied.reason)

    def refuse(self, message: cmd.InstanceMessage | None, unapplied: Unapplied) -> None:
        self.ignore(message, unapplied)
        if self.input is not None:
            # Kept with its reason, so whoever produced it can find out.
            topic, record = self.input
            self.dead_letter("rejected", unapplied.reason, topic, record)

    # -- helpers ---------------------------------------------------------------------------------

    def _encode(self, iid: str, execution_id: str, events: Sequence[HistoryEvent]) -> list[bytes]:
        """`events` encoded; raises `PayloadTooLargeError` if one of them alone makes a record over
        the limit (its audit record, its chunk), so that the turn that added it is the one set aside
        (`PartitionOwner._broken`), whichever turn of the instance in this transaction (or, with
        HEADRACE_AUDIT=execution, at its end) would write the record."""
        encoded = [encode_event(e) for e in events]
        owner = self.owner
        # The most a record of it alone holds besides it: the key and the event's two IDs (a chunk's
        # key and value name both), and headers (`RECORD_OVERHEAD`).
        overhead = 2 * (len(iid.encode()) + len(execution_id)) + owner.record_limit - owner.store_bytes
        for event in encoded:
            if len(event) + overhead > owner.record_limit:
                raise PayloadTooLargeError(f"a record of one history event to {owner.topics.history}",
                                           len(event) + overhead, owner.record_limit)
        return encoded

    def _audit(self, iid: str, execution_id: str, encoded: list[bytes]) -> None:
        """A turn's events on the audit topic: one record, or several when their payloads are large
        (and joined with the instance's other turns in this transaction: `records`)."""
        owner = self.owner
        topic, key, limit = owner.topics.history, iid.encode(), owner.audit_bytes
        start, size = 0, 0
        for index, event in enumerate(encoded):
            if index > start and size + len(event) > limit:
                self._audit_part(topic, key, AuditEvents(execution_id, encoded[start:index], size))
                start, size = index, 0
            size += len(event) + 1
        self._audit_part(topic, key, AuditEvents(execution_id, encoded[start:], size))

    def _audit_part(self, topic: str, key: bytes, events: AuditEvents) -> None:
        self.sends.append(Send(topic, key, None, self.owner.number, self.source, audit=events))

    def _drop_history(self, iid: str) -> None:
        """Forget a history that will not be replayed again, and tombstone its chunks."""
        owner = self.owner
        stored = owner.histories.pop(iid, None)
        if stored is not None:
            # The instance's last state so far writes no chunks of it now: they would be tombstoned
            # here. Its status is still written (if the collapse keeps it), and a state put after
            # this one writes what a restore needs then (or a purge tombstones it all).
            self._dropped.append(_Dropped(len(self.sends), stored, self._states.pop(iid, None)))
            for chunk_key in stored.chunk_keys():
                self.add(owner.topics.history_store, chunk_key, None, owner.number, _STORE_HEADERS)
