"""Messages addressed to one workflow instance, and the work items the engine hands out.

Commands are the public, versioned input format: the API and the client produce them, and so may
users, straight to the commands topic (their JSON Schemas are in `schemas/`). Results and firings
come back from activity workers and the timer service. Everything addressed to an instance carries
its `instance_id` (the partition key) and an identity that makes a second delivery harmless:
`command_id` for commands, the (execution, task or timer ID) pair for results and firings.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import ClassVar

from ..errors import DecodeError, PayloadDecodeError
from .apps import check_app_id
from .frozen import quick_init
from .ids import IdError, check_id
from .payload import check_payload
from .values import FailureDetails, ParentInstance

__all__ = [
    "COMMAND_TYPES",
    "MESSAGE_TYPES",
    "ActivityResult",
    "ActivityWorkItem",
    "ChildResult",
    "Command",
    "InstanceMessage",
    "PurgeWorkflow",
    "RaiseEvent",
    "ResumeWorkflow",
    "StartWorkflow",
    "SuspendWorkflow",
    "TaskResult",
    "TerminateWorkflow",
    "TimerFiring",
    "check_message",
]


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceMessage:
    """Anything delivered to the partition that owns `instance_id`."""

    VERSION: ClassVar[int] = 1

    instance_id: str


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class Command(InstanceMessage):
    command_id: str


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class StartWorkflow(Command):
    """Start workflow `name`; over a finished instance of the same ID it starts afresh."""

    name: str
    input: str | None = None
    scheduled_start: datetime | None = None
    parent: ParentInstance | None = None
    #: History the parent hands on (`engine.core.propagation`), JSON text.
    propagated_history: str | None = None


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class RaiseEvent(Command):
    name: str
    input: str | None = None


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class SuspendWorkflow(Command):
    reason: str | None = None


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class ResumeWorkflow(Command):
    reason: str | None = None


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class TerminateWorkflow(Command):
    output: str | None = None
    recursive: bool = True


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class PurgeWorkflow(Command):
    recursive: bool = True


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class ActivityResult(InstanceMessage):
    """An activity worker's answer to an `ActivityWorkItem`: a result or a failure."""

    execution_id: str
    task_id: int
    result: str | None = None
    failure: FailureDetails | None = None


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class TimerFiring(InstanceMessage):
    execution_id: str
    timer_id: int
    fire_at: datetime


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class ChildResult(InstanceMessage):
    """A child workflow ended; addressed to the parent, `task_id` is the parent's task for it."""

    execution_id: str
    task_id: int
    child_instance_id: str
    result: str | None = None
    failure: FailureDetails | None = None


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class ActivityWorkItem:
    """A work item for an activity worker (on a task queue, keyed by instance ID)."""

    VERSION: ClassVar[int] = 1

    instance_id: str
    execution_id: str
    task_id: int
    name: str
    input: str | None = None
    task_execution_id: str = ""
    #: History the workflow hands on (`engine.core.propagation`), JSON text.
    propagated_history: str | None = None
    #: The app whose workers run it, when it is not the workflow's (`engine.core.apps`): the item
    #: is on that app's task topic. None: the workflow's own app.
    app_id: str | None = None
    #: The app whose engine waits for the result, when it is not the worker's own: the worker
    #: writes the result to that app's results topic. None: its own (every item before apps).
    reply_app_id: str | None = None


COMMAND_TYPES: tuple[type[Command], ...] = (
    StartWorkflow,
    RaiseEvent,
    SuspendWorkflow,
    ResumeWorkflow,
    TerminateWorkflow,
    PurgeWorkflow,
)

MESSAGE_TYPES: tuple[type[InstanceMessage], ...] = (*COMMAND_TYPES, ActivityResult, TimerFiring, ChildResult)

#: A task's outcome: what a fan-in waits for (`Orchestrator.together`).
TaskResult = ActivityResult | ChildResult


def check_message(message: InstanceMessage) -> InstanceMessage:
    """What the engine accepts from outside, beyond the schema; returns the message to apply.

    IDs must pass `check_id` (they become Kafka keys and history-store keys) and payloads must be
    JSON text: a command that breaks either is refused with a `DecodeError` naming the field, to be
    dead-lettered. A result whose payload is not JSON text is the instance's business, not the
    producer's: it becomes a failed result, so the workflow sees a failed task it may handle.
    """
    try:
        check_id(message.instance_id, "instance_id")
        if isinstance(message, Command):
            check_id(message.command_id, "command_id")
        execution_id = getattr(message, "execution_id", None)
        if execution_id is not None:
            check_id(execution_id, "execution_id")
        if isinstance(message, ChildResult):
            check_id(message.child_instance_id, "child_instance_id")
        if isinstance(message, StartWorkflow):
            if message.parent is not None:
                check_id(message.parent.instance_id, "parent.instance_id")
                check_id(message.parent.execution_id, "parent.execution_id")
                if message.parent.app_id is not None:
                    check_app_id(message.parent.app_id, "parent.app_id")
            check_payload(message.input, "StartWorkflow.input")
        elif isinstance(message, RaiseEvent):
            check_payload(message.input, "RaiseEvent.input")
        elif isinstance(message, TerminateWorkflow):
            check_payload(message.output, "TerminateWorkflow.output")
    except IdError as exc:
        raise DecodeError(f"{type(message).__name__}: {exc}") from None
    if isinstance(message, (ActivityResult, ChildResult)) and message.failure is None:
        what = "activity result" if isinstance(message, ActivityResult) else "child workflow result"
        try:
            check_payload(message.result, what)
        except PayloadDecodeError as exc:
            return replace(message, result=None, failure=FailureDetails(
                error_type=type(exc).__name__, message=str(exc), non_retriable=True))
    return message
