"""The Kafka engine's sink without Kafka: which records a partition owner's turns buffer for their
transaction, and how its memory (states, live histories, timer heap) follows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from aiokafka.structs import ConsumerRecord
from support import input_record

from engine import when_all
from engine.core import commands as cmd
from engine.core import events as ev
from engine.core.cache import ExecutionCache
from engine.core.codec import encode
from engine.core.orchestrator import Orchestrator
from engine.core.state import RECENT_COMMANDS
from engine.core.timers import DurableTimer, ScheduledStart
from engine.core.values import RuntimeStatus
from engine.runtime import sink as sink_module
from engine.runtime.partition import PartitionOwner
from engine.runtime.sink import RecordInput, Send, TransactionSink
from engine.settings import Settings
from engine.topics import Topics
from engine.wire.records import SNAPSHOT_SUFFIX, decode_chunk, decode_events, decode_state, state_snapshot_key


def one_task(ctx: Any, x: Any) -> Any:
    return (yield ctx.call_activity("a", input=x))


def fan_out(ctx: Any, n: Any) -> Any:
    return (yield when_all([ctx.call_activity("a", input=i) for i in range(n)]))


def listener(ctx: Any) -> Any:
    while True:
        yield ctx.wait_for_external_event("e")


def sleeper(ctx: Any) -> Any:
    yield ctx.create_timer(timedelta(seconds=10))
    return "slept"


@pytest.fixture
def owner() -> PartitionOwner:
    settings = Settings.from_env({})
    workflows = {"one_task": one_task, "sleeper": sleeper, "fan_out": fan_out, "listener": listener}
    return PartitionOwner(0, settings, Topics.for_settings(settings),
                          Orchestrator(workflows.get, ExecutionCache(10)), "engine", partitions=1)


def record(message: cmd.InstanceMessage, topic: str, offset: int = 7) -> ConsumerRecord[bytes, bytes]:
    return input_record(topic, offset, message.instance_id.encode(), encode(message))


def apply(owner: PartitionOwner, message: cmd.InstanceMessage) -> TransactionSink:
    sink = TransactionSink(owner)
    topic = owner.topics.commands
    rec = record(message, topic)
    owner._apply_record(topic, rec, owner._decode(rec), sink)
    sink.records()  # made when the transaction is sent, as `PartitionOwner._commit` does
    return sink


def apply_all(owner: PartitionOwner, messages: list[cmd.InstanceMessage]) -> TransactionSink:
    """One transaction's sink for several inputs, as `PartitionOwner.process` builds it."""
    sink = TransactionSink(owner)
    topic = owner.topics.commands
    for offset, message in enumerate(messages):
        rec = record(message, topic, offset)
        sink.source = RecordInput(topic, offset)
        owner._apply_record(topic, rec, owner._decode(rec), sink)
    sink.records()
    return sink


def topics_of(owner: PartitionOwner, sink: TransactionSink) -> list[tuple[str, bool]]:
    """(topic kind, is a tombstone) of every record the transaction would send, in order."""
    names = {getattr(owner.topics, f): f for f in owner.topics.__slots__}
    return [(names[s.topic], s.value is None) for s in sink.records()]  # every value is final then


def test_a_start_writes_chunk_audit_status_and_work_item(owner: PartitionOwner) -> None:
    sink = apply(owner, cmd.StartWorkflow(instance_id="i", command_id="c1", name="one_task", input="1"))
    # history_store once: the history chunk, which carries the state a restore reads (issue 17).
    assert topics_of(owner, sink) == [("history", False), ("status", False), ("history_store", False), ("tasks", False)]
    chunk = decode_chunk(next(s.value for s in sink.records() if s.topic == owner.topics.history_store) or b"")
    assert decode_state(chunk.state or {}) == owner.states["i"]
    assert owner.states["i"].status is RuntimeStatus.RUNNING
    assert len(owner.histories["i"]) == owner.states["i"].history_length


