"""Work run by connected apps: the `ActivityExecutor`s behind `headrace grpc --activity NAME` and
behind remote workflows' turns (`HEADRACE_REMOTE_WORKFLOWS`, `engine.core.remote`).

Both kinds go out on the same `GetWorkItems` streams (`WorkStreams`), as daprd sends an app both:
a turn is a `WorkflowRequest` answered by `CompleteOrchestratorTask` (`RemoteWorkflows`), an
activity an `ActivityRequest` answered by `CompleteActivityTask` (`RemoteActivities`).

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
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import wrappers_pb2

from engine.core import unknown_code
from engine.core.actions import CompleteWorkflow
from engine.core.codec import encode
from engine.core.commands import ActivityResult, ActivityWorkItem
from engine.core.remote import WorkflowAnswer, WorkflowWorkItem
from engine.core.values import FailureDetails, RuntimeStatus

from .history import answer_from_response, failure_from_proto, workflow_request
from .protos import orchestration_pb2 as opb
from .protos import orchestrator_service_pb2 as pb

__all__ = ["RemoteActivities", "RemoteWorkflows", "StreamGone", "WorkStreams"]

log = logging.getLogger(__name__)


class StreamGone(Exception):
    """The stream an item was sent on ended before the app answered."""


@dataclass(eq=False)
class _Stream:
    """One open `GetWorkItems` call: what to send on it, and the answers it owes."""

    outbox: asyncio.Queue[pb.WorkItem] = field(default_factory=asyncio.Queue)
    owed: set[str] = field(default_factory=set)


@dataclass(eq=False)
class _Waiting:
    answer: asyncio.Future[Any]
    stream: _Stream
    #: The response message the item's answer must be (an activity's token cannot answer a turn).
    kind: type


class WorkStreams:
    """The apps' open `GetWorkItems` streams: items go out round robin, each with a fresh completion
    token, and are sent again on another stream when theirs ends unanswered; with no stream open,
    items wait for one. Late and repeated answers (a token nobody waits for) are ignored."""

    def __init__(self) -> None:
        self._streams: list[_Stream] = []
        self._turn = itertools.count()
        self._connected = asyncio.Event()
        self._waiting: dict[str, _Waiting] = {}
        #: The token of the item out under each daprd key: the answers of SDKs that send no
        #: completion token (durabletask-js 1.0, which @dapr/dapr 3.18 uses) find their item by it,
        #: as durabletask-go's executor matches them (instance ID; instance ID/task ID).
        self._by_key: dict[str, str] = {}

    @property
    def connected(self) -> int:
        return len(self._streams)

    async def send(self, build: Callable[[str], pb.WorkItem], kind: type, what: str, key: str) -> Any:
        """Send the item `build(token)` makes and return the app's answer (a `kind` message); `key`
        names the item for answers without a token (`answer_key`)."""
        while True:
            if not self._streams:
                # Visible: the work waits here (its offset not finished) until an app connects.
                log.warning("%s waits for a connected app: no GetWorkItems stream is open", what)
            await self._connected.wait()
            if not self._streams:  # the last stream closed between the event and now
                continue
            stream = self._streams[next(self._turn) % len(self._streams)]
            token = uuid.uuid4().hex
            answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._waiting[token] = _Waiting(answer, stream, kind)
            self._by_key[key] = token
            stream.owed.add(token)
            stream.outbox.put_nowait(build(token))
            try:
                return await answer
            except StreamGone:
                log.info("the stream of %s ended before its answer; sending it again", what)
                continue
            finally:
                self._waiting.pop(token, None)
                if self._by_key.get(key) == token:
                    del self._by_key[key]
                stream.owed.discard(token)

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
                if waiting is not None and not waiting.answer.done():
                    waiting.answer.set_exception(StreamGone())
            log.info("a work-item stream closed (%d open)", len(self._streams))

    def complete(self, token: str, response: object, key: str) -> bool:
        """The app's answer; False when no item waits for its token, or without a token for its
        key (late, or a duplicate)."""
        waiting = self._waiting.get(token or self._by_key.get(key, ""))
        if waiting is None or waiting.answer.done() or not isinstance(response, waiting.kind):
            return False
        waiting.answer.set_result(response)
        return True


#: In `--activity`: every activity (a deployment whose activities all run in connected apps).
EVERY_ACTIVITY = "*"


class RemoteActivities:
    """An `engine.runtime.worker.ActivityExecutor` over the apps' open work-item streams."""

    def __init__(self, names: Iterable[str], streams: WorkStreams | None = None) -> None:
        self.names = frozenset(names)
        self.streams = streams or WorkStreams()

    def knows(self, name: str) -> bool:
        return name in self.names or EVERY_ACTIVITY in self.names

    async def run(self, item: ActivityWorkItem) -> ActivityResult:
        response: pb.ActivityResponse = await self.streams.send(
            lambda token: _request(item, token), pb.ActivityResponse, f"{item.instance_id}#{item.task_id}",
            answer_key(item.instance_id, item.task_id))
        failure = failure_from_proto(response.failureDetails) if response.HasField("failureDetails") else None
        result = response.result.value if response.HasField("result") and failure is None else None
        return ActivityResult(instance_id=item.instance_id, execution_id=item.execution_id,
                              task_id=item.task_id, result=result, failure=failure)

    def stream(self) -> AsyncIterator[pb.WorkItem]:
        return self.streams.stream()

    def complete(self, response: pb.ActivityResponse) -> bool:
        return self.streams.complete(response.completionToken, response,
                                     answer_key(response.instanceId, response.taskId))


