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

The module is compiled in the native build (`[tool.headrace] native-modules`): its classes are
then native ones, which compiled code builds and reads from their C struct (docs/performance.md,
"The compiled build"). That is why each class writes out its `__init__` (mypyc compiles it, where
the one `dataclass` writes stays interpreted), and why the schema version and `quick_init` are set
after the classes rather than in them (`core.frozen.declared`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .frozen import declared
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


@dataclass(frozen=True, slots=True, kw_only=True, init=False)
class HistoryEvent:
    """Base of every history event."""

    timestamp: datetime
    seq: int = -1
    event_id: int = -1

    def __init__(self, *, timestamp: datetime, seq: int = -1, event_id: int = -1) -> None:
        object.__setattr__(self, "timestamp", timestamp)
        object.__setattr__(self, "seq", seq)
        object.__setattr__(self, "event_id", event_id)


@dataclass(frozen=True, slots=True, kw_only=True, init=False)
class WorkflowStarted(HistoryEvent):
    """Marks the start of one turn of the workflow code; its timestamp is `current_utc_datetime`."""

    #: Patches the code first found applied in this turn (`ctx.is_patched`), as durabletask records
    #: them on the turn's `OrchestratorStarted` (`version.patches`, github.com/dapr/durabletask-python
    #: durabletask/worker.py): a replay answers True for them from this turn on.
    patches: tuple[str, ...] = ()

    def __init__(self, *, timestamp: datetime, seq: int = -1, event_id: int = -1,
                 patches: tuple[str, ...] = ()) -> None:
        object.__setattr__(self, "timestamp", timestamp)
        object.__setattr__(self, "seq", seq)
        object.__setattr__(self, "event_id", event_id)
        object.__setattr__(self, "patches", patches)


@dataclass(frozen=True, slots=True, kw_only=True, init=False)
class WorkflowCompleted(HistoryEvent):
    """Marks the end of one turn of the workflow code, with the custom status the code left."""

    custom_status: str | None = None

    def __init__(self, *, timestamp: datetime, seq: int = -1, event_id: int = -1,
                 custom_status: str | None = None) -> None:
        object.__setattr__(self, "timestamp", timestamp)
        object.__setattr__(self, "seq", seq)
        object.__setattr__(self, "event_id", event_id)
        object.__setattr__(self, "custom_status", custom_status)


@dataclass(frozen=True, slots=True, kw_only=True, init=False)
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

    def __init__(self, *, timestamp: datetime, seq: int = -1, event_id: int = -1, name: str, instance_id: str,
                 execution_id: str, input: str | None = None, parent: ParentInstance | None = None,
                 scheduled_start: datetime | None = None, propagated_history: str | None = None,
                 workflow_version: str | None = None) -> None:
        object.__setattr__(self, "timestamp", timestamp)
        object.__setattr__(self, "seq", seq)
        object.__setattr__(self, "event_id", event_id)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "instance_id", instance_id)
        object.__setattr__(self, "execution_id", execution_id)
        object.__setattr__(self, "input", input)
        object.__setattr__(self, "parent", parent)
        object.__setattr__(self, "scheduled_start", scheduled_start)
        object.__setattr__(self, "propagated_history", propagated_history)
        object.__setattr__(self, "workflow_version", workflow_version)


@dataclass(frozen=True, slots=True, kw_only=True, init=False)
class ExecutionCompleted(HistoryEvent):
    """The instance reached COMPLETED, FAILED or TERMINATED."""

    status: RuntimeStatus
    result: str | None = None
    failure: FailureDetails | None = None

    def __init__(self, *, timestamp: datetime, seq: int = -1, event_id: int = -1, status: RuntimeStatus,
                 result: str | None = None, failure: FailureDetails | None = None) -> None:
        object.__setattr__(self, "timestamp", timestamp)
        object.__setattr__(self, "seq", seq)
        object.__setattr__(self, "event_id", event_id)
        object.__setattr__(self, "status", status)
        object.__setattr__(self, "result", result)
        object.__setattr__(self, "failure", failure)


@dataclass(frozen=True, slots=True, kw_only=True, init=False)
class ExecutionTerminated(HistoryEvent):
    """Somebody asked to terminate the instance; `recurse` reaches running children too."""

    output: str | None = None
    recurse: bool = True
    command_id: str = ""

    def __init__(self, *, timestamp: datetime, seq: int = -1, event_id: int = -1, output: str | None = None,
                 recurse: bool = True, command_id: str = "") -> None:
        object.__setattr__(self, "timestamp", timestamp)
        object.__setattr__(self, "seq", seq)
        object.__setattr__(self, "event_id", event_id)
        object.__setattr__(self, "output", output)
        object.__setattr__(self, "recurse", recurse)
        object.__setattr__(self, "command_id", command_id)


