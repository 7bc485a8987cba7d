"""The Kafka engine's effect sink: a partition owner's turns as the records of one transaction.

`TransactionSink` buffers every record a batch of turns writes (status, history-store chunks, audit
history, work items, messages to other instances, dead letters) for the owner to send in one
transaction with the consumed offsets, and keeps the owner's memory (states, live histories, the
timer heap) in step. What a turn writes is decided by `engine.core.effects.apply_outcome`; this
module only knows where each effect goes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiokafka.structs import ConsumerRecord

from ..core import commands as cmd
from ..core.apps import AppMessage
from ..core.codec import encode
from ..core.events import HistoryEvent
from ..core.orchestrator import Unapplied
from ..core.remote import WorkflowWorkItem
from ..core.state import InstanceState, Timer
from ..wire.records import (
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

__all__ = ["RecordInput", "Send", "Source", "TransactionSink"]

log = logging.getLogger(__name__)

@dataclass(frozen=True, slots=True)
class RecordInput:
    """An input record of the owner's partition, by topic and offset."""

    topic: str
    offset: int


#: What an input was: a record, or a timer that came due.
Source = RecordInput | Timer


@dataclass(slots=True)
class Send:
    topic: str
    key: bytes
    value: bytes | None
    partition: int | None
    #: The input whose turn made this record, to set it aside if the record cannot be written.
    source: Source | None
    #: Kafka record headers: the W3C trace context when tracing is on (engine.tracing).
    headers: list[tuple[str, bytes]] | None = None


class TransactionSink:
    """Records buffered for one transaction of `owner` (see the module docstring)."""

    __slots__ = ("apps", "input", "owner", "sends", "set_aside", "source")

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

    # -- the buffer ------------------------------------------------------------------------------

    def add(self, topic: str, key: bytes, value: bytes | None, partition: int | None = None,
            headers: list[tuple[str, bytes]] | None = None) -> None:
        self.sends.append(Send(topic, key, value, partition, self.source, headers))

    def mark(self) -> int:
        return len(self.sends)

    def rollback(self, mark: int) -> None:
        del self.sends[mark:]

    def dead_letter(self, kind: str, reason: str, topic: str, record: ConsumerRecord[bytes, bytes]) -> None:
        """Set input `record` of `topic` aside on the dead-letter topic, with `reason`."""
        owner = self.owner
        self.add(owner.topics.dead_letter, record.key or b"",
                 encode_dead_letter(reason, topic, record.partition, record.offset, record.key, record.value,
                                    owner.settings.dead_letter_value_bytes))
        self.set_aside.append(kind)

    # -- effects (`engine.core.effects.EffectSink`) -------------------------------------------------

    def close_execution(self, instance_id: str, execution_id: str, events: Sequence[HistoryEvent]) -> None:
        self._audit(instance_id, execution_id, [encode_event(e) for e in events])
        self._drop_history(instance_id)

    def remove_instance(self, instance_id: str) -> None:
        owner = self.owner
        owner.forget(instance_id)
        self._drop_history(instance_id)
        self.add(owner.topics.history_store, state_snapshot_key(instance_id), None, owner.number)
        self.add(owner.topics.status, instance_id.encode(), None, owner.number)

    def append_history(self, state: InstanceState, events: Sequence[HistoryEvent], *, reset: bool) -> None:
        owner = self.owner
        iid = state.instance_id
        stored = owner.histories.get(iid)
        if reset or stored is None or stored.execution_id != state.execution_id:
            self._drop_history(iid)
            stored = owner.histories[iid] = StoredHistory(iid, state.execution_id)
        # Each event is encoded once, for the audit record and for the history-store chunks.
        fresh = stored.append(events)
        self._audit(iid, state.execution_id, fresh)
        if state.is_running:
            for chunk_key, chunk in stored.dirty_chunks():
                self.add(owner.topics.history_store, chunk_key, chunk, owner.number)
        else:
            # A finished instance is never replayed: its chunks go, the audit history stays.
            self._drop_history(iid)

    def put_state(self, state: InstanceState) -> None:
        owner = self.owner
        owner.remember(state)
        headers = owner.observer.status_headers(state)
        value = encode_state(state)
        # What a restore reads instead of all of `status` (`PartitionOwner.snapshot`): tombstoned
        # once the instance no longer needs an owner, so finished ones cost a restore nothing.
        snapshot = owner.snapshot(state, value)
        self.add(owner.topics.history_store, state_snapshot_key(state.instance_id), snapshot, owner.number,
                 headers if snapshot is not None else None)
        self.add(owner.topics.status, state.instance_id.encode(), value, owner.number, headers)

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

    def _audit(self, iid: str, execution_id: str, encoded: list[bytes]) -> None:
        """A turn's events on the audit topic: one record, or several when their payloads are large."""
        owner = self.owner
        topic, key, limit = owner.topics.history, iid.encode(), owner.audit_bytes
        start, size = 0, 0
        for index, event in enumerate(encoded):
            if index > start and size + len(event) > limit:
                self.add(topic, key, join_events(iid, execution_id, encoded[start:index]), owner.number)
                start, size = index, 0
            size += len(event) + 1
        self.add(topic, key, join_events(iid, execution_id, encoded[start:]), owner.number)

    def _drop_history(self, iid: str) -> None:
        """Forget a history that will not be replayed again, and tombstone its chunks."""
        owner = self.owner
        stored = owner.histories.pop(iid, None)
        if stored is not None:
            for chunk_key in stored.chunk_keys():
                self.add(owner.topics.history_store, chunk_key, None, owner.number)
