"""Actions: what the workflow code asks for next, as the replay executor returns them.

Shaped like durabletask's `OrchestratorAction`: each has the `id` its recording history event will
carry as `event_id`, so the next replay can match code against history.

Compiled in the native build, as `engine.core.events` is, and written the same way for it: each
class spells out its `__init__`, and the schema version and `quick_init` are set after the classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .events import EventRaised
from .frozen import declared
from .values import FailureDetails, RuntimeStatus

__all__ = [
    "ACTION_TYPES",
    "Action",
    "CompleteWorkflow",
    "CreateChildWorkflow",
    "CreateTimer",
    "ScheduleTask",
    "SendEvent",
]


@dataclass(frozen=True, slots=True, kw_only=True, init=False)
class Action:
    id: int

    def __init__(self, *, id: int) -> None:
        object.__setattr__(self, "id", id)


@dataclass(frozen=True, slots=True, kw_only=True, init=False)
class ScheduleTask(Action):
    """Run activity `name` with `input` (JSON text)."""

    name: str
    input: str | None = None
    task_execution_id: str = ""
    #: A `PropagationScope` name: the history the engine hands on with the work ("" for none).
    propagation: str = ""
    #: The app whose workers run it (`call_activity(..., app_id=)`); None: the workflow's own app.
    app_id: str | None = None

    def __init__(self, *, id: int, name: str, input: str | None = None, task_execution_id: str = "",
                 propagation: str = "", app_id: str | None = None) -> None:
        object.__setattr__(self, "id", id)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "input", input)
        object.__setattr__(self, "task_execution_id", task_execution_id)
        object.__setattr__(self, "propagation", propagation)
        object.__setattr__(self, "app_id", app_id)


@dataclass(frozen=True, slots=True, kw_only=True, init=False)
class CreateTimer(Action):
    fire_at: datetime
    origin: str = "timer"

    def __init__(self, *, id: int, fire_at: datetime, origin: str = "timer") -> None:
        object.__setattr__(self, "id", id)
        object.__setattr__(self, "fire_at", fire_at)
        object.__setattr__(self, "origin", origin)


@dataclass(frozen=True, slots=True, kw_only=True, init=False)
class CreateChildWorkflow(Action):
    instance_id: str
    name: str
    input: str | None = None
    propagation: str = ""
    #: The app whose engines run the child (`call_child_workflow(..., app_id=)`); None: this app.
    app_id: str | None = None

    def __init__(self, *, id: int, instance_id: str, name: str, input: str | None = None, propagation: str = "",
                 app_id: str | None = None) -> None:
        object.__setattr__(self, "id", id)
        object.__setattr__(self, "instance_id", instance_id)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "input", input)
        object.__setattr__(self, "propagation", propagation)
        object.__setattr__(self, "app_id", app_id)


@dataclass(frozen=True, slots=True, kw_only=True, init=False)
class CompleteWorkflow(Action):
    """The workflow ended: COMPLETED, FAILED, TERMINATED or CONTINUED_AS_NEW.

    For CONTINUED_AS_NEW, `result` is the next generation's input and `carryover_events` are the
    external events that arrived but were not consumed, when `save_events` was asked for.
    """

    status: RuntimeStatus
    result: str | None = None
    failure: FailureDetails | None = None
    carryover_events: tuple[EventRaised, ...] = ()

    def __init__(self, *, id: int, status: RuntimeStatus, result: str | None = None,
                 failure: FailureDetails | None = None, carryover_events: tuple[EventRaised, ...] = ()) -> None:
        object.__setattr__(self, "id", id)
        object.__setattr__(self, "status", status)
        object.__setattr__(self, "result", result)
        object.__setattr__(self, "failure", failure)
        object.__setattr__(self, "carryover_events", carryover_events)


@dataclass(frozen=True, slots=True, kw_only=True, init=False)
class SendEvent(Action):
    """Raise event `name` on instance `instance_id` (durabletask's `SendEvent`: apps connected over
    gRPC send it; recorded as `EventSent`, so a replay finds the action taken)."""

    instance_id: str
    name: str
    input: str | None = None

    def __init__(self, *, id: int, instance_id: str, name: str, input: str | None = None) -> None:
        object.__setattr__(self, "id", id)
        object.__setattr__(self, "instance_id", instance_id)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "input", input)


ACTION_TYPES: tuple[type[Action], ...] = (ScheduleTask, CreateTimer, CreateChildWorkflow, CompleteWorkflow, SendEvent)


declared(Action, version=1, quickened=(Action, *ACTION_TYPES))
