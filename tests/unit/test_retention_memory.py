"""Dapr 1.17's state retention policy in the in-memory environment (`engine.testing`, fake clock):
the same orchestrator purge the engine applies, due per terminal status, recursive, cancelled by a restart."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from engine import DaprWorkflowContext, WorkflowRuntime
from engine.core.retention import RetentionPolicy
from engine.core.values import RuntimeStatus
from engine.testing import WorkflowTestEnvironment

wfr = WorkflowRuntime()


@wfr.workflow(name="leaf")
def leaf(ctx: DaprWorkflowContext, value: int) -> Any:
    return value * 2


@wfr.workflow(name="parent")
def parent(ctx: DaprWorkflowContext, value: int) -> Any:
    doubled = yield ctx.call_child_workflow(leaf, input=value, instance_id=f"{ctx.instance_id}-child")
    return doubled + 1


@wfr.workflow(name="broken")
def broken(ctx: DaprWorkflowContext, _: object) -> Any:
    raise ValueError("always")


@wfr.workflow(name="waiter")
def waiter(ctx: DaprWorkflowContext, _: object) -> Any:
    return (yield ctx.wait_for_external_event("go"))


POLICY = RetentionPolicy.parse(any_terminal="1h", completed="10m", failed="2h")


def _env() -> WorkflowTestEnvironment:
    return WorkflowTestEnvironment(wfr, retention=POLICY)


def test_a_completed_instance_and_its_child_are_purged_when_their_time_is_up() -> None:
    env = _env()
    iid = env.schedule_new_workflow(parent, input=4, instance_id="p")
    assert env.wait_for_workflow_completion(iid).serialized_output == "9"
    finished = env.states[iid].completed_at
    assert finished is not None
    env.advance(timedelta(minutes=10) - timedelta(seconds=1))
    assert env.get_workflow_state(iid) is not None and env.get_workflow_state("p-child") is not None
    env.advance(timedelta(seconds=1))
    assert env.clock.now == finished + timedelta(minutes=10)
    assert env.get_workflow_state(iid) is None
    assert env.get_workflow_state("p-child") is None


@pytest.mark.parametrize(("status", "keep"), [(RuntimeStatus.FAILED, timedelta(hours=2)),
                                              (RuntimeStatus.TERMINATED, timedelta(hours=1))])
def test_each_terminal_status_keeps_its_own_time(status: RuntimeStatus, keep: timedelta) -> None:
    env = _env()
    if status is RuntimeStatus.FAILED:
        iid = env.schedule_new_workflow(broken, instance_id="x")
        env.run()
    else:
        iid = env.schedule_new_workflow(waiter, instance_id="x")
        env.run()
        env.terminate_workflow(iid)
        env.run()
    assert env.states[iid].status is status
    env.advance(keep - timedelta(seconds=1))
    assert env.get_workflow_state(iid) is not None
    env.advance(timedelta(seconds=1))
    assert env.get_workflow_state(iid) is None


def test_a_restart_of_the_id_cancels_the_purge_of_the_run_before() -> None:
    env = _env()
    iid = env.schedule_new_workflow(leaf, input=1, instance_id="again")
    env.run()
    first = env.states[iid].execution_id
    env.advance(timedelta(minutes=5))
    # A finished ID may be started again (Dapr's default reuse policy): a new run, a new clock.
    env.schedule_new_workflow(leaf, input=2, instance_id=iid)
    env.run()
    second = env.states[iid]
    assert second.execution_id != first and second.status is RuntimeStatus.COMPLETED
    env.advance(timedelta(minutes=10) - timedelta(seconds=1))  # past the first run's due, not the second's
    assert env.states.get(iid) == second
    env.advance(timedelta(seconds=1))
    assert env.get_workflow_state(iid) is None


def test_without_a_policy_nothing_is_purged() -> None:
    env = WorkflowTestEnvironment(wfr)
    iid = env.schedule_new_workflow(leaf, input=1)
    env.run()
    env.advance(timedelta(days=3650))
    assert env.get_workflow_state(iid) is not None
