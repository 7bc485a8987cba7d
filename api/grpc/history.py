"""Histories and turns in durabletask's protocol: our history events as `HistoryEvent` protobufs
(orchestrator work items and `GetInstanceHistory`), and an app's `WorkflowResponse` as the core's
`WorkflowAnswer` (`engine.core.remote`).

Our events already follow durabletask's `HistoryEvent` with Dapr's names (`engine/core/events.py`),
so each maps to one message of github.com/dapr/durabletask-protobuf `history_events.proto`. Two
details matter to the SDKs' replay (dapr/python-sdk `ext/dapr-ext-workflow/.../_durabletask/worker.py`):
- a work item carries only the events the executor handles: `WorkflowCompleted` markers (and the
  end of a run, which a turn never contains) are left out, as the Python executor raises on event
  types it does not know;
- an indefinite `wait_for_external_event` creates a timer due at the sentinel
  9999-12-31T23:59:59.999999999Z, which the SDK recognises by its exact nanoseconds; a `datetime`
  holds microseconds, so a timer recorded at the last microsecond of 9999 is given back as the sentinel.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime

from google.protobuf import timestamp_pb2, wrappers_pb2

from engine.core import events as ev
from engine.core.actions import CompleteWorkflow, CreateChildWorkflow, CreateTimer, ScheduleTask, SendEvent
from engine.core.propagation import PropagationScope
from engine.core.remote import WorkflowAnswer, WorkflowWorkItem
from engine.core.values import FailureDetails, RuntimeStatus

from .mapping import failure_details
from .protos import history_events_pb2 as hpb
from .protos import orchestration_pb2 as opb
from .protos import orchestrator_actions_pb2 as apb
from .protos import orchestrator_service_pb2 as pb

__all__ = ["answer_from_response", "failure_from_proto", "history_event", "workflow_request"]

log = logging.getLogger(__name__)

#: The SDK's `OPTIONAL_TIMER_FIRE_AT` (9999-12-31T23:59:59.999999999Z), seconds since the epoch.
_SENTINEL_SECONDS = 253402300799
_SENTINEL = timestamp_pb2.Timestamp(seconds=_SENTINEL_SECONDS, nanos=999_999_999)

_STATUS: dict[RuntimeStatus, int] = {
    RuntimeStatus.COMPLETED: opb.ORCHESTRATION_STATUS_COMPLETED,
    RuntimeStatus.FAILED: opb.ORCHESTRATION_STATUS_FAILED,
    RuntimeStatus.TERMINATED: opb.ORCHESTRATION_STATUS_TERMINATED,
    RuntimeStatus.CANCELED: opb.ORCHESTRATION_STATUS_CANCELED,
    RuntimeStatus.CONTINUED_AS_NEW: opb.ORCHESTRATION_STATUS_CONTINUED_AS_NEW,
}
_FROM_STATUS = {v: k for k, v in _STATUS.items()}

#: Our timer origins (`TimerCreated.origin`) and durabletask's `origin` oneof.
_ORIGIN_FIELD = {"timer": "createTimer", "external_event": "externalEvent", "retry": "activityRetry"}
_FROM_ORIGIN = {"createTimer": "timer", "externalEvent": "external_event", "activityRetry": "retry",
                "childWorkflowRetry": "retry"}

#: Events a turn's executor does not take (see the module docstring).
_NOT_FOR_TURNS = (ev.WorkflowCompleted, ev.ExecutionCompleted, ev.ContinuedAsNew)


def _text(value: str | None) -> wrappers_pb2.StringValue | None:
    return None if value is None else wrappers_pb2.StringValue(value=value)


def _time(value: datetime) -> timestamp_pb2.Timestamp:
    if value.year == 9999 and (value.month, value.day, value.hour, value.minute, value.second) == (12, 31, 23, 59, 59):
        return timestamp_pb2.Timestamp(seconds=_SENTINEL_SECONDS, nanos=_SENTINEL.nanos)
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def _from_time(stamp: timestamp_pb2.Timestamp) -> datetime:
    if stamp.seconds >= _SENTINEL_SECONDS:
        return datetime.max.replace(tzinfo=UTC)
    return stamp.ToDatetime(tzinfo=UTC)


def history_event(event: ev.HistoryEvent) -> hpb.HistoryEvent:
    """One of our history events as durabletask's `HistoryEvent`."""
    out = hpb.HistoryEvent(eventId=event.event_id, timestamp=_time(event.timestamp))
    if isinstance(event, ev.WorkflowStarted):
        if event.patches:
            out.workflowStarted.version.CopyFrom(opb.WorkflowVersion(patches=event.patches))
        else:
            out.workflowStarted.SetInParent()
    elif isinstance(event, ev.WorkflowCompleted):
        out.workflowCompleted.SetInParent()
    elif isinstance(event, ev.ExecutionStarted):
        started = out.executionStarted
        started.name = event.name
        if event.input is not None:
            started.input.value = event.input
        started.workflowInstance.instanceId = event.instance_id
        started.workflowInstance.executionId.value = event.execution_id
        if event.workflow_version is not None:
            started.version.value = event.workflow_version
        if event.parent is not None:
            started.parentInstance.taskScheduledId = event.parent.task_scheduled_id
            started.parentInstance.name.value = event.parent.name
            started.parentInstance.workflowInstance.instanceId = event.parent.instance_id
            started.parentInstance.workflowInstance.executionId.value = event.parent.execution_id
        if event.scheduled_start is not None:
            started.scheduledStartTimestamp.CopyFrom(_time(event.scheduled_start))
    elif isinstance(event, ev.ExecutionCompleted):
        out.executionCompleted.workflowStatus = _STATUS[event.status]  # type: ignore[assignment]
        if event.result is not None:
            out.executionCompleted.result.value = event.result
        if event.failure is not None:
            out.executionCompleted.failureDetails.CopyFrom(failure_details(event.failure))
    elif isinstance(event, ev.ExecutionTerminated):
        out.executionTerminated.recurse = event.recurse
        if event.output is not None:
            out.executionTerminated.input.value = event.output
    elif isinstance(event, ev.ExecutionSuspended):
        out.executionSuspended.SetInParent()
        if event.reason is not None:
            out.executionSuspended.input.value = event.reason
    elif isinstance(event, ev.ExecutionResumed):
        out.executionResumed.SetInParent()
        if event.reason is not None:
            out.executionResumed.input.value = event.reason
    elif isinstance(event, ev.ContinuedAsNew):
        out.continueAsNew.SetInParent()
        if event.input is not None:
            out.continueAsNew.input.value = event.input
    elif isinstance(event, ev.TaskScheduled):
        out.taskScheduled.name = event.name
        out.taskScheduled.taskExecutionId = event.task_execution_id
        if event.input is not None:
            out.taskScheduled.input.value = event.input
    elif isinstance(event, ev.TaskCompleted):
        out.taskCompleted.taskScheduledId = event.task_scheduled_id
        out.taskCompleted.taskExecutionId = event.task_execution_id
        if event.result is not None:
            out.taskCompleted.result.value = event.result
    elif isinstance(event, ev.TaskFailed):
        out.taskFailed.taskScheduledId = event.task_scheduled_id
        out.taskFailed.taskExecutionId = event.task_execution_id
        out.taskFailed.failureDetails.CopyFrom(failure_details(event.failure))
    elif isinstance(event, ev.TimerCreated):
        out.timerCreated.fireAt.CopyFrom(_time(event.fire_at))
        getattr(out.timerCreated, _ORIGIN_FIELD.get(event.origin, "createTimer")).SetInParent()
    elif isinstance(event, ev.TimerFired):
        out.timerFired.timerId = event.timer_id
        out.timerFired.fireAt.CopyFrom(_time(event.fire_at))
    elif isinstance(event, ev.ChildWorkflowCreated):
        out.childWorkflowInstanceCreated.instanceId = event.instance_id
        out.childWorkflowInstanceCreated.name = event.name
        if event.input is not None:
            out.childWorkflowInstanceCreated.input.value = event.input
    elif isinstance(event, ev.ChildWorkflowCompleted):
        out.childWorkflowInstanceCompleted.taskScheduledId = event.task_scheduled_id
        if event.result is not None:
            out.childWorkflowInstanceCompleted.result.value = event.result
    elif isinstance(event, ev.ChildWorkflowFailed):
        out.childWorkflowInstanceFailed.taskScheduledId = event.task_scheduled_id
        out.childWorkflowInstanceFailed.failureDetails.CopyFrom(failure_details(event.failure))
    elif isinstance(event, ev.EventRaised):
        out.eventRaised.name = event.name
        if event.input is not None:
            out.eventRaised.input.value = event.input
    elif isinstance(event, ev.EventSent):
        out.eventSent.instanceId = event.instance_id
        out.eventSent.name = event.name
        if event.input is not None:
            out.eventSent.input.value = event.input
    else:  # a new event type must be mapped here before it reaches an app
        raise TypeError(f"no durabletask HistoryEvent for {type(event).__name__}")
    return out


