"""The tasks a workflow yields: activities, timers, children, external events, and their composites."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Generic, TypeVar

from ..errors import WorkflowError
from .values import FailureDetails

__all__ = [
    "ActivityTask",
    "ChildWorkflowTask",
    "CompletableTask",
    "ExternalEventTask",
    "Task",
    "TaskFailedError",
    "TimerTask",
    "WhenAllTask",
    "WhenAnyTask",
    "when_all",
    "when_any",
]

T = TypeVar("T")


class TaskFailedError(WorkflowError):
    """An activity or child workflow failed; `details` carries the inner failure."""

    def __init__(self, message: str, details: FailureDetails) -> None:
        super().__init__(message)
        self._details = details

    @property
    def details(self) -> FailureDetails:
        return self._details


class Task(Generic[T]):
    """Something a workflow can `yield` and resume on when it completes."""

    __slots__ = ("_complete", "_exception", "_parents", "_result")

    def __init__(self) -> None:
        self._complete = False
        self._result: Any = None
        self._exception: BaseException | None = None
        self._parents: list[_CompositeTask[Any]] = []

    @property
    def is_complete(self) -> bool:
        return self._complete

    @property
    def is_failed(self) -> bool:
        return self._exception is not None

    def get_result(self) -> T:
        if not self._complete:
            raise WorkflowError("the task is not complete yet")
        if self._exception is not None:
            raise self._exception
        return self._result  # type: ignore[no-any-return]

    def get_exception(self) -> BaseException:
        if self._exception is None:
            raise WorkflowError("the task did not fail")
        return self._exception

    def _settle(self, result: Any, exception: BaseException | None) -> None:
        if self._complete:
            return
        self._complete = True
        self._result = result
        self._exception = exception
        for parent in self._parents:
            parent._on_child_settled(self)


class CompletableTask(Task[T]):
    """A task settled by the executor when its history event arrives."""

    __slots__ = ()

    def complete(self, result: T) -> None:
        self._settle(result, None)

    def fail(self, exception: BaseException) -> None:
        self._settle(None, exception)


class ActivityTask(CompletableTask[T]):
    """An activity call; with a retry policy it survives failed attempts until the policy gives up."""

    __slots__ = ("app_id", "attempt", "first_attempt_at", "input", "name", "propagation", "retry_policy")

    def __init__(self, name: str, input: str | None, retry_policy: Any, first_attempt_at: datetime,
                 propagation: str = "", app_id: str | None = None) -> None:
        super().__init__()
        self.name = name
        self.input = input
        self.retry_policy = retry_policy
        self.attempt = 1
        self.first_attempt_at = first_attempt_at
        #: The `PropagationScope` name each attempt hands on ("" for none).
        self.propagation = propagation
        #: The app each attempt goes to (None: the workflow's own), so a retry goes where the first did.
        self.app_id = app_id


class ChildWorkflowTask(ActivityTask[T]):
    __slots__ = ("instance_id",)

    def __init__(
        self, name: str, input: str | None, retry_policy: Any, first_attempt_at: datetime, instance_id: str,
        propagation: str = "", app_id: str | None = None,
    ) -> None:
        super().__init__(name, input, retry_policy, first_attempt_at, propagation, app_id)
        self.instance_id = instance_id


class TimerTask(CompletableTask[None]):
    __slots__ = ("fire_at",)

    def __init__(self, fire_at: datetime) -> None:
        super().__init__()
        self.fire_at = fire_at


class ExternalEventTask(CompletableTask[T]):
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name


class _CompositeTask(Task[T]):
    __slots__ = ("_children", "_settled")

    def __init__(self, children: Sequence[Task[Any]]) -> None:
        super().__init__()
        self._children = list(children)
        self._settled = 0
        for child in self._children:
            if not isinstance(child, Task):
                raise TypeError(f"expected a Task, got {type(child).__name__}")
            child._parents.append(self)
        for child in self._children:
            if child.is_complete:
                self._on_child_settled(child)
        if not self._children:
            self._on_empty()

    def _on_child_settled(self, child: Task[Any]) -> None:
        raise NotImplementedError

    def _on_empty(self) -> None:
        raise NotImplementedError


class WhenAllTask(_CompositeTask[list[Any]]):
    """Completes with every child's result, in order; fails with the first failure once all settled."""

    __slots__ = ("_first_failure",)

    def __init__(self, children: Sequence[Task[Any]]) -> None:
        # Set before the base class counts children that are already complete.
        self._first_failure: BaseException | None = None
        super().__init__(children)

    def _on_child_settled(self, child: Task[Any]) -> None:
        self._settled += 1
        # The first failure in time (as durabletask's WhenAllTask keeps it), not in list order.
        if child.is_failed and self._first_failure is None:
            self._first_failure = child.get_exception()
        if self._settled < len(self._children):
            return
        if self._first_failure is not None:
            self._settle(None, self._first_failure)
        else:
            self._settle([c._result for c in self._children], None)

    def _on_empty(self) -> None:
        self._settle([], None)


class WhenAnyTask(_CompositeTask[Task[Any]]):
    """Completes with the first child to settle (the task object itself, as in Dapr)."""

    __slots__ = ()

    def _on_child_settled(self, child: Task[Any]) -> None:
        self._settle(child, None)

    def _on_empty(self) -> None:
        raise ValueError("when_any needs at least one task")


def when_all(tasks: Sequence[Task[T]]) -> WhenAllTask:
    """A task that completes when all `tasks` complete, with the list of their results."""
    return WhenAllTask(tasks)


def when_any(tasks: Sequence[Task[Any]]) -> WhenAnyTask:
    """A task that completes when any of `tasks` completes, with that winning task."""
    return WhenAnyTask(tasks)