def test_a_finished_instance_tombstones_its_live_history(owner: PartitionOwner) -> None:
    apply(owner, cmd.StartWorkflow(instance_id="i", command_id="c1", name="one_task", input="1"))
    sink = apply(owner, cmd.ActivityResult(instance_id="i", execution_id="c1", task_id=0, result="2"))
    # Its chunk (which held its state) is tombstoned: a finished instance costs a restore nothing.
    assert topics_of(owner, sink) == [("history", False), ("history_store", True), ("status", False)]
    assert "i" not in owner.histories
    assert owner.states["i"].status is RuntimeStatus.COMPLETED


def test_a_refused_command_is_dead_lettered_with_its_reason(owner: PartitionOwner) -> None:
    apply(owner, cmd.StartWorkflow(instance_id="i", command_id="c1", name="one_task", input="1"))
    sink = apply(owner, cmd.StartWorkflow(instance_id="i", command_id="c2", name="one_task", input="1"))
    assert topics_of(owner, sink) == [("status", False), ("history_store", False), ("dead_letter", False)]
    letter = orjson.loads(sink.records()[-1].value or b"")
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


def kinds(owner: PartitionOwner, sends: list[Send]) -> list[str]:
    names = {getattr(owner.topics, f): f for f in owner.topics.__slots__}
    return [names[s.topic] for s in sends]


def test_a_batch_of_one_instances_turns_writes_its_state_chunk_and_audit_once(owner: PartitionOwner) -> None:
    """Issue 17: parallel results applied in one transaction collapse into one record per topic."""
    messages: list[cmd.InstanceMessage] = [
        cmd.StartWorkflow(instance_id="i", command_id="c1", name="fan_out", input="4")]
    start = apply_all(owner, messages)
    assert kinds(owner, start.records()) == ["history", "status", "history_store", *["tasks"] * 4]
    results = [cmd.ActivityResult(instance_id="i", execution_id="c1", task_id=n, result=str(n)) for n in range(3)]
    sink = apply_all(owner, list(results))
    # Three turns of audit and state before collapsing; a state's records are made when sent.
    assert kinds(owner, sink.sends) == ["history", "status"] * 3
    records = sink.records()
    assert kinds(owner, records) == ["history", "status", "history_store"]
    audit, status, chunk = records
    # The audit record holds every turn's events, in order; the status and chunk are the last.
    _, execution, events = decode_events(audit.value or b"")
    assert execution == "c1"
    assert [e.task_scheduled_id for e in events if isinstance(e, ev.TaskCompleted)] == [0, 1, 2]
    assert decode_state(status.value or b"") == owner.states["i"]
    assert decode_state(decode_chunk(chunk.value or b"").state or {}) == owner.states["i"]
    assert status.source == RecordInput(owner.topics.commands, 2)


