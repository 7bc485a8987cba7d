"""The Kafka engine's partition owner applying Dapr 1.17's state retention policy, without Kafka:
the due purge beside its timers, what the purge's transaction holds, and what cancels it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from engine.core import commands as cmd
from engine.core.cache import ExecutionCache
from engine.core.orchestrator import Orchestrator
from engine.core.values import RuntimeStatus
from engine.runtime.partition import PURGED_HEADER, PartitionOwner
from engine.runtime.sink import TransactionSink
from engine.settings import Settings
from engine.topics import Topics
from tests.unit.test_transaction_sink import apply, topics_of

KEEP = timedelta(minutes=10)


def one_task(ctx: Any, x: Any) -> Any:
    return (yield ctx.call_activity("a", input=x))


def _owner(**retention: str) -> PartitionOwner:
    settings = Settings.from_env({}, **retention)
    workflows = {"one_task": one_task}
    return PartitionOwner(0, settings, Topics.for_settings(settings),
                          Orchestrator(workflows.get, ExecutionCache(10)), "engine", partitions=1)


def _run(owner: PartitionOwner, iid: str, command_id: str) -> None:
    apply(owner, cmd.StartWorkflow(instance_id=iid, command_id=command_id, name="one_task", input="1"))
    apply(owner, cmd.ActivityResult(instance_id=iid, execution_id=command_id, task_id=0, result="2"))
    assert owner.states[iid].status is RuntimeStatus.COMPLETED


@pytest.fixture
def owner() -> PartitionOwner:
    return _owner(retention_completed="10m", retention_any_terminal="1h")


def test_a_finished_instance_is_due_at_its_end_plus_its_statuss_retention(owner: PartitionOwner) -> None:
    _run(owner, "i", "c1")
    finished = owner.states["i"].completed_at
    assert finished is not None
    assert owner.next_timer() == finished + KEEP
    early = TransactionSink(owner)
    assert owner._expire(finished + KEEP - timedelta(milliseconds=1), early, 1000) == 0
    assert early.sends == [] and "i" in owner.states


def test_the_due_purge_tombstones_the_status_and_marks_the_audit_history(owner: PartitionOwner) -> None:
    _run(owner, "i", "c1")
    due = owner.next_timer()
    assert due is not None
    sink = TransactionSink(owner)
    assert owner._expire(due, sink, 1000) == 1
    assert ("status", True) in topics_of(owner, sink)
    marks = [s for s in sink.sends if s.topic == owner.topics.history]
    assert len(marks) == 1 and marks[0].value is None and marks[0].key == b"i"
    assert marks[0].headers == [(PURGED_HEADER, b"retention")]
    assert "i" not in owner.states and owner.expired == 1
    assert owner.next_timer() is None


def test_a_restart_of_the_id_cancels_the_purge_of_the_run_before(owner: PartitionOwner) -> None:
    _run(owner, "i", "c1")
    first_due = owner.next_timer()
    assert first_due is not None
    _run(owner, "i", "c2")  # a finished ID may be started again (Dapr's default reuse policy)
    second = owner.states["i"]
    assert second.execution_id != "c1" and second.completed_at is not None
    assert second.completed_at + KEEP > first_due  # the new run finished later: its own clock
    sink = TransactionSink(owner)
    assert owner._expire(first_due, sink, 1000) == 0
    assert sink.sends == [] and owner.states["i"] == second
    assert owner._expire(second.completed_at + KEEP, sink, 1000) == 1


def test_without_a_policy_finished_instances_have_no_due() -> None:
    owner = _owner()
    _run(owner, "i", "c1")
    assert owner.next_timer() is None
