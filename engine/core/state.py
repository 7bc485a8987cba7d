"""The fold: `state + event -> state` for one workflow instance.

`InstanceState` is what the engine knows about an instance without running its code: status,
payloads, times, and what it waits for (activities, timers, children). It is what the status view
serves and what decides whether an input is still wanted (a result for a task that is no longer
pending is a duplicate). Events are validated as they are folded: an event that cannot follow the
current state raises `InvalidTransitionError` with a message naming both.

The module is compiled in the native build, the fold and the states with it (native classes,
whose fields compiled code reads from their C struct): `InstanceState` writes out its `__init__`
and its `evolved`, and its schema version is set after the class (`core.frozen.declared`).
Compiled, the fold reads the events, compiled too, without the generic attribute lookup it paid
when only the events were (docs/performance.md, "The compiled build").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, TypeVar

from ..errors import InvalidTransitionError
from . import events as ev
from .apps import ChildApp
from .frozen import declared
from .timers import CodeWait, DurableTimer, ScheduledStart, Timer
from .values import FailureDetails, ParentInstance, RuntimeStatus

__all__ = ["InstanceState", "RemoteTurn", "fold", "fold_all", "shown_status"]

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


@dataclass(frozen=True, slots=True, kw_only=True, init=False)
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

    def __init__(self, *, seen: int = 0, out: bool = False, due: bool = False, since: datetime | None = None) -> None:
        object.__setattr__(self, "seen", seen)
        object.__setattr__(self, "out", out)
        object.__setattr__(self, "due", due)
        object.__setattr__(self, "since", since)


@dataclass(frozen=True, slots=True, kw_only=True, init=False)
class InstanceState:
    """The latest state of one workflow instance: the value of its record in the status topic."""

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

    def __init__(self, *, instance_id: str, name: str = "", status: RuntimeStatus = RuntimeStatus.PENDING,
                 execution_id: str = "", run_id: str = "", input: str | None = None, output: str | None = None,
                 custom_status: str | None = None, failure: FailureDetails | None = None,
                 created_at: datetime | None = None, last_updated_at: datetime | None = None,
                 completed_at: datetime | None = None, parent: ParentInstance | None = None, history_length: int = 0,
                 generation: int = 0, pending_tasks: Mapping[int, str] = _EMPTY,
                 pending_timers: Mapping[int, datetime] = _EMPTY, pending_children: Mapping[int, str] = _EMPTY,
                 buffered_events: int = 0, children: tuple[str, ...] = (), child_apps: tuple[ChildApp, ...] = (),
                 scheduled_start: datetime | None = None, recent_commands: tuple[str, ...] = (),
                 unfinished_children: Mapping[int, str] = _EMPTY, waiting_for_code: datetime | None = None,
                 workflow_version: str | None = None, early_events: tuple[ev.EventRaised, ...] = (),
                 starts_suspended: bool = False, propagated_history: str | None = None,
                 remote: RemoteTurn | None = None) -> None:
        object.__setattr__(self, "instance_id", instance_id)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "status", status)
        object.__setattr__(self, "execution_id", execution_id)
        object.__setattr__(self, "run_id", run_id)
        object.__setattr__(self, "input", input)
        object.__setattr__(self, "output", output)
        object.__setattr__(self, "custom_status", custom_status)
        object.__setattr__(self, "failure", failure)
        object.__setattr__(self, "created_at", created_at)
        object.__setattr__(self, "last_updated_at", last_updated_at)
        object.__setattr__(self, "completed_at", completed_at)
        object.__setattr__(self, "parent", parent)
        object.__setattr__(self, "history_length", history_length)
        object.__setattr__(self, "generation", generation)
        object.__setattr__(self, "pending_tasks", pending_tasks)
        object.__setattr__(self, "pending_timers", pending_timers)
        object.__setattr__(self, "pending_children", pending_children)
        object.__setattr__(self, "buffered_events", buffered_events)
        object.__setattr__(self, "children", children)
        object.__setattr__(self, "child_apps", child_apps)
        object.__setattr__(self, "scheduled_start", scheduled_start)
        object.__setattr__(self, "recent_commands", recent_commands)
        object.__setattr__(self, "unfinished_children", unfinished_children)
        object.__setattr__(self, "waiting_for_code", waiting_for_code)
        object.__setattr__(self, "workflow_version", workflow_version)
        object.__setattr__(self, "early_events", early_events)
        object.__setattr__(self, "starts_suspended", starts_suspended)
        object.__setattr__(self, "propagated_history", propagated_history)
        object.__setattr__(self, "remote", remote)

    def evolved(self, changes: dict[str, Any]) -> InstanceState:
        """A copy with `changes`, field name to new value (the fold's next state, once per turn).

        Written out rather than `core.frozen.evolved`: compiled, this class is a native one, built
        only through its constructor, and a call that names each field took 2.0 us where one that
        passes them as a mapping took 9.9 (measured on the compiled build; interpreted the two are
        alike). A test checks that it names every field. Unlike `dataclasses.replace`, a change
        that names no field is ignored: the fold's own changes are the only ones."""
        get = changes.get
        return InstanceState(
            instance_id=get("instance_id", self.instance_id),
            name=get("name", self.name),
            status=get("status", self.status),
            execution_id=get("execution_id", self.execution_id),
            run_id=get("run_id", self.run_id),
            input=get("input", self.input),
            output=get("output", self.output),
            custom_status=get("custom_status", self.custom_status),
            failure=get("failure", self.failure),
            created_at=get("created_at", self.created_at),
            last_updated_at=get("last_updated_at", self.last_updated_at),
            completed_at=get("completed_at", self.completed_at),
            parent=get("parent", self.parent),
            history_length=get("history_length", self.history_length),
            generation=get("generation", self.generation),
            pending_tasks=get("pending_tasks", self.pending_tasks),
            pending_timers=get("pending_timers", self.pending_timers),
            pending_children=get("pending_children", self.pending_children),
            buffered_events=get("buffered_events", self.buffered_events),
            children=get("children", self.children),
            child_apps=get("child_apps", self.child_apps),
            scheduled_start=get("scheduled_start", self.scheduled_start),
            recent_commands=get("recent_commands", self.recent_commands),
            unfinished_children=get("unfinished_children", self.unfinished_children),
            waiting_for_code=get("waiting_for_code", self.waiting_for_code),
            workflow_version=get("workflow_version", self.workflow_version),
            early_events=get("early_events", self.early_events),
            starts_suspended=get("starts_suspended", self.starts_suspended),
            propagated_history=get("propagated_history", self.propagated_history),
            remote=get("remote", self.remote),
        )

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
    # Through `Any`: typeshed says a proxy's `copy` is a dict, which the compiled build would check.
    either: Any = mapping
    copied = either.copy() if isinstance(mapping, (MappingProxyType, dict)) else None
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
        return self.state.evolved(changes)

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


declared(InstanceState, version=1, quickened=(InstanceState, RemoteTurn))