def workflow_request(item: WorkflowWorkItem) -> pb.WorkflowRequest:
    """A turn for an app: the past events replayed, the new ones run."""
    events = _patches_where_met(item.events)

    def turn_events(part: Iterable[ev.HistoryEvent]) -> list[hpb.HistoryEvent]:
        return [history_event(e) for e in part if not isinstance(e, _NOT_FOR_TURNS)]

    request = pb.WorkflowRequest(
        instanceId=item.instance_id,
        executionId=wrappers_pb2.StringValue(value=item.execution_id),
        pastEvents=turn_events(events[:item.new_from]),
        newEvents=turn_events(events[item.new_from:]),
    )
    first = (request.pastEvents or request.newEvents)[0] if request.pastEvents or request.newEvents else None
    if item.workflow_version is not None and first is not None and first.HasField("workflowStarted"):
        # The SDK runs the version named on a `WorkflowStarted` it has seen: the run's first one.
        first.workflowStarted.version.name = item.workflow_version
    return request


def _patches_where_met(events: Sequence[ev.HistoryEvent]) -> Sequence[ev.HistoryEvent]:
    """The history with every patch an answer recorded also on the execution's first `WorkflowStarted`.

    The app meets a patch live (`is_patched` is True then) somewhere in the new events of the turn
    it answers; its answer's marker comes after those events. A replay answers True only for
    patches of the `WorkflowStarted` events it has processed, and caches the first answer for the
    whole run (dapr/python-sdk `_durabletask/worker.py`, `_is_patched`): so the code's first call
    for a patch is in the turn that recorded it, never before (an earlier call would have been
    answered, and recorded, then), and giving the patch from the first marker on changes no earlier
    decision while it answers True where the code met it."""
    patches = tuple(dict.fromkeys(p for e in events if isinstance(e, ev.WorkflowStarted) for p in e.patches))
    first = next((i for i, e in enumerate(events) if isinstance(e, ev.WorkflowStarted)), None)
    if not patches or first is None:
        return events
    out = list(events)
    marker = out[first]
    assert isinstance(marker, ev.WorkflowStarted)
    out[first] = replace(marker, patches=tuple(dict.fromkeys((*marker.patches, *patches))))
    return out


