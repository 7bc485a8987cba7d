"""durabletask's `TaskHubSidecarService`: the client side over the REST API's `Gateway`, and
activity work items for connected apps (`work.py`).

Each RPC is one call of `engine.client.WorkflowCommands` (through `api.gateway.Gateway`, so the
ports, read-your-writes across replicas and the "answered when done" rule are the REST API's):
this module only translates protobuf messages to those calls and back. The worker side streams
the items of `work.WorkStreams` over `GetWorkItems`: activities (`work.RemoteActivities`, answered
by `CompleteActivityTask`) and the turns of remote workflows (`work.RemoteWorkflows`, answered by
`CompleteOrchestratorTask`); see docs/grpc.md.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC
from typing import Any, NoReturn, TypeVar

import grpc
from google.protobuf import empty_pb2

from engine.core.state import InstanceState
from engine.core.values import RuntimeStatus

from ..errors import EventNameMissing, WorkflowNameMissing
from ..gateway import Gateway
from ..listing import MAX_PAGE_SIZE, Cursor, Query
from .history import history_event
from .mapping import classify, workflow_state
from .protos import orchestrator_service_pb2 as pb
from .protos import orchestrator_service_pb2_grpc as pb_grpc
from .work import RemoteActivities, RemoteWorkflows, WorkStreams

__all__ = ["SidecarService"]

Req = TypeVar("Req")
Res = TypeVar("Res")
Handler = Callable[[Any, Req, grpc.aio.ServicerContext[Req, Res]], Awaitable[Res]]

_NOT_SERVED = (
    "Headrace's gRPC front end serves the client calls of TaskHubSidecarService, activity work items "
    "with `headrace grpc --activity` and workflow turns with HEADRACE_REMOTE_WORKFLOWS (see docs/grpc.md)"
)


def _answers_errors(handler: Handler[Req, Res]) -> Handler[Req, Res]:
    """Turn any error of the handler into the gRPC status `mapping.classify` gives it."""

    @functools.wraps(handler)
    async def wrapped(self: Any, request: Req, context: grpc.aio.ServicerContext[Req, Res]) -> Res:
        try:
            return await handler(self, request, context)
        except asyncio.CancelledError:
            raise
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            failure = classify(exc)
            await context.abort(failure.code, failure.message)
            raise AssertionError("unreachable: abort raises") from exc

    return wrapped


async def _unsupported(context: grpc.aio.ServicerContext[Any, Any], what: str) -> NoReturn:
    await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{what}: {_NOT_SERVED}")
    raise AssertionError("unreachable: abort raises")


def _text(message: Any, field: str) -> str | None:
    """A `google.protobuf.StringValue` field of `message`: its text when set, else None."""
    return str(getattr(message, field).value) if message.HasField(field) else None


class SidecarService(pb_grpc.TaskHubSidecarServiceServicer):
    def __init__(self, gateway: Gateway, activities: RemoteActivities | None = None,
                 workflows: RemoteWorkflows | None = None) -> None:
        self.gateway = gateway
        self.commands = gateway.commands
        #: Activities served to connected apps (`headrace grpc --activity`), if any.
        self.activities = activities
        #: Turns of remote workflows served to connected apps (HEADRACE_REMOTE_WORKFLOWS), if any.
        self.workflows = workflows
        served = activities.streams if activities is not None else workflows.streams if workflows else None
        #: The streams both kinds of work go out on.
        self.streams: WorkStreams | None = served

    async def Hello(  # the protocol's method names
        self, request: empty_pb2.Empty, context: grpc.aio.ServicerContext[Any, Any]
    ) -> empty_pb2.Empty:
        return empty_pb2.Empty()

    @_answers_errors
    async def StartInstance(
        self, request: pb.CreateInstanceRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.CreateInstanceResponse:
        if not request.name:
            raise WorkflowNameMissing
        start_at = (
            request.scheduledStartTimestamp.ToDatetime(tzinfo=UTC)
            if request.HasField("scheduledStartTimestamp")
            else None
        )
        iid = await self.gateway.start(
            request.name, request.instanceId or None, _text(request, "input"), start_at
        )
        return pb.CreateInstanceResponse(instanceId=iid)

    @_answers_errors
    async def GetInstance(
        self, request: pb.GetInstanceRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetInstanceResponse:
        found = await self.gateway.find(request.instanceId)
        return _instance_response(found, request.getInputsAndOutputs)

    @_answers_errors
    async def WaitForInstanceStart(
        self, request: pb.GetInstanceRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetInstanceResponse:
        return await self._wait(request, context, lambda s: s.status is not RuntimeStatus.PENDING)

    @_answers_errors
    async def WaitForInstanceCompletion(
        self, request: pb.GetInstanceRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetInstanceResponse:
        return await self._wait(request, context, lambda s: s.is_terminal)

    async def _wait(
        self,
        request: pb.GetInstanceRequest,
        context: grpc.aio.ServicerContext[Any, Any],
        done: Callable[[InstanceState], bool],
    ) -> pb.GetInstanceResponse:
        # daprd answers "does not exist" at once for an unknown instance rather than waiting for
        # someone to start it; the look-up sees this replica's and (barrier) any replica's starts.
        if await self.gateway.find(request.instanceId) is None:
            return pb.GetInstanceResponse(exists=False)
        try:
            # The call's own deadline bounds the wait (gRPC cancels the call at it anyway).
            state = await self.commands.wait(request.instanceId, done, context.time_remaining())
        except TimeoutError:
            await context.abort(
                grpc.StatusCode.DEADLINE_EXCEEDED, f"timed out waiting for workflow '{request.instanceId}'"
            )
            raise AssertionError("unreachable: abort raises") from None
        return _instance_response(state, request.getInputsAndOutputs)

    @_answers_errors
    async def RaiseEvent(
        self, request: pb.RaiseEventRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.RaiseEventResponse:
        if not request.name:
            raise EventNameMissing
        await self.gateway.raise_event(request.instanceId, request.name, _text(request, "input"))
        return pb.RaiseEventResponse()

    @_answers_errors
    async def TerminateInstance(
        self, request: pb.TerminateRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.TerminateResponse:
        await self.commands.terminate(
            request.instanceId, _text(request, "output"), recursive=request.recursive
        )
        return pb.TerminateResponse()

    @_answers_errors
    async def SuspendInstance(
        self, request: pb.SuspendRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.SuspendResponse:
        await self.commands.suspend(request.instanceId, _text(request, "reason"))
        return pb.SuspendResponse()

    @_answers_errors
    async def ResumeInstance(
        self, request: pb.ResumeRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ResumeResponse:
        await self.commands.resume(request.instanceId, _text(request, "reason"))
        return pb.ResumeResponse()

    @_answers_errors
    async def PurgeInstances(
        self, request: pb.PurgeInstancesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.PurgeInstancesResponse:
        if request.WhichOneof("request") != "instanceId":
            await _unsupported(context, "PurgeInstances with a filter")
        if request.force:
            await _unsupported(context, "PurgeInstances with force")
        await self.commands.purge(request.instanceId, recursive=request.recursive)
        return pb.PurgeInstancesResponse(deletedInstanceCount=1)

    @_answers_errors
    async def ListInstanceIDs(
        self, request: pb.ListInstanceIDsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListInstanceIDsResponse:
        # No page size: daprd "attempts all"; a page of the REST listing's largest size, with a token.
        size = min(request.pageSize, MAX_PAGE_SIZE) if request.pageSize else MAX_PAGE_SIZE
        token = request.continuationToken if request.HasField("continuationToken") else ""
        page = self.gateway.list_page(Query(page_size=size, after=Cursor.decode(token) if token else None))
        return pb.ListInstanceIDsResponse(
            instanceIds=[s.instance_id for s in page.instances], continuationToken=page.continuation_token
        )

    # -- the worker side (docs/grpc.md) -----------------------------------------------------------

    async def GetWorkItems(
        self, request: pb.GetWorkItemsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.WorkItem]:
        if self.streams is None:
            await _unsupported(context, "GetWorkItems without --activity or remote workflows")
        async for item in self.streams.stream():
            yield item

    async def CompleteActivityTask(
        self, request: pb.ActivityResponse, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.CompleteTaskResponse:
        if self.activities is None:
            await _unsupported(context, "CompleteActivityTask without --activity")
        # False when late (its stream ended and the item went to another app) or a duplicate: the
        # result then comes from the run it was sent to again.
        self.activities.complete(request)
        return pb.CompleteTaskResponse()

    async def CompleteOrchestratorTask(
        self, request: pb.WorkflowResponse, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.CompleteTaskResponse:
        if self.workflows is None:
            await _unsupported(context, "CompleteOrchestratorTask without remote workflows")
        # False when late or repeated: the engine records the turn of the stream it went to last.
        self.workflows.complete(request)
        return pb.CompleteTaskResponse()

    async def CompleteWorkflowTask(
        self, request: pb.WorkflowResponse, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.CompleteTaskResponse:
        return await self.CompleteOrchestratorTask(request, context)

    @_answers_errors
    async def GetInstanceHistory(
        self, request: pb.GetInstanceHistoryRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetInstanceHistoryResponse:
        _, events = await self.gateway.history(request.instanceId)
        return pb.GetInstanceHistoryResponse(events=[history_event(e) for e in events])

    # -- not served yet (docs/grpc.md) ------------------------------------------------------------

    async def RerunWorkflowFromEvent(
        self, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        await _unsupported(context, "RerunWorkflowFromEvent")


def _instance_response(state: InstanceState | None, payloads: bool) -> pb.GetInstanceResponse:
    if state is None:
        return pb.GetInstanceResponse(exists=False)
    return pb.GetInstanceResponse(exists=True, workflowState=workflow_state(state, payloads=payloads))