class RemoteWorkflows:
    """The turns of remote workflows (`engine.core.remote`) for connected apps: an executor for the
    worker that consumes the orchestrations topic; its `WorkflowAnswer` goes to `results`, keyed by
    instance ID, so the partition owner that handed the turn out records it."""

    def __init__(self, streams: WorkStreams, max_answer_bytes: int) -> None:
        self.streams = streams
        #: The engine takes no input record above its payload limit: a larger answer fails the turn.
        self.max_answer_bytes = max_answer_bytes

    def knows(self, name: str) -> bool:
        return True  # the engine sends here only what it declared remote

    async def run(self, item: WorkflowWorkItem) -> WorkflowAnswer:
        what = f"turn {item.turn} of {item.instance_id}"
        # Nothing may escape `run`: the worker would leave the item's offset unfinished (its
        # partition's commits stop there) and the instance would wait for this turn forever.
        try:
            request = workflow_request(item)
        except Exception as exc:  # an event the protocol cannot carry, in a record anyone may write
            log.warning("%s cannot be sent to an app: %s", what, exc)
            return _failed_turn(item, f"the turn cannot be sent to the app: {type(exc).__name__}: {exc}")
        while True:
            response: pb.WorkflowResponse = await self.streams.send(
                lambda token: pb.WorkItem(workflowRequest=request, completionToken=token), pb.WorkflowResponse, what,
                answer_key(item.instance_id))
            if not any(a.HasField("workflowVersionNotAvailable") for a in response.actions):
                break
            # The app lacks the version the run started with (Dapr stalls such a run): the turn
            # waits for an app that has it, as unknown code waits for a process that knows it.
            log.warning("%s needs version %r of workflow %r, which the connected app does not have; "
                        "trying again in %s", what, item.workflow_version, item.name, unknown_code.RECHECK)
            await asyncio.sleep(unknown_code.RECHECK.total_seconds())
        try:
            answer = answer_from_response(item, response)
            size = len(encode(answer))
        except Exception as exc:  # e.g. a timer before year 1: the app's bug fails its instance only
            log.warning("the app's answer to %s cannot be read: %s", what, exc)
            return _failed_turn(item, f"the app's answer cannot be read: {type(exc).__name__}: {exc}")
        if size > self.max_answer_bytes:
            return _failed_turn(item, f"the workflow's turn answered {size} bytes of actions, over the limit of "
                                f"{self.max_answer_bytes} (HEADRACE_MAX_PAYLOAD_BYTES)", "PayloadTooLargeError")
        return answer

    def complete(self, response: pb.WorkflowResponse) -> bool:
        return self.streams.complete(response.completionToken, response, answer_key(response.instanceId))


def _failed_turn(item: WorkflowWorkItem, message: str, error_type: str = "InvalidAnswerError") -> WorkflowAnswer:
    """An answer that fails the instance of `item` for `message` (the engine records it as any answer)."""
    failure = FailureDetails(error_type=error_type, message=message[:2000], non_retriable=True)
    return WorkflowAnswer(instance_id=item.instance_id, execution_id=item.execution_id, turn=item.turn,
                          completion=CompleteWorkflow(id=-1, status=RuntimeStatus.FAILED, failure=failure))


def answer_key(instance_id: str, task_id: int | None = None) -> str:
    """daprd's name of an item out: a turn by its instance (one turn out per instance), an activity by
    instance and task ID (durabletask-go `GetActivityExecutionKey`)."""
    return instance_id if task_id is None else f"{instance_id}/{task_id}"


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

