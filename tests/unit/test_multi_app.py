"""Calls across apps (Dapr 1.16's multi-app workflows): the core records and routes app IDs as
data (`engine.core.apps`), and the in-memory environment runs several apps side by side."""

from __future__ import annotations

from datetime import timedelta

import pytest
from support import T0, counter_ids

from engine import RetryPolicy, TaskFailedError, WorkflowRuntime, WorkflowStatus
from engine.core import commands as cmd
from engine.core import events as ev
from engine.core.apps import AppMessage, ChildApp, other_app
from engine.core.orchestrator import Orchestrator
from engine.core.state import InstanceState, fold_all
from engine.core.values import ParentInstance
from engine.errors import DecodeError, WorkflowError
from engine.testing import WorkflowTestEnvironment

# -- app "orders": workflows that call into app "billing" --------------------------------------

orders = WorkflowRuntime()
billing = WorkflowRuntime()
CHARGES: list[int] = []


@orders.workflow
def checkout(ctx, amount):
    receipt = yield ctx.call_activity("charge", input=amount, app_id="billing")
    return {"receipt": receipt}


@orders.workflow
def checkout_retried(ctx, amount):
    policy = RetryPolicy(max_number_of_attempts=3, first_retry_interval=timedelta(seconds=1))
    try:
        return (yield ctx.call_activity("decline", input=amount, app_id="billing", retry_policy=policy))
    except TaskFailedError as exc:
        return f"declined: {exc.details.message}"


@orders.workflow
def invoice_order(ctx, amount):
    try:
        return (yield ctx.call_child_workflow("invoice", input=amount, app_id="billing"))
    except TaskFailedError as exc:
        return f"failed: {exc.details.error_type}"


@orders.workflow
def long_order(ctx, _):
    yield ctx.call_child_workflow("audit", instance_id="audit-1", app_id="billing")


@orders.workflow
def local_named(ctx, amount):
    return (yield ctx.call_activity("pack", input=amount, app_id="orders"))


@orders.activity
def pack(ctx, amount):
    return amount + 1


@billing.activity
def charge(ctx, amount):
    CHARGES.append(amount)
    return f"r-{amount}"


@billing.activity
def decline(ctx, amount):
    CHARGES.append(amount)
    raise ValueError(f"card declined for {amount}")


@billing.workflow
def invoice(ctx, amount):
    if amount < 0:
        raise ValueError("negative invoice")
    return (yield ctx.call_activity(charge, input=amount))


@billing.workflow
def audit(ctx, _):
    yield ctx.wait_for_external_event("never")


@pytest.fixture
def apps():
    CHARGES.clear()
    a = WorkflowTestEnvironment(orders, app_id="orders", ids=counter_ids("o-"), start=T0)
    b = a.add_app("billing", billing)
    return a, b


# -- the core: app IDs are data in actions, events, items and messages ----------------------


def test_call_records_the_target_app_and_sends_the_item_with_a_reply_app():
    orchestrator = Orchestrator(orders.registry.get_workflow, app_id="orders")
    start = cmd.StartWorkflow(instance_id="i", command_id="c", name="checkout", input="5")
    outcome = orchestrator.handle(None, start, T0, lambda: [])
    scheduled = [e for e in outcome.events if isinstance(e, ev.TaskScheduled)]
    assert [(e.name, e.app_id) for e in scheduled] == [("charge", "billing")]
    [item] = outcome.work_items
    assert (item.app_id, item.reply_app_id) == ("billing", "orders")


def test_naming_the_own_app_is_a_local_call():
    orchestrator = Orchestrator(orders.registry.get_workflow, app_id="orders")
    start = cmd.StartWorkflow(instance_id="i", command_id="c", name="local_named", input="5")
    outcome = orchestrator.handle(None, start, T0, lambda: [])
    [item] = outcome.work_items
    assert (item.app_id, item.reply_app_id) == (None, None)
    # The event keeps what the code said, so a replay sees the same call.
    assert [e.app_id for e in outcome.events if isinstance(e, ev.TaskScheduled)] == ["orders"]
    assert other_app("orders", "orders") is None and other_app(None, "orders") is None
    assert other_app("billing", "orders") == "billing"


def test_child_start_goes_to_the_other_app_with_the_parent_app_and_the_state_remembers_it():
    orchestrator = Orchestrator(orders.registry.get_workflow, app_id="orders")
    start = cmd.StartWorkflow(instance_id="p", command_id="c", name="long_order")
    outcome = orchestrator.handle(None, start, T0, lambda: [])
    assert outcome.messages == []
    [sent] = outcome.app_messages
    assert sent.app_id == "billing" and isinstance(sent.message, cmd.StartWorkflow)
    assert sent.message.parent is not None and sent.message.parent.app_id == "orders"
    assert outcome.state is not None and outcome.state.child_apps == (ChildApp("audit-1", "billing"),)
    created = next(e for e in outcome.events if isinstance(e, ev.ChildWorkflowCreated))
    assert created.app_id == "billing"

    # A recursive terminate reaches the child in its app.
    history = list(outcome.events)
    terminate = cmd.TerminateWorkflow(instance_id="p", command_id="t")
    ended = orchestrator.handle(outcome.state, terminate, T0, lambda: history)
    assert [(m.app_id, type(m.message).__name__, m.message.instance_id) for m in ended.app_messages] == [
        ("billing", "TerminateWorkflow", "audit-1")]
    # And so does a recursive purge of the finished parent.
    purged = orchestrator.handle(ended.state, cmd.PurgeWorkflow(instance_id="p", command_id="u"), T0, lambda: [])
    assert [(m.app_id, type(m.message).__name__) for m in purged.app_messages] == [("billing", "PurgeWorkflow")]


