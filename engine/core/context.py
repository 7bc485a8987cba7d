"""The context a workflow function receives, with the names of Dapr's `DaprWorkflowContext`.

Everything a workflow may need that would otherwise be non-deterministic lives here, answered from
history: the time (`current_utc_datetime`), identifiers (`new_uuid`), and whether the code is
replaying. Workflow code must use these, never `datetime.now()` or `uuid.uuid4()`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from .ids import check_id
from .propagation import PropagatedHistory, PropagationScope
from .retry import RetryPolicy
from .serializer import to_json
from .tasks import Task

if TYPE_CHECKING:
    from .executor import WorkflowExecution

__all__ = ["DaprWorkflowContext", "WorkflowContext", "registered_name"]

#: Attribute under which decorators record a function's registered name (same as Dapr's SDK).
NAME_ATTRIBUTE = "_dapr_alternate_name"


def registered_name(target: Callable[..., Any] | str) -> str:
    if isinstance(target, str):
        return target
    name = getattr(target, NAME_ATTRIBUTE, None)
    return name if isinstance(name, str) else target.__name__


class DaprWorkflowContext:
    """Passed to every workflow function as its first argument."""

    __slots__ = ("_execution",)

    def __init__(self, execution: WorkflowExecution) -> None:
        self._execution = execution

    @property
    def instance_id(self) -> str:
        return self._execution.instance_id

    @property
    def current_utc_datetime(self) -> datetime:
        """The time of the current turn, from history: the same on every replay."""
        return self._execution.current_utc_datetime

    @property
    def is_replaying(self) -> bool:
        """True while the code re-runs steps that history already records (e.g. to skip logging)."""
        return self._execution.is_replaying

    def set_custom_status(self, custom_status: Any) -> None:
        """Shown as `dapr.workflow.custom_status`: a string as it is, as Dapr's SDK stores it.

        Any other value is stored as its JSON text, which Dapr's SDK still does but deprecates
        (pass a string; `json.dumps` your value first).
        """
        if custom_status is not None and not isinstance(custom_status, str):
            warnings.warn("Passing a non-str value to set_custom_status is deprecated (as in Dapr's SDK): "
                          "serialize your value to a JSON string before calling.", DeprecationWarning, stacklevel=2)
            self._execution.custom_status = to_json(custom_status)
        else:
            self._execution.custom_status = custom_status

    def create_timer(self, fire_at: datetime | timedelta) -> Task[None]:
        """A durable timer; a timedelta counts from `current_utc_datetime`."""
        return self._execution.create_timer(fire_at)

    def call_activity(
        self,
        activity: Callable[..., Any] | str,
        *,
        input: Any = None,
        retry_policy: RetryPolicy | None = None,
        app_id: str | None = None,
        propagation: PropagationScope | None = None,
    ) -> Task[Any]:
        """Schedule an activity; with `app_id`, on the workers of that app (Dapr 1.16's multi-app
        workflows: the result, failures and retries come back here as for a local activity).

        With `propagation`, the activity gets this workflow's history (`OWN_HISTORY`), or that plus
        the history this workflow received (`LINEAGE`), through `ctx.get_propagated_history()`.
        """
        _check_options(retry_policy, app_id)
        return self._execution.call_activity(registered_name(activity), input, retry_policy, _scope(propagation),
                                             app_id)

    def call_child_workflow(
        self,
        workflow: Callable[..., Any] | str,
        *,
        input: Any = None,
        instance_id: str | None = None,
        retry_policy: RetryPolicy | None = None,
        app_id: str | None = None,
        propagation: PropagationScope | None = None,
    ) -> Task[Any]:
        """Start a child workflow; its ID defaults to Dapr's `{instance_id}:0001`, `:0002`, … (the action's number).

        `propagation` hands history on as for `call_activity`; with `app_id` the child runs on that
        app's engines, and terminating or purging this workflow reaches it there.
        """
        _check_options(retry_policy, app_id)
        if instance_id is not None:
            check_id(instance_id, "child instance ID")
        return self._execution.call_child_workflow(registered_name(workflow), input, instance_id, retry_policy,
                                                   _scope(propagation), app_id)

    def get_propagated_history(self) -> PropagatedHistory | None:
        """The history the parent handed on with `propagation=`, or None when it handed on none."""
        return PropagatedHistory.from_json(self._execution.propagated_history)

    def wait_for_external_event(self, name: str, *, timeout: datetime | timedelta | None = None) -> Task[Any]:
        """Wait for an event raised by name (case-insensitive), first-in first-out.

        With a `timeout`, the task fails with `TimeoutError` if no event came by then;
        `timedelta(0)` fails at once when no event is buffered; a negative one waits forever.
        """
        _check_type(name, str, "the event name")
        return self._execution.wait_for_external_event(name, timeout)

    def continue_as_new(self, new_input: Any, *, save_events: bool = False) -> None:
        """End this generation and start the workflow afresh with `new_input` and a new history.

        With `save_events`, external events received but not yet consumed carry over.
        """
        self._execution.continue_as_new(new_input, bool(save_events))

    def is_patched(self, patch_name: str) -> bool:
        """Dapr 1.17 patching: whether this run takes the patched branch named `patch_name` (True for
        new runs; on replay, what the run answered the first time, kept in its history)."""
        _check_type(patch_name, str, "the patch name")
        return self._execution.is_patched(patch_name)

    def new_uuid(self) -> str:
        """A UUID that is the same on every replay (derived from instance, turn time and a counter)."""
        return self._execution.new_uuid()


# The workflow's own arguments are checked here, in Python, so that a wrong type fails the workflow
# with the same TypeError whether the engine runs pure or native (whose compiled executor would
# raise mypyc's own TypeError at its typed parameters, or nothing until a later turn broke).
def _check_type(value: object, kind: type, what: str) -> None:
    if not isinstance(value, kind):
        raise TypeError(f"{what} must be a {kind.__name__}, got {type(value).__name__}")


def _check_options(retry_policy: object, app_id: object) -> None:
    if retry_policy is not None:
        _check_type(retry_policy, RetryPolicy, "retry_policy")
    if app_id is not None:
        _check_type(app_id, str, "app_id")


def _scope(propagation: PropagationScope | None) -> str:
    if propagation is None or propagation is PropagationScope.NONE:
        return ""
    return PropagationScope(propagation).name


#: Dapr exports the abstract type as `WorkflowContext`; here one class serves both names.
WorkflowContext = DaprWorkflowContext
