"""Hostile answers to remote workflow turns at the gRPC front end (`api.grpc.work.RemoteWorkflows`),
without Kafka: whatever the app sends, `run` returns an answer (one that fails the instance with the
reason when the response cannot be read) and never raises, since a raise would leave the work item's
offset unfinished (the orchestrations partition's commits stop there) and the instance waiting."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from google.protobuf import timestamp_pb2, wrappers_pb2

from api.grpc.protos import history_events_pb2 as hpb
from api.grpc.protos import orchestration_pb2 as opb
from api.grpc.protos import orchestrator_actions_pb2 as apb
from api.grpc.protos import orchestrator_service_pb2 as pb
from api.grpc.work import RemoteWorkflows, WorkStreams
from engine.core.remote import WorkflowAnswer, WorkflowWorkItem, check_answer
from engine.core.values import RuntimeStatus
from engine.errors import InvalidAnswerError

ITEM = WorkflowWorkItem(instance_id="i", execution_id="e", name="wf", turn=3, new_from=0, events=())


async def answered(response: pb.WorkflowResponse, *, limit: int = 1 << 20,
                   item: WorkflowWorkItem = ITEM) -> WorkflowAnswer:
    """What `RemoteWorkflows.run` makes of the app's `response` to `item`."""
    streams = WorkStreams()
    workflows = RemoteWorkflows(streams, max_answer_bytes=limit)
    running = asyncio.create_task(workflows.run(item))
    stream: AsyncIterator[pb.WorkItem] = streams.stream()
    sent = await asyncio.wait_for(anext(stream), 5)
    response.completionToken = sent.completionToken
    assert workflows.complete(response)
    try:
        return await asyncio.wait_for(running, 5)
    finally:
        await stream.aclose()  # type: ignore[attr-defined]


def failure_of(answer: WorkflowAnswer) -> str:
    completion = answer.completion
    assert completion is not None and completion.status is RuntimeStatus.FAILED and completion.failure is not None
    return f"{completion.failure.error_type}: {completion.failure.message}"


@pytest.mark.parametrize(("seconds", "nanos"), [(-10**12, 0), (-62135596801, 0), (0, -5), (0, 2 * 10**9)])
async def test_a_timer_outside_what_a_datetime_holds_fails_the_instance(seconds: int, nanos: int) -> None:
    action = apb.WorkflowAction(id=1, createTimer=apb.CreateTimerAction(
        fireAt=timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)))
    answer = await answered(pb.WorkflowResponse(instanceId="i", actions=[action]))
    assert failure_of(answer).startswith("InvalidAnswerError: the app's answer cannot be read: ValueError")
    assert (answer.instance_id, answer.execution_id, answer.turn) == ("i", "e", 3)
    assert answer.timers == ()


async def test_a_carried_over_event_with_a_bad_timestamp_fails_the_instance() -> None:
    event = hpb.HistoryEvent(timestamp=timestamp_pb2.Timestamp(seconds=-10**13),
                             eventRaised=hpb.EventRaisedEvent(name="x"))
    action = apb.WorkflowAction(id=1, completeWorkflow=apb.CompleteWorkflowAction(
        workflowStatus=4, carryoverEvents=[event]))  # 4: CONTINUED_AS_NEW
    answer = await answered(pb.WorkflowResponse(instanceId="i", actions=[action]))
    assert "cannot be read" in failure_of(answer)


async def test_an_action_of_no_known_kind_is_ignored_and_the_rest_recorded() -> None:
    actions = [apb.WorkflowAction(id=1), apb.WorkflowAction(id=2, scheduleTask=apb.ScheduleTaskAction(name="a"))]
    answer = await answered(pb.WorkflowResponse(instanceId="i", actions=actions))
    assert [t.name for t in answer.tasks] == ["a"] and answer.completion is None


async def test_an_answer_over_the_payload_limit_fails_the_instance() -> None:
    big = wrappers_pb2.StringValue(value='"' + "x" * 5000 + '"')
    action = apb.WorkflowAction(id=1, scheduleTask=apb.ScheduleTaskAction(name="a", input=big))
    answer = await answered(pb.WorkflowResponse(instanceId="i", actions=[action]), limit=4096)
    assert failure_of(answer).startswith("PayloadTooLargeError:") and answer.tasks == ()