def failure_from_proto(details: opb.TaskFailureDetails) -> FailureDetails:
    return FailureDetails(
        error_type=details.errorType or "Exception",
        message=details.errorMessage,
        stack_trace=details.stackTrace.value if details.HasField("stackTrace") else None,
        inner=failure_from_proto(details.innerFailure) if details.HasField("innerFailure") else None,
        non_retriable=details.isNonRetriable,
    )


def _value(message: object, field: str) -> str | None:
    return str(getattr(message, field).value) if message.HasField(field) else None  # type: ignore[attr-defined]


def _completion(action: apb.WorkflowAction) -> CompleteWorkflow | None:
    done = action.completeWorkflow
    status = _FROM_STATUS.get(done.workflowStatus)
    if status is None:
        log.warning("a connected app completed a workflow with status %d; taken as FAILED", done.workflowStatus)
        status = RuntimeStatus.FAILED
    failure = failure_from_proto(done.failureDetails) if done.HasField("failureDetails") else None
    if status is RuntimeStatus.FAILED and failure is None:
        failure = FailureDetails(error_type="WorkflowFailed", message=_value(done, "details") or "the workflow failed")
    carried = tuple(
        ev.EventRaised(timestamp=_from_time(e.timestamp), name=e.eventRaised.name,
                       input=_value(e.eventRaised, "input"))
        for e in done.carryoverEvents if e.HasField("eventRaised")
    )
    return CompleteWorkflow(id=action.id, status=status, result=_value(done, "result"), failure=failure,
                            carryover_events=carried)


