"""Actions: what the workflow code asks for next, as the replay executor returns them.

Shaped like durabletask's `OrchestratorAction`: each has the `id` its recording history event will
carry as `event_id`, so the next replay can match code against history.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from .events import EventRaised
from .frozen import quick_init
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


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class Action:
    VERSION: ClassVar[int] = 1

    id: int


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleTask(Action):
    """Run activity `name` with `input` (JSON text)."""

    name: str
    input: str | None = None
    task_execution_id: str = ""
    #: A `PropagationScope` name: the history the engine hands on with the work ("" for none).
    propagation: str = ""
    #: The app whose workers run it (`call_activity(..., app_id=)`); None: the workflow's own app.
    app_id: str | None = None


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class CreateTimer(Action):
    fire_at: datetime
    origin: str = "timer"


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class CreateChildWorkflow(Action):
    instance_id: str
    name: str
    input: str | None = None
    propagation: str = ""
    #: The app whose engines run the child (`call_child_workflow(..., app_id=)`); None: this app.
    app_id: str | None = None


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class CompleteWorkflow(Action):
    """The workflow ended: COMPLETED, FAILED, TERMINATED or CONTINUED_AS_NEW.

    For CONTINUED_AS_NEW, `result` is the next generation's input and `carryover_events` are the
    external events that arrived but were not consumed, when `save_events` was asked for.
    """

    status: RuntimeStatus
    result: str | None = None
    failure: FailureDetails | None = None
    carryover_events: tuple[EventRaised, ...] = ()


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class SendEvent(Action):
    """Raise event `name` on instance `instance_id` (durabletask's `SendEvent`: apps connected over
    gRPC send it; recorded as `EventSent`, so a replay finds the action taken)."""

    instance_id: str
    name: str
    input: str | None = None


ACTION_TYPES: tuple[type[Action], ...] = (ScheduleTask, CreateTimer, CreateChildWorkflow, CompleteWorkflow, SendEvent)
