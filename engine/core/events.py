"""History events: the facts an instance's history is made of.

Modeled on durabletask's `HistoryEvent` (with Dapr's 2026 names: `WorkflowStarted`,
`ChildWorkflow*`), so a history reads familiarly to anyone who knows Dapr or Durable Functions.

Every event carries:
- `seq`: its position in the instance's history (0, 1, 2, … with no gaps), set when appended;
- `event_id`: for events that record an action (`TaskScheduled`, `TimerCreated`,
  `ChildWorkflowCreated`) the action's ID, matched on replay; -1 otherwise, as in durabletask;
- `timestamp`: when the engine recorded it (UTC).

Payloads (`input`, `result`) are JSON text, as in durabletask's `StringValue` fields: the engine
passes them through without parsing, and `None` (no payload) stays distinct from `"null"`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from .frozen import quick_init
from .values import FailureDetails, ParentInstance, RuntimeStatus

__all__ = [
    "EVENT_TYPES",
    "ChildWorkflowCompleted",
    "ChildWorkflowCreated",
    "ChildWorkflowFailed",
    "ContinuedAsNew",
    "EventRaised",
    "EventSent",
    "ExecutionCompleted",
    "ExecutionResumed",
    "ExecutionStarted",
    "ExecutionSuspended",
    "ExecutionTerminated",
    "HistoryEvent",
    "TaskCompleted",
    "TaskFailed",
    "TaskScheduled",
    "TimerCreated",
    "TimerFired",
    "WorkflowCompleted",
    "WorkflowStarted",
]


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryEvent:
    """Base of every history event."""

    VERSION: ClassVar[int] = 1

    timestamp: datetime
    seq: int = -1
    event_id: int = -1


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowStarted(HistoryEvent):
    """Marks the start of one turn of the workflow code; its timestamp is `current_utc_datetime`."""

    #: Patches the code first found applied in this turn (`ctx.is_patched`), as durabletask records
    #: them on the turn's `OrchestratorStarted` (`version.patches`, github.com/dapr/durabletask-python
    #: durabletask/worker.py): a replay answers True for them from this turn on.
    patches: tuple[str, ...] = ()


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowCompleted(HistoryEvent):
    """Marks the end of one turn of the workflow code, with the custom status the code left."""

    custom_status: str | None = None


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionStarted(HistoryEvent):
    """An instance (or a new generation of it, after continue-as-new) begins."""

    name: str
    instance_id: str
    execution_id: str
    input: str | None = None
    parent: ParentInstance | None = None
    scheduled_start: datetime | None = None
    #: History the caller handed on (`engine.core.propagation`), JSON text; kept for every replay.
    propagated_history: str | None = None
    #: The named version of a versioned workflow this run executes (`versioned_workflow`); chosen
    #: once, at the start, so every replay runs the same version.
    workflow_version: str | None = None


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionCompleted(HistoryEvent):
    """The instance reached COMPLETED, FAILED or TERMINATED."""

    status: RuntimeStatus
    result: str | None = None
    failure: FailureDetails | None = None


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionTerminated(HistoryEvent):
    """Somebody asked to terminate the instance; `recurse` reaches running children too."""

    output: str | None = None
    recurse: bool = True
    command_id: str = ""


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionSuspended(HistoryEvent):
    """The instance is paused: events that arrive now wait until it is resumed."""

    reason: str | None = None
    command_id: str = ""


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionResumed(HistoryEvent):
    """The instance is resumed: events buffered while it was paused are delivered."""

    reason: str | None = None
    command_id: str = ""


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class ContinuedAsNew(HistoryEvent):
    """The workflow called `continue_as_new`: this generation ends, the next starts from `input`."""

    input: str | None = None
    carryover_events: int = 0


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class TaskScheduled(HistoryEvent):
    """An activity was scheduled; `event_id` is the task's ID."""

    name: str
    input: str | None = None
    task_execution_id: str = ""
    #: The app the activity was sent to (`call_activity(..., app_id=)`), as the code named it;
    #: None: the workflow's own app (`engine.core.apps`).
    app_id: str | None = None


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class TaskCompleted(HistoryEvent):
    task_scheduled_id: int
    result: str | None = None
    task_execution_id: str = ""


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class TaskFailed(HistoryEvent):
    task_scheduled_id: int
    failure: FailureDetails
    task_execution_id: str = ""


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class TimerCreated(HistoryEvent):
    """A durable timer was created; `event_id` is the timer's ID.

    `origin` says why: `timer` (create_timer), `retry` (a retry policy's back-off) or
    `external_event` (the timeout of wait_for_external_event).
    """

    fire_at: datetime
    origin: str = "timer"


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class TimerFired(HistoryEvent):
    timer_id: int
    fire_at: datetime


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class ChildWorkflowCreated(HistoryEvent):
    """A child workflow was started; `event_id` is the parent's task ID for it."""

    instance_id: str
    name: str
    input: str | None = None
    #: The app the child was started in (`call_child_workflow(..., app_id=)`), as the code named
    #: it; None: the parent's own app. Recursive terminate and purge reach the child there.
    app_id: str | None = None


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class ChildWorkflowCompleted(HistoryEvent):
    task_scheduled_id: int
    result: str | None = None


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class ChildWorkflowFailed(HistoryEvent):
    task_scheduled_id: int
    failure: FailureDetails


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class EventRaised(HistoryEvent):
    """An external event reached the instance. Names compare case-insensitively.

    `command_id` is the ID of the RaiseEvent command that brought it (empty for carried-over events):
    the instance remembers recent ones, so the same command sent twice raises the event once.
    """

    name: str
    input: str | None = None
    command_id: str = ""


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class EventSent(HistoryEvent):
    """The instance sent event `name` to instance `instance_id` (its action `event_id`)."""

    instance_id: str
    name: str
    input: str | None = None


EVENT_TYPES: tuple[type[HistoryEvent], ...] = (
    WorkflowStarted,
    WorkflowCompleted,
    ExecutionStarted,
    ExecutionCompleted,
    ExecutionTerminated,
    ExecutionSuspended,
    ExecutionResumed,
    ContinuedAsNew,
    TaskScheduled,
    TaskCompleted,
    TaskFailed,
    TimerCreated,
    TimerFired,
    ChildWorkflowCreated,
    ChildWorkflowCompleted,
    ChildWorkflowFailed,
    EventRaised,
    EventSent,
)
