"""Workflows whose code runs in a connected app: turns handed out and answered.

Dapr's SDKs run workflow code in the app's own process: the sidecar keeps history, timers and work
items, hands the app one turn at a time (an orchestrator work item: the run's past events and its
new ones) and records the actions the app answers with (durabletask's `TaskHubSidecarService`,
github.com/dapr/durabletask-protobuf `orchestrator_service.proto`, served by `api/grpc`). For such a
workflow the orchestrator runs no generator:

- each input is recorded as it arrives, as a turn without code (`[WorkflowStarted, inputs…,
  WorkflowCompleted]`, the shape of a turn of code the engine does not know, `unknown_code`), so
  the fold's duplicate checks and the history store hold it at once;
- when no turn is out, the owner hands one out: a `WorkflowWorkItem` with the execution's events
  and where the new ones begin, numbered by the history length handed out (`RemoteTurn.seen`);
- the app's `WorkflowAnswer` carries that number back; the orchestrator records its actions as a
  turn (`[WorkflowStarted, TaskScheduled/TimerCreated/ChildWorkflowCreated…, WorkflowCompleted,
  end]`) with the same effects as a local turn's, or ignores it when it answers another turn
  (late, repeated, or for an execution that has ended). One turn per instance is out at a time,
  as daprd's workflow actor has; inputs recorded meanwhile make the next turn follow the answer.

The app's SDK replays the whole history every turn and matches recorded actions by their IDs,
which the app chooses (durabletask counts from 1), so inputs recorded between a turn's hand-out and
its answer change nothing for it. Which names are remote is configuration (`RemoteNames`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

from ..errors import InvalidAnswerError
from . import commands as cmd
from . import events as ev
from .actions import CompleteWorkflow, CreateChildWorkflow, CreateTimer, ScheduleTask, SendEvent
from .apps import check_app_id
from .ids import IdError, check_id
from .values import RuntimeStatus

__all__ = ["EVERY_UNKNOWN", "RemoteNames", "WorkflowAnswer", "WorkflowWorkItem", "check_answer"]

#: In the list of remote names: every workflow name the engine's registry does not know.
EVERY_UNKNOWN = "*"


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowWorkItem:
    """A turn of a remote workflow for a connected app (on the orchestrations topic, keyed by instance ID)."""

    VERSION: ClassVar[int] = 1

    instance_id: str
    execution_id: str
    name: str
    #: The history length handed out: the turn's number, which the answer carries back.
    turn: int
    #: `events[:new_from]` are past events (replayed), the rest are new to the app.
    new_from: int
    #: The execution's events (its `ExecutionStarted` carries any history the caller handed on).
    events: tuple[ev.HistoryEvent, ...]
    #: The named version of the workflow the app chose for this run (its first answer), if any.
    workflow_version: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowAnswer(cmd.InstanceMessage):
    """A connected app's answer to a `WorkflowWorkItem`: the actions its turn decided (on the results topic)."""

    execution_id: str
    turn: int
    tasks: tuple[ScheduleTask, ...] = ()
    timers: tuple[CreateTimer, ...] = ()
    children: tuple[CreateChildWorkflow, ...] = ()
    #: Events sent to other instances (durabletask's `SendEvent`): recorded as `EventSent` and
    #: delivered as `RaiseEvent` commands.
    sent: tuple[SendEvent, ...] = ()
    completion: CompleteWorkflow | None = None
    custom_status: str | None = None
    #: Patches the code found applied in this turn (`ctx.is_patched`).
    patches: tuple[str, ...] = ()
    #: The named version of the workflow the app runs (`register_versioned_workflow`), if any:
    #: kept from the first answer, so every later replay runs the same version.
    workflow_version: str | None = None

    @property
    def actions(self) -> list[ScheduleTask | CreateTimer | CreateChildWorkflow | SendEvent]:
        """The actions other than the completion, in the order the code took them (their IDs)."""
        return sorted((*self.tasks, *self.timers, *self.children, *self.sent), key=lambda a: a.id)


class RemoteNames:
    """Which workflows run in connected apps: the names listed, and with `*` every name the
    engine's registry does not know (`HEADRACE_REMOTE_WORKFLOWS`)."""

    def __init__(self, names: Iterable[str], known: Iterable[str] = ()) -> None:
        listed = frozenset(n for n in names if n)
        self.every_unknown = EVERY_UNKNOWN in listed
        self.names = listed - {EVERY_UNKNOWN}
        self.known = frozenset(known)

    def __bool__(self) -> bool:
        return self.every_unknown or bool(self.names)

    def __call__(self, name: str) -> bool:
        return name in self.names or (self.every_unknown and bool(name) and name not in self.known)


#: How a turn may end a run (durabletask's `CompleteWorkflowAction` carries any status, and an unset
#: one reads as RUNNING, the proto's zero value).
_ENDINGS = frozenset({RuntimeStatus.COMPLETED, RuntimeStatus.FAILED, RuntimeStatus.TERMINATED,
                      RuntimeStatus.CONTINUED_AS_NEW})


def check_answer(answer: WorkflowAnswer) -> None:
    """Raise `InvalidAnswerError` unless every action of `answer` can be recorded and sent.

    An answer comes from an app, or from anyone who can write to the results topic: what its
    actions name becomes Kafka keys (child and event target IDs: `check_id`) and topic names (the
    app of a cross-app call: `check_app_id`), where a bad value would make a later step refuse it
    with nobody to tell (the parent would wait for a child that was never started) or, for a topic
    name, break the transaction of the whole partition. A completion must end the run: an unset
    status would leave the instance RUNNING with no turn out, waiting forever."""
    try:
        calls = [*((t.id, t.app_id) for t in answer.tasks), *((c.id, c.app_id) for c in answer.children)]
        for call_id, app_id in calls:
            if app_id is not None:
                check_app_id(app_id, f"the app ID of action {call_id}")
        for child in answer.children:
            check_id(child.instance_id, "child workflow instance ID")
        for sent in answer.sent:
            check_id(sent.instance_id, f"the instance ID event {sent.name[:100]!r} is sent to")
    except IdError as bad:
        raise InvalidAnswerError(f"the app's turn {answer.turn} cannot be recorded: {bad}") from None
    completion = answer.completion
    if completion is not None and completion.status not in _ENDINGS:
        raise InvalidAnswerError(f"the app's turn {answer.turn} completed the workflow with status "
                                 f"{completion.status.value}, which does not end a run")
