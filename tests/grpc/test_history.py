"""`api/grpc/history.py` without Kafka: our events as durabletask `HistoryEvent`s, a turn as a
`WorkflowRequest`, an app's `WorkflowResponse` as a `WorkflowAnswer`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from google.protobuf import timestamp_pb2, wrappers_pb2

from api.grpc.history import answer_from_response, history_event, workflow_request
from api.grpc.protos import history_events_pb2 as hpb
from api.grpc.protos import orchestration_pb2 as opb
from api.grpc.protos import orchestrator_actions_pb2 as apb
from api.grpc.protos import orchestrator_service_pb2 as pb
from api.grpc.work import RemoteActivities, RemoteWorkflows, WorkStreams
from engine.core import events as ev
from engine.core.events import EVENT_TYPES
from engine.core.remote import WorkflowWorkItem
from engine.core.values import FailureDetails, ParentInstance, RuntimeStatus

T = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
FOREVER = datetime.max.replace(tzinfo=UTC)
EVENTS: list[ev.HistoryEvent] = [
    ev.WorkflowStarted(timestamp=T, seq=0),
    ev.ExecutionStarted(timestamp=T, seq=1, name="wf", instance_id="i", execution_id="e", input="1",
                        parent=ParentInstance(instance_id="p", name="pwf", task_scheduled_id=2, execution_id="pe")),
    ev.WorkflowCompleted(timestamp=T, seq=2),
    ev.TaskScheduled(timestamp=T, seq=3, event_id=1, name="act", input='"x"', task_execution_id="te"),
    ev.TimerCreated(timestamp=T, seq=4, event_id=2, fire_at=FOREVER, origin="external_event"),
    ev.ChildWorkflowCreated(timestamp=T, seq=5, event_id=3, instance_id="i:0003", name="child"),
    ev.TaskCompleted(timestamp=T, seq=6, task_scheduled_id=1, result='"y"'),
    ev.TaskFailed(timestamp=T, seq=7, task_scheduled_id=1, failure=FailureDetails(error_type="E", message="m")),
    ev.TimerFired(timestamp=T, seq=8, timer_id=2, fire_at=T),
    ev.ChildWorkflowCompleted(timestamp=T, seq=9, task_scheduled_id=3, result="2"),
    ev.ChildWorkflowFailed(timestamp=T, seq=10, task_scheduled_id=3,
                           failure=FailureDetails(error_type="E", message="m")),
    ev.EventRaised(timestamp=T, seq=11, name="go", input="true"),
    ev.EventSent(timestamp=T, seq=11, event_id=6, instance_id="o", name="ping", input="1"),
    ev.ExecutionSuspended(timestamp=T, seq=12, reason="r"),
    ev.ExecutionResumed(timestamp=T, seq=13),
    ev.ExecutionTerminated(timestamp=T, seq=14, output='"bye"'),
    ev.ContinuedAsNew(timestamp=T, seq=15, input="3"),
    ev.ExecutionCompleted(timestamp=T, seq=16, status=RuntimeStatus.FAILED,
                          failure=FailureDetails(error_type="E", message="m")),
]


def test_every_event_type_has_a_durabletask_history_event() -> None:
    assert {type(e) for e in EVENTS} == set(EVENT_TYPES)
    converted = [history_event(e) for e in EVENTS]
    kinds = [c.WhichOneof("eventType") for c in converted]
    assert kinds == ["workflowStarted", "executionStarted", "workflowCompleted", "taskScheduled", "timerCreated",
                     "childWorkflowInstanceCreated", "taskCompleted", "taskFailed", "timerFired",
                     "childWorkflowInstanceCompleted", "childWorkflowInstanceFailed", "eventRaised",
                     "eventSent", "executionSuspended", "executionResumed", "executionTerminated", "continueAsNew",
                     "executionCompleted"]
    sent = converted[12]
    assert (sent.eventId, sent.eventSent.instanceId, sent.eventSent.name) == (6, "o", "ping")
    assert sent.eventSent.input.value == "1"
    started = converted[1].executionStarted
    assert (started.name, started.input.value, started.workflowInstance.executionId.value) == ("wf", "1", "e")
    assert started.parentInstance.workflowInstance.instanceId == "p"
    assert (converted[3].eventId, converted[3].taskScheduled.taskExecutionId) == (1, "te")
    # The SDK knows the timer of an indefinite wait by these exact nanoseconds.
    assert (converted[4].timerCreated.fireAt.seconds, converted[4].timerCreated.fireAt.nanos) == (253402300799,
                                                                                                999_999_999)
    assert converted[4].timerCreated.WhichOneof("origin") == "externalEvent"
    assert converted[-1].executionCompleted.workflowStatus == opb.ORCHESTRATION_STATUS_FAILED


def test_a_turn_leaves_out_what_the_executor_does_not_take() -> None:
    item = WorkflowWorkItem(instance_id="i", execution_id="e", name="wf", turn=12, new_from=3,
                            events=tuple(EVENTS[:12]))
    request = workflow_request(item)
    assert [e.WhichOneof("eventType") for e in request.pastEvents] == ["workflowStarted", "executionStarted"]
    assert "workflowCompleted" not in [e.WhichOneof("eventType") for e in request.newEvents]
    assert len(request.newEvents) == 9
    assert (request.instanceId, request.executionId.value) == ("i", "e")


def test_an_answer_becomes_the_cores_actions() -> None:
    item = WorkflowWorkItem(instance_id="i", execution_id="e", name="wf", turn=7, new_from=0, events=())
    sentinel = timestamp_pb2.Timestamp(seconds=253402300799, nanos=999_999_999)
    due = timestamp_pb2.Timestamp()
    due.FromDatetime(T + timedelta(seconds=5))
    response = pb.WorkflowResponse(
        instanceId="i", completionToken="t", customStatus=wrappers_pb2.StringValue(value='"s"'),
        actions=[
            apb.WorkflowAction(id=2, createTimer=apb.CreateTimerAction(fireAt=sentinel,
                                                                        externalEvent=hpb.TimerOriginExternalEvent())),
            apb.WorkflowAction(id=1, scheduleTask=apb.ScheduleTaskAction(
                name="act", input=wrappers_pb2.StringValue(value="1"), taskExecutionId="te",
                historyPropagationScope=opb.HISTORY_PROPAGATION_SCOPE_LINEAGE),
                router=opb.TaskRouter(sourceAppID="me", targetAppID="other")),
            apb.WorkflowAction(id=3, createTimer=apb.CreateTimerAction(fireAt=due)),
            apb.WorkflowAction(id=4, createChildWorkflow=apb.CreateChildWorkflowAction(instanceId="c", name="cw")),
            apb.WorkflowAction(id=5, sendEvent=apb.SendEventAction(instance=opb.WorkflowInstance(instanceId="o"),
                                                                   name="ping")),
            apb.WorkflowAction(id=-1, completeWorkflow=apb.CompleteWorkflowAction(
                workflowStatus=opb.ORCHESTRATION_STATUS_CONTINUED_AS_NEW, result=wrappers_pb2.StringValue(value="9"),
                carryoverEvents=[hpb.HistoryEvent(eventRaised=hpb.EventRaisedEvent(name="late"))])),
        ],
    )
    answer = answer_from_response(item, response)
    assert (answer.instance_id, answer.execution_id, answer.turn, answer.custom_status) == ("i", "e", 7, '"s"')
    assert [a.id for a in answer.actions] == [1, 2, 3, 4, 5]
    assert answer.tasks[0].task_execution_id == "te"
    assert (answer.tasks[0].app_id, answer.tasks[0].propagation) == ("other", "LINEAGE")
    assert (answer.children[0].app_id, answer.children[0].propagation) == (None, "")
    assert answer.timers[0].fire_at == FOREVER and answer.timers[0].origin == "external_event"
    assert answer.timers[1].fire_at == T + timedelta(seconds=5) and answer.timers[1].origin == "timer"
    assert (answer.sent[0].id, answer.sent[0].instance_id, answer.sent[0].name) == (5, "o", "ping")
    assert answer.completion is not None and answer.completion.status is RuntimeStatus.CONTINUED_AS_NEW
    assert [e.name for e in answer.completion.carryover_events] == ["late"]


async def test_an_activity_token_cannot_answer_a_turn() -> None:
    import asyncio

    streams = WorkStreams()
    workflows = RemoteWorkflows(streams, max_answer_bytes=1 << 20)
    activities = RemoteActivities(["*"], streams)
    assert activities.knows("anything")
    item = WorkflowWorkItem(instance_id="i", execution_id="e", name="wf", turn=3, new_from=0, events=tuple(EVENTS[:3]))
    running = asyncio.create_task(workflows.run(item))
    stream = streams.stream()
    sent = await asyncio.wait_for(anext(stream), 5)
    assert sent.workflowRequest.instanceId == "i"
    assert not activities.complete(pb.ActivityResponse(completionToken=sent.completionToken))
    assert workflows.complete(pb.WorkflowResponse(completionToken=sent.completionToken, instanceId="i"))
    answer = await asyncio.wait_for(running, 5)
    assert answer.turn == 3 and answer.completion is None
    await stream.aclose()


def test_patches_an_answer_recorded_are_given_from_the_first_turn_on() -> None:
    """The app met the patch while running the start; its answer's marker comes later, and a replay
    must answer `is_patched` True already when it runs the start again."""
    events = (
        ev.WorkflowStarted(timestamp=T, seq=0),
        ev.ExecutionStarted(timestamp=T, seq=1, name="wf", instance_id="i", execution_id="e"),
        ev.WorkflowCompleted(timestamp=T, seq=2),
        ev.WorkflowStarted(timestamp=T, seq=3, patches=("p1",)),
        ev.TaskScheduled(timestamp=T, seq=4, event_id=1, name="act"),
        ev.WorkflowCompleted(timestamp=T, seq=5),
        ev.WorkflowStarted(timestamp=T, seq=6),
        ev.TaskCompleted(timestamp=T, seq=7, task_scheduled_id=1),
    )
    request = workflow_request(WorkflowWorkItem(instance_id="i", execution_id="e", name="wf", turn=8, new_from=3,
                                                events=events))
    assert list(request.pastEvents[0].workflowStarted.version.patches) == ["p1"]
    assert list(request.newEvents[0].workflowStarted.version.patches) == ["p1"]
