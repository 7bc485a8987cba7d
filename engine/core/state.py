"""The fold: `state + event -> state` for one workflow instance.

`InstanceState` is what the engine knows about an instance without running its code: status,
payloads, times, and what it waits for (activities, timers, children). It is what the status view
serves and what decides whether an input is still wanted (a result for a task that is no longer
pending is a duplicate). Events are validated as they are folded: an event that cannot follow the
current state raises `InvalidTransitionError` with a message naming both.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, ClassVar, TypeVar

from ..errors import InvalidTransitionError
from . import commands as cmd
from . import events as ev
from .apps import ChildApp
from .frozen import evolved
from .values import FailureDetails, ParentInstance, RuntimeStatus

__all__ = ["CodeWait", "DurableTimer", "InstanceState", "RemoteTurn", "ScheduledStart", "Timer", "fold", "fold_all",
           "shown_status"]

_EMPTY: Mapping[Any, Any] = MappingProxyType({})
#: RUNNING and SUSPENDED, named once: on Python 3.11 reading a member off an enum class goes
#: through the metaclass's `__getattr__` hook (0.2 us), and the fold asks for every event.
_LIVE = (RuntimeStatus.RUNNING, RuntimeStatus.SUSPENDED)


def shown_status(status: RuntimeStatus, waiting_for_code: datetime | None) -> RuntimeStatus:
    """The status readers show: STALLED for a live instance that waits for its code
    (`engine.core.unknown_code`), which is stored as RUNNING so the core's rules stay as they are.
    A function of the two fields, so a reader that decodes only those (`wire.records.summarize_state`)
    applies the same rule."""
    if status in _LIVE and waiting_for_code is not None:
        return RuntimeStatus.STALLED
    return status


#: How many command IDs an instance remembers. A duplicate comes from a retrying producer or user
#: within moments of the original, so a short memory is enough and keeps the state record small.
RECENT_COMMANDS = 32


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteTurn:
    """Where the turns of a remotely run workflow stand (`engine.core.remote`): one at a time."""

    #: Events of the current execution the app has been given (the history length at the last hand-out):
    #: the turn's number, which its answer must carry.
    seen: int = 0
    #: A turn is out: its answer has not been recorded yet.
    out: bool = False
    #: Inputs were recorded while the turn was out: another turn follows its answer.
    due: bool = False
    #: When the turn that is out was handed out (shown while it waits for the app's answer).
    since: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceState:
    """The latest state of one workflow instance: the value of its record in the status topic."""

    VERSION: ClassVar[int] = 1

    instance_id: str
    name: str = ""
    status: RuntimeStatus = RuntimeStatus.PENDING
    execution_id: str = ""
    #: The execution ID of the first generation: one run keeps it across continue-as-new.
    run_id: str = ""
    input: str | None = None
    output: str | None = None
    custom_status: str | None = None
    failure: FailureDetails | None = None
    created_at: datetime | None = None
    last_updated_at: datetime | None = None
    completed_at: datetime | None = None
    parent: ParentInstance | None = None
    #: Events appended to the history of the current generation (the next event's `seq`).
    history_length: int = 0
    #: How many times the instance continued as new.
    generation: int = 0
    pending_tasks: Mapping[int, str] = field(default_factory=lambda: _EMPTY)
    pending_timers: Mapping[int, datetime] = field(default_factory=lambda: _EMPTY)
    pending_children: Mapping[int, str] = field(default_factory=lambda: _EMPTY)
    #: External events that arrived while the instance was paused, held for the resume.
    buffered_events: int = 0
    #: Every child this generation started, finished or not: what a recursive purge reaches.
    children: tuple[str, ...] = ()
    #: The children this generation started in a named app (`call_child_workflow(..., app_id=)`):
    #: where a recursive terminate or purge reaches them (`engine.core.apps`).
    child_apps: tuple[ChildApp, ...] = ()
    #: When a start was scheduled for later (`start_at`): the instance is PENDING until then.
    scheduled_start: datetime | None = None
    #: IDs of the last commands applied (bounded): a command delivered twice changes nothing. A
    #: start refused over this instance is recorded here too (its own run would have `run_id` equal
    #: to its command ID), so whoever sent it can see the refusal in the status view.
    recent_commands: tuple[str, ...] = ()
    #: A finished instance's children that had not reported their end when it finished (task ID to
    #: child ID); each is removed when its result arrives late. While any is left, a new start with
    #: this instance's ID is refused, as daprd refuses to recreate a workflow whose child still runs.
    unfinished_children: Mapping[int, str] = field(default_factory=lambda: _EMPTY)
    #: An instance whose workflow name the engine holding it does not know: since when it has
    #: waited for a process that does (`engine.core.unknown_code`). A PENDING one waits to start;
    #: a running one has its inputs recorded, to be run by the code once it is known.
    waiting_for_code: datetime | None = None
    #: The named version of a versioned workflow the current generation runs (from `ExecutionStarted`).
    workflow_version: str | None = None
    #: External events sent to a PENDING instance (scheduled for later, or waiting for its code),
    #: applied in order right after its start: durabletask's backends likewise keep events sent
    #: before a start in the instance's inbox (github.com/dapr/durabletask-go, backend/runtimestate.go).
    early_events: tuple[ev.EventRaised, ...] = ()
    #: A suspend sent to a PENDING instance and not resumed since: the run starts suspended.
    starts_suspended: bool = False
    #: The history a PENDING start was handed (`engine.core.propagation`), kept for the start.
    propagated_history: str | None = None
    #: A workflow whose code runs in a connected app (`engine.core.remote`): where its turns stand.
    remote: RemoteTurn | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    @property
    def shown_status(self) -> RuntimeStatus:
        """The status readers show (the module's `shown_status`)."""
        return shown_status(self.status, self.waiting_for_code)

    @property
    def is_running(self) -> bool:
        """Started and not finished (RUNNING or SUSPENDED)."""
        return self.status in _LIVE

    def child_app(self, child_id: str) -> str | None:
        """The app child `child_id` was started in, when the code named one (`child_apps`)."""
        return next((c.app_id for c in self.child_apps if c.instance_id == child_id), None)

    def timers(self) -> list[Timer]:
        """What the instance waits for in time: its start, if scheduled for later, and its durable
        timers (how an engine rebuilds its timers from stored states)."""
        timers: list[Timer] = []
        if self.status is RuntimeStatus.PENDING and self.waiting_for_code is not None:
            # Due already: a process that takes the partition over looks at once whether it knows the code.
            timers.append(ScheduledStart(due=self.waiting_for_code, instance_id=self.instance_id))
        elif self.status is RuntimeStatus.PENDING and self.scheduled_start is not None:
            timers.append(ScheduledStart(due=self.scheduled_start, instance_id=self.instance_id))
        elif self.is_running and self.waiting_for_code is not None:
            timers.append(CodeWait(due=self.waiting_for_code, instance_id=self.instance_id,
                                   execution_id=self.execution_id))
        timers.extend(DurableTimer(due=fire_at, instance_id=self.instance_id, execution_id=self.execution_id,
                                   timer_id=timer_id) for timer_id, fire_at in self.pending_timers.items())
        return timers


@dataclass(frozen=True, slots=True, kw_only=True)
class Timer:
    """Something an instance waits for until `due`. Timers order by due time (then instance, then
    timer), so a heap of them fires in due order, and the same order after a restart."""

    due: datetime
    instance_id: str

    def __lt__(self, other: Timer) -> bool:
        if self.due != other.due:
            return self.due < other.due
        if self.instance_id != other.instance_id:
            return self.instance_id < other.instance_id
        # Of one instance's timers due at once, its start goes first, then its timers in creation order.
        if isinstance(other, DurableTimer):
            return not isinstance(self, DurableTimer) or self.timer_id < other.timer_id
        return False


@dataclass(frozen=True, slots=True, kw_only=True)
class DurableTimer(Timer):
    """Durable timer `timer_id` of execution `execution_id` (a `TimerCreated` event's)."""

    execution_id: str
    timer_id: int

    def message(self) -> cmd.TimerFiring:
        return cmd.TimerFiring(instance_id=self.instance_id, execution_id=self.execution_id,
                               timer_id=self.timer_id, fire_at=self.due)


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduledStart(Timer):
    """The instance's start, scheduled for `due` (Dapr's `start_at`); it is PENDING until then."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CodeWait(Timer):
    """A running instance's next look at whether its engine knows its workflow
    (`engine.core.unknown_code`); rebuilt due at once, so a new owner of the partition looks first."""

    execution_id: str


def fold(state: InstanceState, event: ev.HistoryEvent) -> InstanceState:
    return fold_all(state, (event,))


def fold_all(state: InstanceState, events: Iterable[ev.HistoryEvent]) -> InstanceState:
    """Apply events in order. Copies the pending maps once per call, not once per event."""
    draft = _Draft(state)
    for event in events:
        draft.apply(event)
    return draft.freeze()


V = TypeVar("V")


def _copy(mapping: Mapping[int, V]) -> dict[int, V]:
    """A plain dict copy. `dict(proxy)` reads a `MappingProxyType` (what a state holds) key by key,
    four to seven times slower than its own `copy`, which copies the mapping underneath: a dict
    when the fold made it, but a proxy can hold any mapping, and its `copy` is that mapping's."""
    copied = mapping.copy() if isinstance(mapping, (MappingProxyType, dict)) else None
    return copied if type(copied) is dict else dict(mapping)


class _Draft:
    """A private, mutable copy of a state while a batch of events is folded into it."""

    def __init__(self, state: InstanceState) -> None:
        self.state = state
        self.changes: dict[str, Any] = {}
        self.tasks = _copy(state.pending_tasks)
        self.timers = _copy(state.pending_timers)
        self.children = _copy(state.pending_children)
        self.length = state.history_length
        self.buffered = state.buffered_events

    def get(self, name: str) -> Any:
        return self.changes.get(name, getattr(self.state, name))

    def freeze(self) -> InstanceState:
        changes = self.changes
        changes["history_length"] = self.length
        changes["buffered_events"] = self.buffered
        changes["pending_tasks"] = MappingProxyType(self.tasks)
        changes["pending_timers"] = MappingProxyType(self.timers)
        changes["pending_children"] = MappingProxyType(self.children)
        return evolved(self.state, changes)

    def fail(self, event: ev.HistoryEvent, why: str) -> InvalidTransitionError:
        return InvalidTransitionError(
            f"cannot apply {type(event).__name__} (seq {event.seq}) to instance "
            f"'{self.state.instance_id}' ({self.get('status').value}): {why}"
        )

    def apply(self, event: ev.HistoryEvent) -> None:
        status: RuntimeStatus = self.get("status")
        running = status in _LIVE
        # A turn marker on an instance that is not running opens a new history (a first start,
        # a restart over a finished instance, or the next generation after continue-as-new).
        opens_history = isinstance(event, ev.WorkflowStarted) and not running
        if opens_history:
            self.length = 0
        if event.seq != -1 and event.seq != self.length:
            raise self.fail(event, f"expected sequence number {self.length}; history must have no gaps")
        if isinstance(event, ev.ExecutionStarted):
            self._start(event, running)
            self.length += 1
            return
        if not opens_history:
            if status.is_terminal:
                raise self.fail(event, "the instance has finished")
            if not running:
                raise self.fail(event, "the instance has not started")
        self.length += 1
        self.changes["last_updated_at"] = event.timestamp
        command_id = getattr(event, "command_id", "")
        if command_id:
            recent = (*self.get("recent_commands"), command_id)
            self.changes["recent_commands"] = recent[-RECENT_COMMANDS:]
        if isinstance(event, ev.TaskScheduled):
            self.tasks[event.event_id] = event.name
        elif isinstance(event, (ev.TaskCompleted, ev.TaskFailed)):
            if self.tasks.pop(event.task_scheduled_id, None) is None:
                raise self.fail(event, f"no activity task #{event.task_scheduled_id} is pending")
        elif isinstance(event, ev.TimerCreated):
            self.timers[event.event_id] = event.fire_at
        elif isinstance(event, ev.TimerFired):
            if self.timers.pop(event.timer_id, None) is None:
                raise self.fail(event, f"no timer #{event.timer_id} is pending")
        elif isinstance(event, ev.ChildWorkflowCreated):
            self.children[event.event_id] = event.instance_id
            self.changes["children"] = (*self.get("children"), event.instance_id)
            if event.app_id is not None:
                self.changes["child_apps"] = (*self.get("child_apps"), ChildApp(event.instance_id, event.app_id))
        elif isinstance(event, (ev.ChildWorkflowCompleted, ev.ChildWorkflowFailed)):
            if self.children.pop(event.task_scheduled_id, None) is None:
                raise self.fail(event, f"no child workflow task #{event.task_scheduled_id} is pending")
        elif isinstance(event, ev.EventRaised):
            if status is RuntimeStatus.SUSPENDED:
                self.buffered += 1
        elif isinstance(event, ev.ExecutionSuspended):
            if status is RuntimeStatus.RUNNING:
                self.changes["status"] = RuntimeStatus.SUSPENDED
        elif isinstance(event, ev.ExecutionResumed):
            if status is RuntimeStatus.SUSPENDED:
                self.changes["status"] = RuntimeStatus.RUNNING
                self.buffered = 0
        elif isinstance(event, ev.WorkflowCompleted):
            self.changes["custom_status"] = event.custom_status
        elif isinstance(event, ev.ExecutionCompleted):
            self._end(event.status, event)
            self.changes["output"] = event.result if event.failure is None else None
            self.changes["failure"] = event.failure
        elif isinstance(event, ev.ContinuedAsNew):
            self._end(RuntimeStatus.CONTINUED_AS_NEW, event)
            self.changes["output"] = event.input

    def _start(self, event: ev.ExecutionStarted, running: bool) -> None:
        continuing = self.get("status") is RuntimeStatus.CONTINUED_AS_NEW
        if running:
            raise self.fail(event, "the instance is already running")
        created = self.state.created_at if continuing and self.state.created_at else event.timestamp
        self.changes = {
            "name": event.name,
            "status": RuntimeStatus.RUNNING,
            "execution_id": event.execution_id,
            "run_id": self.state.run_id if continuing else event.execution_id,
            "input": event.input,
            "output": None,
            "failure": None,
            "custom_status": self.get("custom_status") if continuing else None,
            "created_at": created,
            "last_updated_at": event.timestamp,
            "completed_at": None,
            "parent": event.parent,
            "generation": self.state.generation + 1 if continuing else 0,
            "children": (),
            "child_apps": (),
            "scheduled_start": None,
            "waiting_for_code": None,
            "workflow_version": event.workflow_version,
            "unfinished_children": _EMPTY,
            "early_events": (),
            "starts_suspended": False,
            "propagated_history": None,
            "remote": None,
        }
        self.tasks.clear()
        self.timers.clear()
        self.children.clear()
        self.buffered = 0

    def _end(self, status: RuntimeStatus, event: ev.HistoryEvent) -> None:
        self.changes["status"] = status
        self.changes["completed_at"] = event.timestamp
        if status is not RuntimeStatus.CONTINUED_AS_NEW:
            self.changes["unfinished_children"] = MappingProxyType(dict(self.children))
        self.tasks.clear()
        self.timers.clear()
        self.children.clear()
        self.buffered = 0

