"""The context an activity function receives."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from ..core.commands import ActivityResult, ActivityWorkItem
from ..core.propagation import PropagatedHistory
from ..core.serializer import call_with_input, to_json
from ..core.values import FailureDetails
from .registry import Registry

__all__ = ["Offload", "WorkflowActivityContext", "oversized_result", "run_activity"]

#: Runs a sync call off the event loop, `offload(fn, *args)`, and gives its value or raises its
#: exception: how a worker hands sync activities to its threads (`runtime.worker.DaemonThreadPool`).
Offload = Callable[..., Awaitable[Any]]


class WorkflowActivityContext:
    """Who called this activity: the workflow instance and its task ID (Dapr's names)."""

    __slots__ = ("_name", "_propagated_history", "_task_execution_id", "_task_id", "_workflow_id")

    def __init__(self, workflow_id: str, task_id: int, name: str = "", task_execution_id: str = "",
                 propagated_history: str | None = None) -> None:
        self._workflow_id = workflow_id
        self._task_id = task_id
        self._name = name
        self._task_execution_id = task_execution_id
        self._propagated_history = propagated_history

    @property
    def workflow_id(self) -> str:
        return self._workflow_id

    @property
    def orchestration_id(self) -> str:
        return self._workflow_id

    @property
    def task_id(self) -> int:
        return self._task_id

    @property
    def task_execution_id(self) -> str:
        return self._task_execution_id

    @property
    def activity_name(self) -> str:
        return self._name

    def get_inner_context(self) -> WorkflowActivityContext:
        return self

    def get_propagated_history(self) -> PropagatedHistory | None:
        """The history the calling workflow handed on with `propagation=`, or None."""
        return PropagatedHistory.from_json(self._propagated_history)

    def __repr__(self) -> str:
        return f"WorkflowActivityContext(workflow_id={self._workflow_id!r}, task_id={self._task_id})"


async def run_activity(registry: Registry, item: ActivityWorkItem, offload: Offload | None = None) -> ActivityResult:
    """Run one work item: sync activities through `offload` (on a thread; the loop's default
    executor when None), async ones on the running loop.

    Never raises for the activity's own failure: that becomes the result's failure details.
    """
    fn = registry.get_activity(item.name)
    if fn is None:
        known = ", ".join(sorted(registry.activities)) or "none"
        failure = FailureDetails(
            error_type="UnknownActivityError",
            message=f"no activity named '{item.name}' is registered with this worker (registered: {known})",
            non_retriable=True,
        )
        return _result(item, failure=failure)
    ctx = WorkflowActivityContext(item.instance_id, item.task_id, item.name, item.task_execution_id,
                                  item.propagated_history)
    try:
        if inspect.iscoroutinefunction(fn):
            value = await call_with_input(fn, ctx, item.input)
        else:
            if offload is None:
                value = await asyncio.get_running_loop().run_in_executor(None, call_with_input, fn, ctx, item.input)
            else:
                value = await offload(call_with_input, fn, ctx, item.input)
            if inspect.isawaitable(value):
                value = await value
        return _result(item, result=to_json(value))
    except Exception as exc:
        return _result(item, failure=FailureDetails.from_exception(exc))


def _result(
    item: ActivityWorkItem, *, result: str | None = None, failure: FailureDetails | None = None
) -> ActivityResult:
    return ActivityResult(
        instance_id=item.instance_id,
        execution_id=item.execution_id,
        task_id=item.task_id,
        result=result,
        failure=failure,
    )


def oversized_result(item: ActivityWorkItem, size: int, limit: int) -> ActivityResult:
    """What a worker sends instead of a result whose record would be `size` bytes, over `limit`:
    a non-retriable failure the workflow code can catch (a retry would produce the same result)."""
    return ActivityResult(
        instance_id=item.instance_id, execution_id=item.execution_id, task_id=item.task_id,
        failure=FailureDetails(
            error_type="PayloadTooLargeError",
            message=f"the result of activity '{item.name}' is {size} bytes, over the limit of {limit} bytes",
            non_retriable=True,
        ),
    )
