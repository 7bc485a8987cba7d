"""One sample value of every event, action and message type, with every nested type filled in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import MappingProxyType

from engine.core import actions as act
from engine.core import commands as cmd
from engine.core import events as ev
from engine.core.state import InstanceState
from engine.core.values import FailureDetails, ParentInstance, RuntimeStatus

T = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)
LATER = T + timedelta(minutes=5)

FAILURE = FailureDetails(
    error_type="TaskFailedError",
    message="Activity task 'charge' #3 failed: card declined",
    stack_trace=(
        'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: card declined\n'
    ),
    inner=FailureDetails(error_type="ValueError", message="card declined", non_retriable=True),
)
PARENT = ParentInstance(
    instance_id="order-1", name="order_wf", task_scheduled_id=4, execution_id="exec-1"
)
CARRIED = (
    ev.EventRaised(timestamp=T, seq=7, name="approval", input='{"ok":true}'),
    ev.EventRaised(timestamp=LATER, seq=9, name="Payment", input=None),
)

EVENTS: list[ev.HistoryEvent] = [
    ev.WorkflowStarted(timestamp=T, seq=0),
    ev.WorkflowCompleted(timestamp=T, seq=3, custom_status='"step 2"'),
    ev.ExecutionStarted(
        timestamp=T,
        seq=1,
        name="order_wf",
        instance_id="order-1:0004",
        execution_id="exec-2",
        input='{"id":1}',
        parent=PARENT,
        scheduled_start=LATER,
    ),
    ev.ExecutionCompleted(
        timestamp=T, seq=10, event_id=5, status=RuntimeStatus.FAILED, result=None, failure=FAILURE
    ),
    ev.ExecutionTerminated(timestamp=T, seq=4, output='"stop"', recurse=False),
    ev.ExecutionSuspended(timestamp=T, seq=4, reason="maintenance"),
    ev.ExecutionResumed(timestamp=T, seq=5, reason=None),
    ev.ContinuedAsNew(timestamp=T, seq=8, input="[1,2]", carryover_events=2),
    ev.TaskScheduled(
        timestamp=T, seq=2, event_id=0, name="charge", input='"x"', task_execution_id="te-1"
    ),
    ev.TaskCompleted(
        timestamp=T, seq=5, task_scheduled_id=0, result="null", task_execution_id="te-1"
    ),
    ev.TaskFailed(
        timestamp=T, seq=5, task_scheduled_id=0, failure=FAILURE, task_execution_id="te-1"
    ),
    ev.TimerCreated(timestamp=T, seq=2, event_id=1, fire_at=LATER, origin="external_event"),
    ev.TimerFired(timestamp=LATER, seq=6, timer_id=1, fire_at=LATER),
    ev.ChildWorkflowCreated(
        timestamp=T, seq=2, event_id=2, instance_id="order-1:0002", name="ship", input="{}"
    ),
    ev.ChildWorkflowCompleted(timestamp=T, seq=6, task_scheduled_id=2, result='"shipped"'),
    ev.ChildWorkflowFailed(timestamp=T, seq=6, task_scheduled_id=2, failure=FAILURE),
    ev.EventRaised(timestamp=T, seq=6, name="Approval", input='{"by":"ada"}'),
    ev.EventSent(timestamp=T, seq=6, event_id=5, instance_id="shipping-1", name="Ready", input='{"n":1}'),
]

ACTIONS: list[act.Action] = [
    act.ScheduleTask(id=0, name="charge", input='{"amount":5}', task_execution_id="te-1"),
    act.CreateTimer(id=1, fire_at=LATER, origin="retry"),
    act.CreateChildWorkflow(id=2, instance_id="order-1:0002", name="ship", input=None),
    act.SendEvent(id=4, instance_id="shipping-1", name="Ready", input=None),
    act.CompleteWorkflow(
        id=3,
        status=RuntimeStatus.CONTINUED_AS_NEW,
        result='{"n":2}',
        failure=FAILURE,
        carryover_events=CARRIED,
    ),
]

MESSAGES: list[object] = [
    cmd.StartWorkflow(
        instance_id="order-1:0002",
        command_id="c1",
        name="ship",
        input='"in"',
        scheduled_start=LATER,
        parent=PARENT,
    ),
    cmd.RaiseEvent(instance_id="order-1", command_id="c2", name="approval", input="true"),
    cmd.SuspendWorkflow(instance_id="order-1", command_id="c3", reason="why"),
    cmd.ResumeWorkflow(instance_id="order-1", command_id="c4", reason=None),
    cmd.TerminateWorkflow(instance_id="order-1", command_id="c5", output='"out"', recursive=False),
    cmd.PurgeWorkflow(instance_id="order-1", command_id="c6", recursive=True),
    cmd.ActivityResult(
        instance_id="order-1", execution_id="exec-1", task_id=3, result=None, failure=FAILURE
    ),
    cmd.TimerFiring(instance_id="order-1", execution_id="exec-1", timer_id=1, fire_at=LATER),
    cmd.ChildResult(
        instance_id="order-1",
        execution_id="exec-1",
        task_id=2,
        child_instance_id="order-1:0002",
        result='"r"',
        failure=None,
    ),
    cmd.ActivityWorkItem(
        instance_id="order-1",
        execution_id="exec-1",
        task_id=3,
        name="charge",
        input='{"amount":5}',
        task_execution_id="te-1",
    ),
]

#: A status record's value with every field filled in (the status topic's one type).
STATES: list[InstanceState] = [
    InstanceState(
        instance_id="order-1:0004",
        name="order_wf",
        status=RuntimeStatus.RUNNING,
        execution_id="exec-2",
        run_id="exec-1",
        input='{"id":1}',
        output=None,
        custom_status='"step 2"',
        failure=FAILURE,
        created_at=T,
        last_updated_at=LATER,
        completed_at=None,
        parent=PARENT,
        history_length=12,
        generation=1,
        pending_tasks=MappingProxyType({0: "charge", 3: "ship"}),
        pending_timers=MappingProxyType({1: LATER}),
        pending_children=MappingProxyType({2: "order-1:0004:0003"}),
        buffered_events=1,
        children=("order-1:0004:0003",),
        scheduled_start=T,
        recent_commands=("c-1", "c-2"),
        unfinished_children=MappingProxyType({5: "order-1:0004:0006"}),
    ),
]