def _target_app(action: apb.WorkflowAction) -> str | None:
    """The app a call goes to (`call_activity(..., app_id=)`: the action's router), as the code
    named it; the engine treats its own app ID as a local call (`engine.core.apps.other_app`)."""
    router = action.router if action.HasField("router") else None
    return router.targetAppID if router is not None and router.HasField("targetAppID") and router.targetAppID \
        else None


def _scope(call: apb.ScheduleTaskAction | apb.CreateChildWorkflowAction) -> str:
    """The history a call hands on (`engine.core.propagation`), by `PropagationScope` name."""
    if not call.HasField("historyPropagationScope"):
        return ""
    try:
        return PropagationScope(call.historyPropagationScope).name
    except ValueError:
        return ""


def answer_from_response(item: WorkflowWorkItem, response: pb.WorkflowResponse) -> WorkflowAnswer:
    """The app's actions for `item`'s turn, as the engine records them."""
    tasks: list[ScheduleTask] = []
    timers: list[CreateTimer] = []
    children: list[CreateChildWorkflow] = []
    sent: list[SendEvent] = []
    completion: CompleteWorkflow | None = None
    for action in response.actions:
        kind = action.WhichOneof("workflowActionType")
        if kind == "scheduleTask":
            task = action.scheduleTask
            tasks.append(ScheduleTask(id=action.id, name=task.name, input=_value(task, "input"),
                                      task_execution_id=task.taskExecutionId, app_id=_target_app(action),
                                      propagation=_scope(task)))
        elif kind == "createTimer":
            timer = action.createTimer
            origin = _FROM_ORIGIN.get(timer.WhichOneof("origin") or "createTimer", "timer")
            timers.append(CreateTimer(id=action.id, fire_at=_from_time(timer.fireAt), origin=origin))
        elif kind == "createChildWorkflow":
            child = action.createChildWorkflow
            children.append(CreateChildWorkflow(id=action.id, instance_id=child.instanceId, name=child.name,
                                                input=_value(child, "input"), app_id=_target_app(action),
                                                propagation=_scope(child)))
        elif kind == "sendEvent":
            send = action.sendEvent
            sent.append(SendEvent(id=action.id, instance_id=send.instance.instanceId, name=send.name,
                                  input=_value(send, "data")))
        elif kind == "completeWorkflow":
            completion = _completion(action)
        else:
            log.warning("%s: a connected app answered with a %s action, which is not served yet; ignored",
                        item.instance_id, kind)
    return WorkflowAnswer(
        instance_id=item.instance_id, execution_id=item.execution_id, turn=item.turn,
        tasks=tuple(tasks), timers=tuple(timers), children=tuple(children), sent=tuple(sent),
        completion=completion, custom_status=_value(response, "customStatus"),
        patches=tuple(response.version.patches) if response.HasField("version") else (),
        workflow_version=response.version.name if response.HasField("version") and response.version.HasField("name")
        and response.version.name else None,
    )