@dataclass(frozen=True, slots=True, kw_only=True, init=False)
class ExecutionSuspended(HistoryEvent):
    """The instance is paused: events that arrive now wait until it is resumed."""

    reason: str | None = None
    command_id: str = ""

    def __init__(self, *, timestamp: datetime, seq: int = -1, event_id: int = -1, reason: str | None = None,
                 command_id: str = "") -> None:
        object.__setattr__(self, "timestamp", timestamp)
        object.__setattr__(self, "seq", seq)
        object.__setattr__(self, "event_id", event_id)
        object.__setattr__(self, "reason", reason)
        object.__setattr__(self, "command_id", command_id)


@dataclass(frozen=True, slots=True, kw_only=True, init=False)
class ExecutionResumed(HistoryEvent):
    """The instance is resumed: events buffered while it was paused are delivered."""

    reason: str | None = None
    command_id: str = ""

    def __init__(self, *, timestamp: datetime, seq: int = -1, event_id: int = -1, reason: str | None = None,
                 command_id: str = "") -> None:
        object.__setattr__(self, "timestamp", timestamp)
        object.__setattr__(self, "seq", seq)
        object.__setattr__(self, "event_id", event_id)
        object.__setattr__(self, "reason", reason)
        object.__setattr__(self, "command_id", command_id)


@dataclass(frozen=True, slots=True, kw_only=True, init=False)
class ContinuedAsNew(HistoryEvent):
    """The workflow called `continue_as_new`: this generation ends, the next starts from `input`."""

    input: str | None = None
    carryover_events: int = 0

    def __init__(self, *, timestamp: datetime, seq: int = -1, event_id: int = -1, input: str | None = None,
                 carryover_events: int = 0) -> None:
        object.__setattr__(self, "timestamp", timestamp)
        object.__setattr__(self, "seq", seq)
        object.__setattr__(self, "event_id", event_id)
        object.__setattr__(self, "input", input)
        object.__setattr__(self, "carryover_events", carryover_events)


@dataclass(frozen=True, slots=True, kw_only=True, init=False)
class TaskScheduled(HistoryEvent):
    """An activity was scheduled; `event_id` is the task's ID."""

    name: str
    input: str | None = None
    task_execution_id: str = ""
    #: The app the activity was sent to (`call_activity(..., app_id=)`), as the code named it;
    #: None: the workflow's own app (`engine.core.apps`).
    app_id: str | None = None

    def __init__(self, *, timestamp: datetime, seq: int = -1, event_id: int = -1, name: str, input: str | None = None,
                 task_execution_id: str = "", app_id: str | None = None) -> None:
        object.__setattr__(self, "timestamp", timestamp)
        object.__setattr__(self, "seq", seq)
        object.__setattr__(self, "event_id", event_id)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "input", input)
        object.__setattr__(self, "task_execution_id", task_execution_id)
        object.__setattr__(self, "app_id", app_id)


@dataclass(frozen=True, slots=True, kw_only=True, init=False)
class TaskCompleted(HistoryEvent):
    task_scheduled_id: int
    result: str | None = None
    task_execution_id: str = ""

    def __init__(self, *, timestamp: datetime, seq: int = -1, event_id: int = -1, task_scheduled_id: int,
                 result: str | None = None, task_execution_id: str = "") -> None:
        object.__setattr__(self, "timestamp", timestamp)
        object.__setattr__(self, "seq", seq)
        object.__setattr__(self, "event_id", event_id)
        object.__setattr__(self, "task_scheduled_id", task_scheduled_id)
        object.__setattr__(self, "result", result)
        object.__setattr__(self, "task_execution_id", task_execution_id)


@dataclass(frozen=True, slots=True, kw_only=True, init=False)
class TaskFailed(HistoryEvent):
    task_scheduled_id: int
    failure: FailureDetails
    task_execution_id: str = ""

    def __init__(self, *, timestamp: datetime, seq: int = -1, event_id: int = -1, task_scheduled_id: int,
                 failure: FailureDetails, task_execution_id: str = "") -> None:
        object.__setattr__(self, "timestamp", timestamp)
        object.__setattr__(self, "seq", seq)
        object.__setattr__(self, "event_id", event_id)
        object.__setattr__(self, "task_scheduled_id", task_scheduled_id)
        object.__setattr__(self, "failure", failure)
        object.__setattr__(self, "task_execution_id", task_execution_id)


