"""The Kafka engine's sink without Kafka: which records a partition owner's turns buffer for their
transaction, and how its memory (states, live histories, timer heap) follows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from aiokafka.structs import ConsumerRecord

from engine.core import commands as cmd
from engine.core.cache import ExecutionCache
from engine.core.codec import encode
from engine.core.orchestrator import Orchestrator
from engine.core.state import DurableTimer, ScheduledStart
from engine.core.values import RuntimeStatus
from engine.runtime.partition import PartitionOwner
from engine.runtime.sink import TransactionSink
from engine.settings import Settings
from engine.topics import Topics


def one_task(ctx: Any, x: Any) -> Any:
    return (yield ctx.call_activity("a", input=x))


def sleeper(ctx: Any) -> Any:
    yield ctx.create_timer(timedelta(seconds=10))
    return "slept"


@pytest.fixture
def owner() -> PartitionOwner:
    settings = Settings.from_env({})
    workflows = {"one_task": one_task, "sleeper": sleeper}
    return PartitionOwner(0, settings, Topics.for_settings(settings),
                          Orchestrator(workflows.get, ExecutionCache(10)), "engine", partitions=1)


def record(message: cmd.InstanceMessage, topic: str, offset: int = 7) -> ConsumerRecord[bytes, bytes]:
    value = encode(message)
    return ConsumerRecord(topic=topic, partition=0, offset=offset, timestamp=0, timestamp_type=0,
                          key=message.instance_id.encode(), value=value, checksum=None,
                          serialized_key_size=0, serialized_value_size=len(value), headers=[])


def apply(owner: PartitionOwner, message: cmd.InstanceMessage) -> TransactionSink:
    sink = TransactionSink(owner)
    topic = owner.topics.commands
    rec = record(message, topic)
    owner._apply_record(topic, rec, owner._decode(rec), sink)
    return sink


def topics_of(owner: PartitionOwner, sink: TransactionSink) -> list[tuple[str, bool]]:
    """(topic kind, is a tombstone) of every buffered record, in order."""
    names = {getattr(owner.topics, f): f for f in owner.topics.__slots__}
    return [(names[s.topic], s.value is None) for s in sink.sends]


def test_a_start_writes_chunk_audit_status_and_work_item(owner: PartitionOwner) -> None:
    sink = apply(owner, cmd.StartWorkflow(instance_id="i", command_id="c1", name="one_task", input="1"))
    # history_store twice: the history chunk, and the state snapshot a restore reads (issue 16).
    assert topics_of(owner, sink) == [
        ("history", False), ("history_store", False), ("history_store", False), ("status", False), ("tasks", False),
    ]
    assert owner.states["i"].status is RuntimeStatus.RUNNING
    assert len(owner.histories["i"]) == owner.states["i"].history_length


def test_a_finished_instance_tombstones_its_live_history(owner: PartitionOwner) -> None:
    apply(owner, cmd.StartWorkflow(instance_id="i", command_id="c1", name="one_task", input="1"))
    sink = apply(owner, cmd.ActivityResult(instance_id="i", execution_id="c1", task_id=0, result="2"))
    # Its chunk and its snapshot are tombstoned: a finished instance costs a restore nothing.
    assert topics_of(owner, sink) == [("history", False), ("history_store", True), ("history_store", True),
                                      ("status", False)]
    assert "i" not in owner.histories
    assert owner.states["i"].status is RuntimeStatus.COMPLETED


def test_a_refused_command_is_dead_lettered_with_its_reason(owner: PartitionOwner) -> None:
    apply(owner, cmd.StartWorkflow(instance_id="i", command_id="c1", name="one_task", input="1"))
    sink = apply(owner, cmd.StartWorkflow(instance_id="i", command_id="c2", name="one_task", input="1"))
    assert topics_of(owner, sink) == [("history_store", False), ("status", False), ("dead_letter", False)]
    letter = orjson.loads(sink.sends[-1].value or b"")
    assert letter["reason"] == "an active workflow with ID 'i' already exists"
    assert (letter["topic"], letter["offset"]) == (owner.topics.commands, 7)
    assert sink.set_aside == ["rejected"]
    # A duplicate result is dropped: nothing is written and nothing dead-lettered.
    apply(owner, cmd.ActivityResult(instance_id="i", execution_id="c1", task_id=0, result="2"))
    assert apply(owner, cmd.ActivityResult(instance_id="i", execution_id="c1", task_id=0, result="2")).sends == []


def test_a_purge_tombstones_the_status(owner: PartitionOwner) -> None:
    apply(owner, cmd.StartWorkflow(instance_id="i", command_id="c1", name="one_task", input="1"))
    apply(owner, cmd.ActivityResult(instance_id="i", execution_id="c1", task_id=0, result="2"))
    sink = apply(owner, cmd.PurgeWorkflow(instance_id="i", command_id="p"))
    assert topics_of(owner, sink) == [("history_store", True), ("status", True)]  # snapshot and state
    assert "i" not in owner.states


def test_timers_go_to_the_owners_heap(owner: PartitionOwner) -> None:
    apply(owner, cmd.StartWorkflow(instance_id="i", command_id="c1", name="sleeper"))
    (timer,) = owner._timers
    assert isinstance(timer, DurableTimer) and (timer.execution_id, timer.timer_id) == ("c1", 0)
    assert owner.next_timer() == timer.due
    later = datetime.now(UTC) + timedelta(days=1)
    apply(owner, cmd.StartWorkflow(instance_id="s", command_id="c1", name="one_task", scheduled_start=later))
    assert ScheduledStart(due=later, instance_id="s") in owner._timers
    assert owner.states["s"].status is RuntimeStatus.PENDING
    # After a restart the heap is rebuilt from the states: the same timers.
    assert sorted(t for st in owner.states.values() for t in st.timers()) == sorted(owner._timers)