async def test_a_turn_the_protocol_cannot_carry_fails_instead_of_raising() -> None:
    broken = WorkflowWorkItem(instance_id="i", execution_id="e", name="wf", turn=3, new_from=0,
                              events=(object(),))  # type: ignore[arg-type]
    answer = await asyncio.wait_for(RemoteWorkflows(WorkStreams(), 1 << 20).run(broken), 5)
    assert "cannot be sent to the app" in failure_of(answer)


@pytest.mark.parametrize("target", ["../x", "a" * 5000, "has space"])
async def test_a_router_target_app_that_cannot_name_topics_is_refused_by_the_engine(target: str) -> None:
    action = apb.WorkflowAction(id=1, scheduleTask=apb.ScheduleTaskAction(name="a"),
                                router=opb.TaskRouter(sourceAppID="me", targetAppID=target))
    answer = await answered(pb.WorkflowResponse(instanceId="i", actions=[action]))
    assert answer.tasks[0].app_id == target  # carried as the app named it; the engine decides
    with pytest.raises(InvalidAnswerError, match="app ID of action 1"):
        check_answer(answer)


async def test_a_completion_with_its_status_unset_fails_the_instance() -> None:
    # The proto's zero status is RUNNING: recorded as is, the instance would stay RUNNING with no
    # turn out. The front end takes it as FAILED; the engine refuses it from anyone else.
    action = apb.WorkflowAction(id=1, completeWorkflow=apb.CompleteWorkflowAction(
        result=wrappers_pb2.StringValue(value="1")))
    answer = await answered(pb.WorkflowResponse(instanceId="i", actions=[action]))
    assert failure_of(answer).startswith("WorkflowFailed:")
    with pytest.raises(InvalidAnswerError, match="status RUNNING"):
        check_answer(replace(answer, completion=replace(answer.completion, status=RuntimeStatus.RUNNING)))


async def test_malformed_and_forged_completions_leave_the_server_and_the_turn_serving() -> None:
    import grpc

    from api.grpc.protos import orchestrator_service_pb2_grpc as pb_grpc
    from api.grpc.service import SidecarService

    streams = WorkStreams()
    workflows = RemoteWorkflows(streams, max_answer_bytes=1 << 20)
    gateway = type("NoGateway", (), {"commands": None})()
    server = grpc.aio.server()
    pb_grpc.add_TaskHubSidecarServiceServicer_to_server(  # type: ignore[no-untyped-call]
        SidecarService(gateway, workflows=workflows), server)  # type: ignore[arg-type]
    port = server.add_insecure_port("127.0.0.1:0")  # the port it bound: nobody can take it first
    await server.start()
    running = asyncio.create_task(workflows.run(ITEM))
    stream: AsyncIterator[pb.WorkItem] = streams.stream()
    try:
        sent = await asyncio.wait_for(anext(stream), 5)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            raw = channel.unary_unary("/TaskHubSidecarService/CompleteOrchestratorTask",
                                      request_serializer=None, response_deserializer=None)
            for garbage in (b"\xff\xff\xff\xff", b"\x0a\xff\xff\xff\xff\x0f", b"\x12" + b"\x80" * 12):
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await raw(garbage, timeout=5)
                # grpc's own parse error (grpcio answers UNKNOWN and logs it); no handler of ours runs
                assert refused.value.code() in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL)
            stub = pb_grpc.TaskHubSidecarServiceStub(channel)  # type: ignore[no-untyped-call]
            for forged in (pb.WorkflowResponse(instanceId="i", completionToken="not-a-token"),
                           pb.WorkflowResponse(instanceId="someone-else")):
                await stub.CompleteOrchestratorTask(forged, timeout=5)  # accepted, matched to nothing
            assert not running.done()
            done = apb.WorkflowAction(id=1, completeWorkflow=apb.CompleteWorkflowAction(
                workflowStatus=1, result=wrappers_pb2.StringValue(value='"ok"')))  # 1: COMPLETED
            await stub.CompleteOrchestratorTask(pb.WorkflowResponse(
                instanceId="i", completionToken=sent.completionToken, actions=[done]), timeout=5)
        answer = await asyncio.wait_for(running, 5)
        assert answer.completion is not None and answer.completion.result == '"ok"'
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
        await server.stop(None)
