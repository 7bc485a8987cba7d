"""The contract: every scenario, written once, gives the same observable result on both backends.

Each test runs against the in-memory backend (`engine.testing`) and against the engine on a real
broker (see `conftest.py`), and asserts status, output, failure details, custom status, the
children's states and the history's event types, so the two backends cannot drift apart unnoticed.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import orjson
import pytest

from engine import WorkflowState, WorkflowStatus
from engine.errors import (
    ChildrenRunningError,
    InstanceExistsError,
    InstanceNotFoundError,
    InstanceNotTerminalError,
    PayloadTooLargeError,
)
from tests.contract import workflows as wf
from tests.contract.backends import Backend, Condition

# Every turn's events open and close with these.
START, DONE = "WorkflowStarted", "WorkflowCompleted"
MiB = 1024 * 1024


def results_joined(events: list[str]) -> list[str]:
    """`events` with back-to-back turns of results joined into one: how many turns a fan-in's
    results take depends on how they arrive together (daprd hands a workflow every new event in
    one work item; Headrace applies a batch's results of one instance in one turn)."""
    results = ("TaskCompleted", "TaskFailed", "ChildWorkflowCompleted", "ChildWorkflowFailed")
    out: list[str] = []
    for index, event in enumerate(events):
        if event == DONE and 0 < index < len(events) - 2 and events[index - 1] in results \
                and events[index + 1] == START and events[index + 2] in results:
            continue
        if event == START and out and out[-1] in results and index > 0 and events[index - 1] == DONE:
            continue
        out.append(event)
    return out


def output(state: WorkflowState | None) -> Any:
    assert state is not None
    return None if state.serialized_output is None else orjson.loads(state.serialized_output)


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def status_is(status: WorkflowStatus) -> Condition:
    return lambda state: state is not None and state.runtime_status is status


def gone(state: WorkflowState | None) -> bool:
    return state is None


def test_activity_chain(backend: Backend) -> None:
    iid = backend.schedule(wf.chain, input="Ada")
    state = backend.wait_done(iid)
    assert state.runtime_status is WorkflowStatus.COMPLETED
    assert output(state) == "Hello, Hello, Hello, Ada!!!"
    assert orjson.loads(state.serialized_input or "null") == "Ada"
    assert state.failure_details is None
    assert backend.executions(iid) == [[
        START, "ExecutionStarted", "TaskScheduled", DONE,
        START, "TaskCompleted", "TaskScheduled", DONE,
        START, "TaskCompleted", "TaskScheduled", DONE,
        START, "TaskCompleted", DONE, "ExecutionCompleted",
    ]]


def test_fan_out_fan_in(backend: Backend) -> None:
    iid = backend.schedule(wf.fan_out, input=[1, 2, 3])
    state = backend.wait_done(iid)
    assert state.runtime_status is WorkflowStatus.COMPLETED
    assert output(state) == 14
    [history] = backend.executions(iid)
    assert results_joined(history) == [
        START, "ExecutionStarted", "TaskScheduled", "TaskScheduled", "TaskScheduled", DONE,
        START, "TaskCompleted", "TaskCompleted", "TaskCompleted", DONE, "ExecutionCompleted",
    ]


def test_child_workflows_get_dapr_ids(backend: Backend) -> None:
    iid = backend.schedule(wf.parent, input=["a", "b"])
    state = backend.wait_done(iid)
    assert state.runtime_status is WorkflowStatus.COMPLETED
    assert output(state) == ["Hello, a!", "Hello, b!"]
    # Dapr's default child IDs: the parent's ID, a colon, the action's number from 1 in 4 hex digits.
    for n, name in ((1, "a"), (2, "b")):
        child = backend.state(f"{iid}:{n:04x}")
        assert child is not None and child.runtime_status is WorkflowStatus.COMPLETED
        assert output(child) == f"Hello, {name}!"
    [history] = backend.executions(iid)
    assert results_joined(history) == [
        START, "ExecutionStarted", "ChildWorkflowCreated", "ChildWorkflowCreated", DONE,
        START, "ChildWorkflowCompleted", "ChildWorkflowCompleted", DONE, "ExecutionCompleted",
    ]


def test_external_event(backend: Backend) -> None:
    iid = backend.schedule(wf.approval, input=600)
    running = backend.wait_until(iid, lambda s: s is not None and s.serialized_custom_status == "waiting for approval",
                                 "waiting for approval")
    assert running is not None and running.runtime_status is WorkflowStatus.RUNNING
    backend.raise_event(iid, "approval", True)
    state = backend.wait_done(iid)
    assert state.runtime_status is WorkflowStatus.COMPLETED
    assert output(state) == {"approved": True}
    assert state.serialized_custom_status == "decided"
    assert backend.executions(iid) == [[
        START, "ExecutionStarted", "TimerCreated", DONE,
        START, "EventRaised", DONE, "ExecutionCompleted",
    ]]


def test_external_event_timeout(backend: Backend) -> None:
    iid = backend.schedule(wf.approval, input=0.3)
    state = backend.wait_done(iid)
    assert state.runtime_status is WorkflowStatus.COMPLETED
    assert output(state) == {"approved": None}
    assert state.serialized_custom_status == "expired"
    assert backend.executions(iid) == [[
        START, "ExecutionStarted", "TimerCreated", DONE,
        START, "TimerFired", DONE, "ExecutionCompleted",
    ]]


def test_durable_timer(backend: Backend) -> None:
    iid = backend.schedule(wf.sleeper, input=0.5)
    state = backend.wait_done(iid)
    assert state.runtime_status is WorkflowStatus.COMPLETED
    assert output(state) is True
    assert state.created_at is not None and state.last_updated_at is not None
    assert (state.last_updated_at - state.created_at).total_seconds() >= 0.5
    assert backend.executions(iid) == [[
        START, "ExecutionStarted", "TimerCreated", DONE,
        START, "TimerFired", DONE, "ExecutionCompleted",
    ]]


def test_retry_policy(backend: Backend) -> None:
    iid = backend.schedule(wf.retrying, input=2)
    state = backend.wait_done(iid)
    assert state.runtime_status is WorkflowStatus.COMPLETED
    assert output(state) == "ok after 3"
    assert wf.runs(f"flaky/{iid}") == 3
    attempt = [START, "TaskFailed", "TimerCreated", DONE, START, "TimerFired", "TaskScheduled", DONE]
    assert backend.executions(iid) == [[
        START, "ExecutionStarted", "TaskScheduled", DONE,
        *attempt, *attempt,
        START, "TaskCompleted", DONE, "ExecutionCompleted",
    ]]


def test_retry_policy_gives_up(backend: Backend) -> None:
    iid = backend.schedule(wf.retrying, input=5)
    state = backend.wait_done(iid)
    assert output(state) == "gave up: attempt 3 fails"
    assert wf.runs(f"flaky/{iid}") == 3


def generation(state: WorkflowState | None) -> int:
    return 0 if state is None else int(orjson.loads(state.serialized_input or "{}")["round"])


def test_continue_as_new_carries_events(backend: Backend) -> None:
    iid = backend.schedule(wf.accumulate, input={"total": 0, "round": 1, "rounds": 2})
    # The first generation waits for "go" first, so both "add"s are received by then: it takes one
    # and the other carries over to the second generation.
    for n in (1, 10):
        backend.raise_event(iid, "add", n)
    backend.raise_event(iid, "go")
    state = backend.wait_done(iid)
    assert state.runtime_status is WorkflowStatus.COMPLETED
    assert output(state) == 11
    assert orjson.loads(state.serialized_input or "null") == {"total": 1, "round": 2, "rounds": 2}
    received = [START, "EventRaised", DONE]
    assert backend.executions(iid) == [
        [START, "ExecutionStarted", DONE, *received, *received, *received, "ContinuedAsNew"],
        [START, "ExecutionStarted", "EventRaised", DONE, "ExecutionCompleted"],
    ]


# Dapr's SDK gathers the carried events when the turn ends (github.com/microsoft/durabletask-python,
# `get_actions` of the orchestration context), so events applied after `continue_as_new` in the same
# turn travel too.


def test_continue_as_new_carries_events_twice(backend: Backend) -> None:
    iid = backend.schedule(wf.accumulate, input={"total": 0, "round": 1, "rounds": 3})
    for n in (1, 10, 100):
        backend.raise_event(iid, "add", n)
    backend.raise_event(iid, "go")
    # The second generation starts with two carried events, takes one and must carry the other.
    state = backend.wait_until(iid, lambda s: generation(s) == 3, "third generation")
    assert state is not None and state.runtime_status is WorkflowStatus.COMPLETED
    assert output(state) == 111


def test_events_held_while_suspended_carry_over(backend: Backend) -> None:
    iid = backend.schedule(wf.accumulate, input={"total": 0, "round": 1, "rounds": 3})
    backend.raise_event(iid, "go")
    backend.suspend(iid)
    for n in (1, 10, 100):
        backend.raise_event(iid, "add", n)
    backend.resume(iid)
    # Held while suspended, the three events reach the first generation together on resume: it
    # takes one, and the others must carry over as events received earlier do.
    state = backend.wait_until(iid, lambda s: generation(s) >= 2, "second generation")
    assert state is not None and state.runtime_status is WorkflowStatus.COMPLETED
    assert output(state) == 111


def test_suspend_and_resume(backend: Backend) -> None:
    iid = backend.schedule(wf.gated, input="Ada")
    backend.wait_until(iid, status_is(WorkflowStatus.RUNNING), "running")
    backend.suspend(iid)
    backend.wait_until(iid, status_is(WorkflowStatus.SUSPENDED), "suspended")
    # An event raised while suspended waits for the resume.
    backend.raise_event(iid, "go", "now")
    suspended = backend.state(iid)
    assert suspended is not None and suspended.runtime_status is WorkflowStatus.SUSPENDED
    backend.resume(iid)
    state = backend.wait_done(iid)
    assert state.runtime_status is WorkflowStatus.COMPLETED
    assert output(state) == "Hello, Ada now!"
    assert backend.executions(iid) == [[
        START, "ExecutionStarted", DONE,
        START, "ExecutionSuspended", DONE,
        START, "EventRaised", DONE,
        START, "ExecutionResumed", "TaskScheduled", DONE,
        START, "TaskCompleted", DONE, "ExecutionCompleted",
    ]]


def test_terminate_reaches_children(backend: Backend) -> None:
    iid = backend.schedule(wf.blocked_parent, input=2)
    children = [f"{iid}:0001", f"{iid}:0002"]
    for child in children:
        backend.wait_until(child, status_is(WorkflowStatus.RUNNING), "child running")
    backend.terminate(iid, output="stopped")
    state = backend.wait_done(iid)
    assert state.runtime_status is WorkflowStatus.TERMINATED
    assert output(state) == "stopped"
    for child in children:
        backend.wait_until(child, status_is(WorkflowStatus.TERMINATED), "child terminated")
    assert backend.executions(iid) == [[
        START, "ExecutionStarted", "ChildWorkflowCreated", "ChildWorkflowCreated", DONE,
        START, "ExecutionTerminated", DONE, "ExecutionCompleted",
    ]]


def test_purge_reaches_children(backend: Backend) -> None:
    running = backend.schedule(wf.gated, input="Ada")
    backend.wait_until(running, status_is(WorkflowStatus.RUNNING), "running")
    with pytest.raises(InstanceNotTerminalError):
        backend.purge(running)
    iid = backend.schedule(wf.parent, input=["a", "b"])
    assert backend.wait_done(iid).runtime_status is WorkflowStatus.COMPLETED
    children = [f"{iid}:0001", f"{iid}:0002"]
    backend.purge(iid)
    assert backend.state(iid) is None
    for child in children:
        backend.wait_until(child, gone, "child purged")


def test_workflow_failure_details(backend: Backend) -> None:
    iid = backend.schedule(wf.broken, input="the order is invalid")
    state = backend.wait_done(iid)
    assert state.runtime_status is WorkflowStatus.FAILED
    failure = state.failure_details
    assert failure is not None
    assert (failure.error_type, failure.message) == ("ValueError", "the order is invalid")
    assert 'raise ValueError(message)' in (failure.stack_trace or "")
    assert backend.executions(iid) == [[
        START, "ExecutionStarted", "TaskScheduled", DONE,
        START, "TaskCompleted", DONE, "ExecutionCompleted",
    ]]


def test_activity_failure_details(backend: Backend) -> None:
    iid = backend.schedule(wf.activity_fails, input="kaboom")
    state = backend.wait_done(iid)
    assert state.runtime_status is WorkflowStatus.FAILED
    failure = state.failure_details
    assert failure is not None and failure.error_type == "TaskFailedError"
    assert "kaboom" in failure.message
    assert failure.inner is not None and failure.inner.error_type == "RuntimeError"


def test_custom_status(backend: Backend) -> None:
    iid = backend.schedule(wf.reporting)
    running = backend.wait_until(iid, lambda s: s is not None and s.serialized_custom_status is not None,
                                 "custom status set")
    assert running is not None and running.runtime_status is WorkflowStatus.RUNNING
    assert orjson.loads(running.serialized_custom_status or "null") == {"step": 1}
    backend.raise_event(iid, "next")
    state = backend.wait_done(iid)
    assert output(state) == "finished"
    # A string is kept as written, as Dapr's SDK does.
    assert state.serialized_custom_status == "done"


def test_unknown_workflow_name(backend: Backend) -> None:
    iid = backend.schedule("no_such_workflow", input=1)
    state = backend.wait_done(iid)
    assert state.runtime_status is WorkflowStatus.FAILED
    assert state.failure_details is not None
    assert state.failure_details.error_type == "UnknownWorkflowError"
    assert "'no_such_workflow'" in state.failure_details.message
    assert backend.executions(iid) == [[START, "ExecutionStarted", DONE, "ExecutionCompleted"]]


def test_non_determinism(backend: Backend) -> None:
    iid = backend.schedule(wf.fickle)
    state = backend.wait_done(iid)
    assert state.runtime_status is WorkflowStatus.FAILED
    assert state.failure_details is not None
    assert state.failure_details.error_type == "NonDeterminismError"
    assert "create_timer" in state.failure_details.message
    assert backend.executions(iid) == [[
        START, "ExecutionStarted", "TaskScheduled", DONE,
        START, "TaskCompleted", DONE, "ExecutionCompleted",
    ]]


def test_restart_refused_while_running(backend: Backend) -> None:
    iid = backend.schedule(wf.gated, input="first", instance_id=new_id("restart"))
    backend.wait_until(iid, status_is(WorkflowStatus.RUNNING), "running")
    with pytest.raises(InstanceExistsError):
        backend.schedule(wf.gated, input="second", instance_id=iid)
    backend.raise_event(iid, "go", "once")
    assert output(backend.wait_done(iid)) == "Hello, first once!"
    # Once finished, the ID may be used again: the new run replaces the old one.
    backend.schedule(wf.greeter, input="again", instance_id=iid)
    state = backend.wait_done(iid)
    assert (state.name, output(state)) == ("greeter", "Hello, again!")
    assert len(backend.executions(iid)) == 2


def test_child_failure_reaches_the_parent(backend: Backend) -> None:
    iid = backend.schedule(wf.failing_parent, input="bad child")
    state = backend.wait_done(iid)
    assert state.runtime_status is WorkflowStatus.FAILED
    failure = state.failure_details
    assert failure is not None and failure.error_type == "TaskFailedError"
    assert failure.inner is not None
    assert (failure.inner.error_type, failure.inner.message) == ("ValueError", "bad child")
    child = backend.state(f"{iid}:0001")
    assert child is not None and child.runtime_status is WorkflowStatus.FAILED
    assert child.failure_details is not None and child.failure_details.message == "bad child"
    assert backend.executions(iid) == [[
        START, "ExecutionStarted", "ChildWorkflowCreated", DONE,
        START, "ChildWorkflowFailed", DONE, "ExecutionCompleted",
    ]]


def test_terminate_and_purge_reach_grandchildren(backend: Backend) -> None:
    iid = backend.schedule(wf.nest, input=2)
    child, grandchild = f"{iid}:0001", f"{iid}:0001:0001"
    backend.wait_until(grandchild, status_is(WorkflowStatus.RUNNING), "grandchild running")
    backend.terminate(iid)
    for instance in (iid, child, grandchild):
        state = backend.wait_until(instance, status_is(WorkflowStatus.TERMINATED), "terminated")
        assert state is not None and state.failure_details is None and output(state) is None
    backend.purge(iid)
    for instance in (iid, child, grandchild):
        backend.wait_until(instance, gone, "purged")
    assert backend.executions(grandchild) == [[
        START, "ExecutionStarted", DONE,
        START, "ExecutionTerminated", DONE, "ExecutionCompleted",
    ]]


def test_terminate_without_recursion_leaves_children_running(backend: Backend) -> None:
    iid = backend.schedule(wf.nest, input=1, instance_id=new_id("lone"))
    child = f"{iid}:0001"
    backend.wait_until(child, status_is(WorkflowStatus.RUNNING), "child running")
    backend.terminate(iid, recursive=False)
    assert backend.wait_done(iid).runtime_status is WorkflowStatus.TERMINATED
    running = backend.state(child)
    assert running is not None and running.runtime_status is WorkflowStatus.RUNNING
    # As daprd: the ID is not free while a child of the finished run still runs.
    with pytest.raises(ChildrenRunningError) as refused:
        backend.schedule(wf.greeter, input="too soon", instance_id=iid)
    assert refused.value.child_id == child
    backend.raise_event(child, "finish", "late")
    assert output(backend.wait_done(child)) == "late"
    parent = backend.state(iid)
    assert parent is not None and parent.runtime_status is WorkflowStatus.TERMINATED


def test_scheduled_start(backend: Backend) -> None:
    iid = backend.schedule(wf.greeter, input="later", start_after=timedelta(seconds=1.5))
    pending = backend.state(iid)
    assert pending is not None and pending.runtime_status is WorkflowStatus.PENDING
    state = backend.wait_done(iid)
    assert output(state) == "Hello, later!"
    assert state.created_at is not None and state.last_updated_at is not None
    assert backend.executions(iid) == [[
        START, "ExecutionStarted", "TaskScheduled", DONE,
        START, "TaskCompleted", DONE, "ExecutionCompleted",
    ]]


def test_commands_sent_before_a_scheduled_start_are_kept_for_it(backend: Backend) -> None:
    # An event raised before the start reaches the run (durabletask keeps it in the inbox).
    iid = backend.schedule(wf.gated, input="Ada", start_after=timedelta(seconds=1.5))
    backend.raise_event(iid, "go", "early")
    pending = backend.state(iid)
    assert pending is not None and pending.runtime_status is WorkflowStatus.PENDING
    state = backend.wait_done(iid)
    assert (state.runtime_status, output(state)) == (WorkflowStatus.COMPLETED, "Hello, Ada early!")
    assert backend.executions(iid)[0][:4] == [START, "ExecutionStarted", "EventRaised", "TaskScheduled"]
    # A terminate ends it before it starts.
    later = backend.schedule(wf.gated, input="Bo", start_after=timedelta(hours=1))
    backend.terminate(later, output="never")
    ended = backend.wait_done(later)
    assert (ended.runtime_status, output(ended)) == (WorkflowStatus.TERMINATED, "never")


def test_terminate_while_suspended(backend: Backend) -> None:
    iid = backend.schedule(wf.gated, input="Ada")
    backend.wait_until(iid, status_is(WorkflowStatus.RUNNING), "running")
    backend.suspend(iid)
    backend.terminate(iid, output="gone")
    state = backend.wait_done(iid)
    assert (state.runtime_status, output(state)) == (WorkflowStatus.TERMINATED, "gone")


def test_commands_for_an_unknown_instance(backend: Backend) -> None:
    iid = new_id("nobody")
    commands: list[Callable[[], None]] = [
        lambda: backend.raise_event(iid, "go"), lambda: backend.suspend(iid), lambda: backend.resume(iid),
        lambda: backend.terminate(iid), lambda: backend.purge(iid),
    ]
    for command in commands:
        with pytest.raises(InstanceNotFoundError):
            command()
    assert backend.state(iid) is None


def test_a_purged_id_is_free_again(backend: Backend) -> None:
    iid = backend.schedule(wf.greeter, input="one", instance_id=new_id("reuse"))
    backend.wait_done(iid)
    backend.purge(iid)
    assert backend.state(iid) is None
    backend.schedule(wf.greeter, input="two", instance_id=iid)
    assert output(backend.wait_done(iid)) == "Hello, two!"
    assert len(backend.executions(iid)) == 2


def test_events_are_first_in_first_out_by_name(backend: Backend) -> None:
    iid = backend.schedule(wf.listener, input=["A", "a", "b"])
    for name, data in (("b", 3), ("a", 1), ("A", 2)):
        backend.raise_event(iid, name, data)
    # Names match case-insensitively; events of one name are taken in the order they came.
    assert output(backend.wait_done(iid)) == [1, 2, 3]


def test_commands_for_a_finished_instance_change_nothing(backend: Backend) -> None:
    iid = backend.schedule(wf.greeter, input="x")
    before = backend.wait_done(iid)
    backend.terminate(iid, output="late")
    backend.suspend(iid)
    backend.resume(iid)
    backend.raise_event(iid, "go")
    after = backend.state(iid)
    assert after is not None
    assert (after.runtime_status, output(after)) == (WorkflowStatus.COMPLETED, "Hello, x!")
    assert after.last_updated_at == before.last_updated_at
    assert len(backend.executions(iid)[0]) == 8


def test_unknown_activity_fails_the_task(backend: Backend) -> None:
    iid = backend.schedule(wf.missing_activity)
    state = backend.wait_done(iid)
    failure = state.failure_details
    assert failure is not None and failure.error_type == "TaskFailedError"
    assert failure.inner is not None and failure.inner.error_type == "UnknownActivityError"
    assert "'no_such_activity'" in failure.inner.message


# The payload limit (`HEADRACE_MAX_PAYLOAD_BYTES`, 1 MiB by default) holds on both backends.


def test_payload_limit_on_client_payloads(backend: Backend) -> None:
    too_big = "x" * (2 * MiB)
    with pytest.raises(PayloadTooLargeError):
        backend.schedule(wf.greeter, input=too_big)
    iid = backend.schedule(wf.listener, input=["e"])
    with pytest.raises(PayloadTooLargeError):
        backend.raise_event(iid, "e", too_big)
    backend.raise_event(iid, "e", "small")
    assert output(backend.wait_done(iid)) == ["small"]


def test_payload_limit_on_activity_results(backend: Backend) -> None:
    iid = backend.schedule(wf.big_result, input=2 * MiB)
    # The worker reports a result over the limit as a failed task, which the workflow may catch.
    assert output(backend.wait_done(iid)) == {"error_type": "PayloadTooLargeError"}


def test_versioned_workflow_runs_the_latest_version_and_its_patches(backend: Backend) -> None:
    iid = backend.schedule("versioned")
    backend.wait_until(iid, status_is(WorkflowStatus.RUNNING), "running")
    backend.raise_event(iid, "go")
    state = backend.wait_done(iid)
    # The second turn replays the first (or continues it): the patch answer is the recorded one.
    assert state.runtime_status is WorkflowStatus.COMPLETED and output(state) == ["v2", True, True]
