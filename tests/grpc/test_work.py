"""`RemoteActivities` without Kafka or gRPC: items go to open streams, answers come back by token, an
item whose stream ends unanswered goes to the next stream."""

from __future__ import annotations

import asyncio

from google.protobuf import wrappers_pb2

from api.grpc.protos import orchestration_pb2 as opb
from api.grpc.protos import orchestrator_service_pb2 as pb
from api.grpc.work import RemoteActivities
from engine.core.commands import ActivityWorkItem

ITEM = ActivityWorkItem(instance_id="wf-1", execution_id="e1", task_id=3, name="shout", input='"hi"')


async def test_an_item_waits_for_a_stream_and_its_answer() -> None:
    remote = RemoteActivities(["shout"])
    assert remote.knows("shout")
    assert not remote.knows("other")
    running = asyncio.create_task(remote.run(ITEM))
    done, _ = await asyncio.wait({running}, timeout=0.1)
    assert not done  # no stream open: the item waits
    stream = remote.stream()
    sent = await asyncio.wait_for(anext(stream), 5)
    request = sent.activityRequest
    assert (request.name, request.input.value, request.taskId) == ("shout", '"hi"', 3)
    assert request.workflowInstance.instanceId == "wf-1"
    assert not remote.complete(pb.ActivityResponse(completionToken="unknown"))
    assert remote.complete(pb.ActivityResponse(
        instanceId="wf-1", taskId=3, result=wrappers_pb2.StringValue(value='"HI"'),
        completionToken=sent.completionToken,
    ))
    result = await asyncio.wait_for(running, 5)
    assert (result.instance_id, result.execution_id, result.task_id, result.result) == ("wf-1", "e1", 3, '"HI"')
    assert result.failure is None
    assert not remote.complete(pb.ActivityResponse(completionToken=sent.completionToken))  # a duplicate
    await stream.aclose()


async def test_an_item_whose_stream_ends_goes_to_the_next_stream() -> None:
    remote = RemoteActivities(["shout"])
    first = remote.stream()
    first_next = asyncio.ensure_future(anext(first))
    running = asyncio.create_task(remote.run(ITEM))  # waits for the stream to open, if it must
    lost = await asyncio.wait_for(first_next, 5)
    await first.aclose()  # the app went away without answering
    second = remote.stream()
    again = await asyncio.wait_for(anext(second), 5)
    assert again.activityRequest.taskId == 3
    assert again.completionToken != lost.completionToken
    assert not remote.complete(pb.ActivityResponse(completionToken=lost.completionToken))  # too late
    remote.complete(pb.ActivityResponse(
        completionToken=again.completionToken,
        failureDetails=opb.TaskFailureDetails(errorType="RuntimeError", errorMessage="no",
                                              innerFailure=opb.TaskFailureDetails(errorType="KeyError")),
    ))
    result = await asyncio.wait_for(running, 5)
    assert result.result is None
    assert result.failure is not None
    assert (result.failure.error_type, result.failure.message) == ("RuntimeError", "no")
    assert result.failure.inner is not None
    assert result.failure.inner.error_type == "KeyError"
    await second.aclose()


async def test_an_answer_without_a_token_finds_its_item_by_instance_and_task() -> None:
    """durabletask-js 1.0 (under @dapr/dapr 3.18) sends no completion token: daprd's executor
    matches an activity's answer by instance ID and task ID, and so does the front end."""
    remote = RemoteActivities(["shout"])
    stream = remote.stream()
    running = asyncio.create_task(remote.run(ITEM))
    await asyncio.wait_for(anext(stream), 5)
    assert not remote.complete(pb.ActivityResponse(instanceId="wf-1", taskId=4))  # another task
    assert remote.complete(pb.ActivityResponse(instanceId="wf-1", taskId=3, result=wrappers_pb2.StringValue(value="1")))
    assert (await asyncio.wait_for(running, 5)).result == "1"
    assert not remote.complete(pb.ActivityResponse(instanceId="wf-1", taskId=3))  # a duplicate
    await stream.aclose()
