"""Activities run by connected apps: the `ActivityExecutor` behind `headrace grpc --activity NAME`.

An app's `WorkflowRuntime` (Dapr's SDK, any language) opens `GetWorkItems` and keeps it open; the
front end's `ActivityWorker` (engine/runtime/worker.py: the same consumption, commits, hand-on of
unknown names and result writing as every worker) hands each item of a served activity to one
open stream as an `ActivityRequest` with a fresh completion token, and awaits the app's
`CompleteActivityTask` with that token. A stream that ends first has its items sent to another
stream; with no stream open an item waits for one (its offset is not finished meanwhile, so a
crash of the front end delivers it again: activities run at least once, as everywhere).

Which activities the apps serve is configuration (`--activity`): durabletask's protocol does not
tell the sidecar what an app registered (daprd sends all of an app ID's work to it), and Headrace's
workers share one task queue, so an item of an activity the apps do not serve must be handed on to
a worker that knows it, as any worker does with a name it does not know.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field

from google.protobuf import wrappers_pb2

from engine.core.commands import ActivityResult, ActivityWorkItem
from engine.core.values import FailureDetails

from .protos import orchestration_pb2 as opb
from .protos import orchestrator_service_pb2 as pb

__all__ = ["RemoteActivities", "StreamGone"]

log = logging.getLogger(__name__)


class StreamGone(Exception):
    """The stream an item was sent on ended before the app answered."""


@dataclass(eq=False)
class _Stream:
    """One open `GetWorkItems` call: what to send on it, and the answers it owes."""

    outbox: asyncio.Queue[pb.WorkItem] = field(default_factory=asyncio.Queue)
    owed: set[str] = field(default_factory=set)


def _failure(details: opb.TaskFailureDetails) -> FailureDetails:
    return FailureDetails(
        error_type=details.errorType or "Exception",
        message=details.errorMessage,
        stack_trace=details.stackTrace.value if details.HasField("stackTrace") else None,
        inner=_failure(details.innerFailure) if details.HasField("innerFailure") else None,
        non_retriable=details.isNonRetriable,
    )


class RemoteActivities:
    """An `engine.runtime.worker.ActivityExecutor` over the apps' open work-item streams."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = frozenset(names)
        self._streams: list[_Stream] = []
        self._turn = itertools.count()
        self._connected = asyncio.Event()
        self._waiting: dict[str, tuple[asyncio.Future[pb.ActivityResponse], _Stream]] = {}

    # -- ActivityExecutor -------------------------------------------------------------------------

    def knows(self, name: str) -> bool:
        return name in self.names

    async def run(self, item: ActivityWorkItem) -> ActivityResult:
        while True:
            await self._connected.wait()
            if not self._streams:  # the last stream closed between the event and now
                continue
            stream = self._streams[next(self._turn) % len(self._streams)]
            token = uuid.uuid4().hex
            answer: asyncio.Future[pb.ActivityResponse] = asyncio.get_running_loop().create_future()
            self._waiting[token] = (answer, stream)
            stream.owed.add(token)
            stream.outbox.put_nowait(_request(item, token))
            try:
                response = await answer
            except StreamGone:
                log.info("the stream of %s#%d ended before its answer; sending it again", item.instance_id,
                         item.task_id)
                continue
            finally:
                self._waiting.pop(token, None)
                stream.owed.discard(token)
            failure = _failure(response.failureDetails) if response.HasField("failureDetails") else None
            result = response.result.value if response.HasField("result") and failure is None else None
            return ActivityResult(instance_id=item.instance_id, execution_id=item.execution_id,
                                  task_id=item.task_id, result=result, failure=failure)

    # -- the gRPC side ----------------------------------------------------------------------------

    async def stream(self) -> AsyncIterator[pb.WorkItem]:
        """The work items of one `GetWorkItems` call, until the caller goes away."""
        stream = _Stream()
        self._streams.append(stream)
        self._connected.set()
        log.info("an app opened a work-item stream (%d open)", len(self._streams))
        try:
            while True:
                yield await stream.outbox.get()
        finally:
            self._streams.remove(stream)
            if not self._streams:
                self._connected.clear()
            for token in list(stream.owed):
                waiting = self._waiting.get(token)
                if waiting is not None and not waiting[0].done():
                    waiting[0].set_exception(StreamGone())
            log.info("a work-item stream closed (%d open)", len(self._streams))

    def complete(self, response: pb.ActivityResponse) -> bool:
        """The app's answer; False when no item waits for its token (late, or a duplicate)."""
        waiting = self._waiting.get(response.completionToken)
        if waiting is None or waiting[0].done():
            return False
        waiting[0].set_result(response)
        return True


def _request(item: ActivityWorkItem, token: str) -> pb.WorkItem:
    return pb.WorkItem(
        activityRequest=pb.ActivityRequest(
            name=item.name,
            input=None if item.input is None else wrappers_pb2.StringValue(value=item.input),
            workflowInstance=opb.WorkflowInstance(
                instanceId=item.instance_id, executionId=wrappers_pb2.StringValue(value=item.execution_id)
            ),
            taskId=item.task_id,
            taskExecutionId=item.task_execution_id,
        ),
        completionToken=token,
    )