def test_collapsed_audit_records_keep_the_split_for_large_payloads(owner: PartitionOwner) -> None:
    apply_all(owner, [cmd.StartWorkflow(instance_id="i", command_id="c1", name="fan_out", input="3")])
    big = '"' + "x" * (owner.audit_bytes // 2) + '"'
    sink = apply_all(owner, [cmd.ActivityResult(instance_id="i", execution_id="c1", task_id=n, result=big)
                             for n in range(3)])
    audits = [s for s in sink.records() if s.topic == owner.topics.history]
    assert len(audits) >= 2, "three half-limit payloads cannot share one record"
    # A record of several events stays under the limit (one event alone may be over it: the last
    # turn's output holds all three payloads).
    assert all(len(s.value or b"") <= owner.audit_bytes + 1024 for s in audits if s.audit and len(s.audit.events) > 1)
    completed = [e.task_scheduled_id for s in audits for e in decode_events(s.value or b"")[2]
                 if isinstance(e, ev.TaskCompleted)]
    assert completed == [0, 1, 2]


def test_collapsed_statuses_keep_every_command_visible(owner: PartitionOwner) -> None:
    """A state holds the last RECENT_COMMANDS command IDs: with more commands than that in one
    transaction, enough intermediate states are kept that each ID shows in one of them."""
    apply_all(owner, [cmd.StartWorkflow(instance_id="i", command_id="c1", name="listener")])
    ids = [f"e{n}" for n in range(3 * RECENT_COMMANDS)]
    sink = apply_all(owner, [cmd.RaiseEvent(instance_id="i", command_id=c, name="e") for c in ids])
    shown = set()
    statuses = [s for s in sink.records() if s.topic == owner.topics.status]
    assert 1 < len(statuses) < len(ids)
    for status in statuses:
        shown.update(decode_state(status.value or b"").recent_commands)
    assert set(ids) <= shown
    assert decode_state(statuses[-1].value or b"") == owner.states["i"]


def test_a_purge_in_the_batch_keeps_the_audit_records_around_it_apart(owner: PartitionOwner) -> None:
    apply_all(owner, [cmd.StartWorkflow(instance_id="i", command_id="c1", name="one_task", input="1")])
    sink = apply_all(owner, [cmd.ActivityResult(instance_id="i", execution_id="c1", task_id=0, result="2"),
                             cmd.PurgeWorkflow(instance_id="i", command_id="p"),
                             cmd.StartWorkflow(instance_id="i", command_id="c2", name="one_task", input="1")])
    sink.add(owner.topics.history, b"i", None, 0)  # what a retention purge adds between turns
    sink.sends.insert(3, sink.sends.pop())
    history = [s for s in sink.records() if s.topic == owner.topics.history]
    assert [s.value is None for s in history] == [False, True, False]
    assert [decode_events(s.value or b"")[1] for s in history if s.value] == ["c1", "c2"]
    # The status ends with the new run; its earlier tombstone collapsed into it.
    statuses = [s for s in sink.records() if s.topic == owner.topics.status]
    assert [decode_state(s.value or b"").execution_id for s in statuses] == ["c2"]


def test_a_snapshot_of_its_own_is_tombstoned_once_not_needed(owner: PartitionOwner) -> None:
    """A state a restore needs beside no open chunk (a pending start) is a snapshot record; once
    the instance runs its chunk carries the state, and when it ends the snapshot is tombstoned."""
    later = datetime.now(UTC) + timedelta(days=1)
    sink = apply(owner, cmd.StartWorkflow(instance_id="s", command_id="c1", name="one_task", scheduled_start=later))
    assert [(s.key, s.value is None) for s in sink.records() if s.topic == owner.topics.history_store] == [
        (state_snapshot_key("s"), False)]
    assert owner.snapshot_keys == {"s"}
    sink = apply(owner, cmd.TerminateWorkflow(instance_id="s", command_id="t"))
    assert [(s.key, s.value is None) for s in sink.records()
            if s.topic == owner.topics.history_store and s.key.endswith(SNAPSHOT_SUFFIX)] == [
        (state_snapshot_key("s"), True)]


def test_audit_per_execution_writes_the_whole_history_once_when_it_ends() -> None:
    """HEADRACE_AUDIT=execution: a running instance's turns write no audit record; its end writes
    every event of the execution, in order, as the per-turn records would have held them."""
    settings = Settings.from_env({"HEADRACE_AUDIT": "execution"})
    owner = PartitionOwner(0, settings, Topics.for_settings(settings),
                           Orchestrator({"fan_out": fan_out}.get, ExecutionCache(10)), "engine", partitions=1)
    sink = apply_all(owner, [cmd.StartWorkflow(instance_id="i", command_id="c1", name="fan_out", input="2")])
    assert "history" not in kinds(owner, sink.records())
    sink = apply_all(owner, [cmd.ActivityResult(instance_id="i", execution_id="c1", task_id=0, result="0")])
    assert "history" not in kinds(owner, sink.records())
    history = owner.histories["i"].events
    sink = apply_all(owner, [cmd.ActivityResult(instance_id="i", execution_id="c1", task_id=1, result="1")])
    (audit,) = [s for s in sink.records() if s.topic == owner.topics.history]
    _, execution, events = decode_events(audit.value or b"")
    assert execution == "c1"
    assert [e.seq for e in events] == list(range(len(events)))
    assert events[:len(history)] == history
    assert isinstance(events[-1], ev.ExecutionCompleted)
    assert owner.states["i"].history_length == len(events)


def test_the_audit_setting_is_checked() -> None:
    with pytest.raises(ValueError, match="HEADRACE_AUDIT"):
        Settings.from_env({"HEADRACE_AUDIT": "never"})


def again(ctx: Any, n: Any) -> Any:
    if n:
        yield ctx.call_activity("a", input=n)
        ctx.continue_as_new(n - 1)
        return None
    return "done"


def test_audit_per_execution_closes_each_execution_of_a_continue_as_new() -> None:
    settings = Settings.from_env({"HEADRACE_AUDIT": "execution"})
    owner = PartitionOwner(0, settings, Topics.for_settings(settings),
                           Orchestrator({"again": again}.get, ExecutionCache(10)), "engine", partitions=1)
    apply_all(owner, [cmd.StartWorkflow(instance_id="i", command_id="c1", name="again", input="1")])
    sink = apply_all(owner, [cmd.ActivityResult(instance_id="i", execution_id="c1", task_id=0, result="0")])
    audits = [decode_events(s.value or b"") for s in sink.records() if s.topic == owner.topics.history]
    # The first execution whole (started, scheduled, completed, continued), then the second's end.
    assert audits[0][1] == "c1"
    first = audits[0][2]
    assert [e.seq for e in first] == list(range(len(first)))
    assert any(isinstance(e, ev.ExecutionStarted) for e in first)
    assert isinstance(first[-1], ev.ContinuedAsNew)
    assert len(audits) == 2
    assert isinstance(audits[1][2][-1], ev.ExecutionCompleted)


@pytest.mark.pure_python
def test_a_state_a_later_turn_replaces_is_never_encoded(owner: PartitionOwner, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fan-in's results in one transaction: only the last state is encoded (a state holds every
    pending task, so encoding each of N turns' states cost N times N)."""
    apply_all(owner, [cmd.StartWorkflow(instance_id="i", command_id="c1", name="fan_out", input="6")])
    encoded: list[int] = []
    real = sink_module.encode_state

    def counted(state: Any) -> bytes:
        encoded.append(state.history_length)
        return real(state)

    monkeypatch.setattr(sink_module, "encode_state", counted)
    sink = apply_all(owner, [cmd.ActivityResult(instance_id="i", execution_id="c1", task_id=n, result=str(n))
                             for n in range(5)])
    records = sink.records()
    assert encoded == [owner.states["i"].history_length]
    (status,) = [s for s in records if s.topic == owner.topics.status]
    assert decode_state(status.value or b"") == owner.states["i"]


def test_collapsed_turns_write_every_chunk_they_filled(owner: PartitionOwner) -> None:
    """Turns that fill a chunk and open the next in one transaction: the collapsed records hold
    the whole history, the filled chunk and the open one (with the state)."""
    apply_all(owner, [cmd.StartWorkflow(instance_id="i", command_id="c1", name="fan_out", input="20")])
    sink = apply_all(owner, [cmd.ActivityResult(instance_id="i", execution_id="c1", task_id=n, result=str(n))
                             for n in range(19)])
    chunks = [decode_chunk(s.value or b"") for s in sink.records() if s.topic == owner.topics.history_store]
    assert len(chunks) >= 2
    assert [e for c in chunks for e in c.events] == owner.histories["i"].events
    assert [c.state is None for c in chunks] == [True] * (len(chunks) - 1) + [False]
    assert decode_state(chunks[-1].state or {}) == owner.states["i"]


def test_a_rolled_back_turn_leaves_the_last_state_to_write(owner: PartitionOwner) -> None:
    """A turn that fails after letting an instance's history go (a purge) is rolled back: the
    history is back, and the state before it writes its chunk as if the turn never ran."""
    apply_all(owner, [cmd.StartWorkflow(instance_id="i", command_id="c1", name="fan_out", input="2")])
    sink = apply_all(owner, [cmd.ActivityResult(instance_id="i", execution_id="c1", task_id=0, result="0")])
    state, history = owner.states["i"], owner.histories["i"]
    mark = sink.mark()
    sink.remove_instance("i")  # what a purge turn does before it could fail
    assert "i" not in owner.histories
    sink.rollback(mark)
    owner.remember(state)  # the caller's part (`PartitionOwner._expire` keeps it in memory)
    assert owner.histories["i"] is history
    chunks = [decode_chunk(s.value or b"") for s in sink.records() if s.topic == owner.topics.history_store]
    assert [decode_state(c.state or {}) for c in chunks] == [state]
    assert [s.key for s in sink.records() if s.topic == owner.topics.status] == [b"i"]