def test_child_end_goes_back_to_the_parent_app():
    orchestrator = Orchestrator(billing.registry.get_workflow, app_id="billing")
    parent = ParentInstance(instance_id="p", name="invoice_order", task_scheduled_id=0, execution_id="e",
                            app_id="orders")
    start = cmd.StartWorkflow(instance_id="p:0001", command_id="e:0", name="invoice", input="-1", parent=parent)
    outcome = orchestrator.handle(None, start, T0, lambda: [])
    assert outcome.messages == []
    [sent] = outcome.app_messages
    assert sent.app_id == "orders" and isinstance(sent.message, cmd.ChildResult)
    assert sent.message.failure is not None and sent.message.failure.error_type == "ValueError"


def test_replay_of_a_cross_app_history_is_deterministic_and_folds_the_same_state():
    env = WorkflowTestEnvironment(orders, app_id="orders", ids=counter_ids("r-"), start=T0, cache_size=0)
    env.add_app("billing", billing)
    iid = env.schedule_new_workflow(long_order)
    env.run()
    history = env.history(iid)
    state = fold_all(InstanceState(instance_id=iid), history)
    assert state.child_apps == (ChildApp("audit-1", "billing"),)
    # cache_size=0 replays every turn from history: a raise reaches the replayed code.
    env.raise_workflow_event(iid, "x")
    env.run()
    assert env.get_workflow_state(iid).runtime_status is WorkflowStatus.RUNNING


def test_a_bad_app_id_fails_in_the_code_that_named_it():
    wfr = WorkflowRuntime()

    @wfr.workflow
    def bad(ctx, _):
        yield ctx.call_activity("x", app_id="no spaces allowed")

    env = WorkflowTestEnvironment(wfr, start=T0)
    state = env.wait_for_workflow_completion(env.schedule_new_workflow(bad))
    assert state.runtime_status is WorkflowStatus.FAILED
    assert "app_id must be letters" in state.failure_details.message


def test_a_parent_app_id_that_is_no_app_id_is_refused_at_the_edge():
    parent = ParentInstance(instance_id="p", name="w", task_scheduled_id=0, execution_id="e",
                            app_id="../../etc")
    with pytest.raises(DecodeError, match=r"parent\.app_id"):
        cmd.check_message(cmd.StartWorkflow(instance_id="c", command_id="x", name="w", parent=parent))


def test_app_message_is_a_value():
    message = cmd.TerminateWorkflow(instance_id="c", command_id="x")
    assert AppMessage("b", message) == AppMessage("b", message)


# -- the in-memory environment: apps side by side --------------------------------------------


def test_activity_of_another_app_runs_there_and_its_result_comes_back(apps):
    a, b = apps
    iid = a.schedule_new_workflow(checkout, input=7)
    state = a.wait_for_workflow_completion(iid)
    assert state.runtime_status is WorkflowStatus.COMPLETED
    assert state.serialized_output == '{"receipt": "r-7"}'
    assert b.activity_runs["charge"] == 1 and a.activity_runs["charge"] == 0


def test_failed_activity_of_another_app_is_retried_by_the_caller_policy(apps):
    a, b = apps
    iid = a.schedule_new_workflow(checkout_retried, input=3)
    state = a.wait_for_workflow_completion(iid)
    assert state.runtime_status is WorkflowStatus.COMPLETED
    assert state.serialized_output == '"declined: card declined for 3"'
    assert b.activity_runs["decline"] == 3
    timers = [e for e in a.history(iid) if isinstance(e, ev.TimerCreated)]
    assert [t.origin for t in timers] == ["retry", "retry"]
    assert all(e.app_id == "billing" for e in a.history(iid) if isinstance(e, ev.TaskScheduled))


def test_child_of_another_app_returns_its_result_and_its_failure(apps):
    a, b = apps
    ok = a.schedule_new_workflow(invoice_order, input=4)
    bad = a.schedule_new_workflow(invoice_order, input=-4)
    assert a.wait_for_workflow_completion(ok).serialized_output == '"r-4"'
    assert a.wait_for_workflow_completion(bad).serialized_output == '"failed: ValueError"'
    # The children ran in app "billing" (their states are there, not in "orders").
    assert {f"{ok}:0001", f"{bad}:0001"} <= set(b.states) and not {f"{ok}:0001"} & set(a.states)
    assert b.states[f"{ok}:0001"].parent.app_id == "orders"


def test_recursive_terminate_and_purge_reach_the_child_in_its_app(apps):
    a, b = apps
    iid = a.schedule_new_workflow(long_order)
    a.run()
    assert b.get_workflow_state("audit-1").runtime_status is WorkflowStatus.RUNNING
    a.terminate_workflow(iid)
    a.run()
    assert a.get_workflow_state(iid).runtime_status is WorkflowStatus.TERMINATED
    assert b.get_workflow_state("audit-1").runtime_status is WorkflowStatus.TERMINATED
    a.purge_workflow(iid)
    a.run()
    assert a.get_workflow_state(iid) is None and b.get_workflow_state("audit-1") is None


def test_work_for_an_app_not_added_waits_for_it():
    CHARGES.clear()
    a = WorkflowTestEnvironment(orders, app_id="orders", start=T0)
    iid = a.schedule_new_workflow(checkout, input=9)
    a.advance(timedelta(hours=1))
    assert a.get_workflow_state(iid).runtime_status is WorkflowStatus.RUNNING  # waiting, not failed
    with pytest.raises(WorkflowError, match="not added to the test environment"):
        a.wait_for_workflow_completion(iid, max_time=timedelta(minutes=1))
    a.add_app("billing", billing)
    assert a.wait_for_workflow_completion(iid).serialized_output == '{"receipt": "r-9"}'
    assert CHARGES == [9]