@dataclass(frozen=True, slots=True, kw_only=True, init=False)
class TimerCreated(HistoryEvent):
    """A durable timer was created; `event_id` is the timer's ID.

    `origin` says why: `timer` (create_timer), `retry` (a retry policy's back-off) or
    `external_event` (the timeout of wait_for_external_event).
    """

    fire_at: datetime
    origin: str = "timer"

    def __init__(self, *, timestamp: datetime, seq: int = -1, event_id: int = -1, fire_at: datetime,
                 origin: str = "timer") -> None:
        object.__setattr__(self, "timestamp", timestamp)
        object.__setattr__(self, "seq", seq)
        object.__setattr__(self, "event_id", event_id)
        object.__setattr__(self, "fire_at", fire_at)
        object.__setattr__(self, "origin", origin)


@dataclass(frozen=True, slots=True, kw_only=True, init=False)
class TimerFired(HistoryEvent):
    timer_id: int
    fire_at: datetime

    def __init__(self, *, timestamp: datetime, seq: int = -1, event_id: int = -1, timer_id: int,
                 fire_at: datetime) -> None:
        object.__setattr__(self, "timestamp", timestamp)
        object.__setattr__(self, "seq", seq)
        object.__setattr__(self, "event_id", event_id)
        object.__setattr__(self, "timer_id", timer_id)
        object.__setattr__(self, "fire_at", fire_at)


@dataclass(frozen=True, slots=True, kw_only=True, init=False)
class ChildWorkflowCreated(HistoryEvent):
    """A child workflow was started; `event_id` is the parent's task ID for it."""

    instance_id: str
    name: str
    input: str | None = None
    #: The app the child was started in (`call_child_workflow(..., app_id=)`), as the code named
    #: it; None: the parent's own app. Recursive terminate and purge reach the child there.
    app_id: str | None = None

    def __init__(self, *, timestamp: datetime, seq: int = -1, event_id: int = -1, instance_id: str, name: str,
                 input: str | None = None, app_id: str | None = None) -> None:
        object.__setattr__(self, "timestamp", timestamp)
        object.__setattr__(self, "seq", seq)
        object.__setattr__(self, "event_id", event_id)
        object.__setattr__(self, "instance_id", instance_id)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "input", input)
        object.__setattr__(self, "app_id", app_id)


@dataclass(frozen=True, slots=True, kw_only=True, init=False)
class ChildWorkflowCompleted(HistoryEvent):
    task_scheduled_id: int
    result: str | None = None

    def __init__(self, *, timestamp: datetime, seq: int = -1, event_id: int = -1, task_scheduled_id: int,
                 result: str | None = None) -> None:
        object.__setattr__(self, "timestamp", timestamp)
        object.__setattr__(self, "seq", seq)
        object.__setattr__(self, "event_id", event_id)
        object.__setattr__(self, "task_scheduled_id", task_scheduled_id)
        object.__setattr__(self, "result", result)


@dataclass(frozen=True, slots=True, kw_only=True, init=False)
class ChildWorkflowFailed(HistoryEvent):
    task_scheduled_id: int
    failure: FailureDetails

    def __init__(self, *, timestamp: datetime, seq: int = -1, event_id: int = -1, task_scheduled_id: int,
                 failure: FailureDetails) -> None:
        object.__setattr__(self, "timestamp", timestamp)
        object.__setattr__(self, "seq", seq)
        object.__setattr__(self, "event_id", event_id)
        object.__setattr__(self, "task_scheduled_id", task_scheduled_id)
        object.__setattr__(self, "failure", failure)


@dataclass(frozen=True, slots=True, kw_only=True, init=False)
class EventRaised(HistoryEvent):
    """An external event reached the instance. Names compare case-insensitively.

    `command_id` is the ID of the RaiseEvent command that brought it (empty for carried-over events):
    the instance remembers recent ones, so the same command sent twice raises the event once.
    """

    name: str
    input: str | None = None
    command_id: str = ""

    def __init__(self, *, timestamp: datetime, seq: int = -1, event_id: int = -1, name: str, input: str | None = None,
                 command_id: str = "") -> None:
        object.__setattr__(self, "timestamp", timestamp)
        object.__setattr__(self, "seq", seq)
        object.__setattr__(self, "event_id", event_id)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "input", input)
        object.__setattr__(self, "command_id", command_id)


@dataclass(frozen=True, slots=True, kw_only=True, init=False)
class EventSent(HistoryEvent):
    """The instance sent event `name` to instance `instance_id` (its action `event_id`)."""

    instance_id: str
    name: str
    input: str | None = None

    def __init__(self, *, timestamp: datetime, seq: int = -1, event_id: int = -1, instance_id: str, name: str,
                 input: str | None = None) -> None:
        object.__setattr__(self, "timestamp", timestamp)
        object.__setattr__(self, "seq", seq)
        object.__setattr__(self, "event_id", event_id)
        object.__setattr__(self, "instance_id", instance_id)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "input", input)


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


declared(HistoryEvent, version=1, quickened=(HistoryEvent, *EVENT_TYPES))
