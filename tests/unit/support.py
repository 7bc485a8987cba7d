"""Shared helpers for the unit tests: hand-built histories, deterministic IDs, turn-by-turn replay.

Imported by bare name (`from support import ...`): pytest puts `tests/unit` on `sys.path`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from engine.core import events as ev
from engine.core.actions import (
    Action,
    CompleteWorkflow,
    CreateChildWorkflow,
    CreateTimer,
    ScheduleTask,
)
from engine.core.executor import TurnResult, WorkflowExecution, execute
from engine.core.values import RuntimeStatus
from engine.sdk.registry import Registry
from ops.bench.inputs import input_record  # noqa: F401  (the owner harnesses' input records)

T0 = datetime(2026, 1, 1, tzinfo=UTC)

#: Events that record what the code did in a turn (the rest are the turn's inputs).
RECORDING = (
    ev.TaskScheduled,
    ev.TimerCreated,
    ev.ChildWorkflowCreated,
    ev.WorkflowCompleted,
    ev.ExecutionCompleted,
    ev.ContinuedAsNew,
)


def at(seconds: float = 0) -> datetime:
    return T0 + timedelta(seconds=seconds)


def counter_ids(prefix: str = "id") -> Callable[[], str]:
    """Deterministic stand-ins for the random IDs a client makes."""
    numbers = itertools.count(1)
    return lambda: f"{prefix}{next(numbers):04d}"


def numbered(events: Iterable[ev.HistoryEvent], start: int = 0) -> list[ev.HistoryEvent]:
    return [replace(e, seq=start + i) for i, e in enumerate(events)]


def resolver(*fns: Callable[..., Any], **named: Callable[..., Any]) -> Callable[[str], Any]:
    table = {fn.__name__: fn for fn in fns} | named
    return table.get


def registry_resolver(registry: Registry) -> Callable[[str], Any]:
    return registry.get_workflow


def started(
    name: str, iid: str = "i1", *, input: str | None = None, t: float = 0, execution_id: str = "e1"
) -> list[ev.HistoryEvent]:
    return [
        ev.WorkflowStarted(timestamp=at(t)),
        ev.ExecutionStarted(
            timestamp=at(t), name=name, instance_id=iid, execution_id=execution_id, input=input
        ),
    ]


def action_to_event(
    action: Action, t: datetime, custom_status: str | None = None
) -> ev.HistoryEvent:
    """The history event the orchestrator records for `action` (seq left unset)."""
    if isinstance(action, ScheduleTask):
        return ev.TaskScheduled(
            timestamp=t, event_id=action.id, name=action.name, input=action.input
        )
    if isinstance(action, CreateTimer):
        return ev.TimerCreated(
            timestamp=t, event_id=action.id, fire_at=action.fire_at, origin=action.origin
        )
    if isinstance(action, CreateChildWorkflow):
        return ev.ChildWorkflowCreated(
            timestamp=t,
            event_id=action.id,
            instance_id=action.instance_id,
            name=action.name,
            input=action.input,
        )
    assert isinstance(action, CompleteWorkflow)
    if action.status is RuntimeStatus.CONTINUED_AS_NEW:
        return ev.ContinuedAsNew(
            timestamp=t, input=action.result, carryover_events=len(action.carryover_events)
        )
    return ev.ExecutionCompleted(
        timestamp=t,
        event_id=action.id,
        status=action.status,
        result=action.result,
        failure=action.failure,
    )


def record_turn(history: list[ev.HistoryEvent], result: TurnResult, t: datetime) -> None:
    """Append what the orchestrator appends after a turn's inputs: actions, then the markers."""
    body = [action_to_event(a, t) for a in result.actions if not isinstance(a, CompleteWorkflow)]
    body.append(ev.WorkflowCompleted(timestamp=t, custom_status=result.custom_status))
    if result.completion is not None:
        body.append(action_to_event(result.completion, t))
    history.extend(numbered(body, len(history)))


@dataclass(frozen=True)
class Turn:
    past: list[ev.HistoryEvent]
    inputs: list[ev.HistoryEvent]
    recorded: list[ev.HistoryEvent]


def split_turns(history: Sequence[ev.HistoryEvent]) -> list[Turn]:
    """Cut one execution's history into turns (each begins with `WorkflowStarted`)."""
    starts = [i for i, e in enumerate(history) if isinstance(e, ev.WorkflowStarted)]
    assert starts, "a history has turns"
    assert starts[0] == 0, "a history begins with WorkflowStarted"
    turns = []
    for n, begin in enumerate(starts):
        end = starts[n + 1] if n + 1 < len(starts) else len(history)
        events = list(history[begin:end])
        turns.append(
            Turn(
                past=list(history[:begin]),
                inputs=[e for e in events if not isinstance(e, RECORDING)],
                recorded=[e for e in events if isinstance(e, RECORDING)],
            )
        )
    return turns


def comparable(event: ev.HistoryEvent) -> tuple[Any, ...]:
    """What must match between a recorded event and a replayed action: no seq, no timestamps of
    the recording, no stack traces (they hold file paths)."""
    if isinstance(event, ev.TaskScheduled):
        return ("task", event.event_id, event.name, event.input)
    if isinstance(event, ev.TimerCreated):
        return ("timer", event.event_id, event.fire_at, event.origin)
    if isinstance(event, ev.ChildWorkflowCreated):
        return ("child", event.event_id, event.instance_id, event.name, event.input)
    if isinstance(event, ev.WorkflowCompleted):
        return ("custom_status", event.custom_status)
    if isinstance(event, ev.ContinuedAsNew):
        return ("continued_as_new", event.input, event.carryover_events)
    if isinstance(event, ev.ExecutionCompleted):
        failure = (
            None if event.failure is None else (event.failure.error_type, event.failure.message)
        )
        return ("completed", event.status, event.result, failure)
    raise AssertionError(f"not a recording event: {event!r}")


def turn_signature(result: TurnResult) -> list[tuple[Any, ...]]:
    recorded: list[ev.HistoryEvent] = []
    record_turn(recorded, result, T0)
    return [comparable(e) for e in recorded]


def check_replay_turns(
    instance_id: str, resolve: Callable[[str], Any], history: Sequence[ev.HistoryEvent]
) -> TurnResult:
    """For every turn of `history`: a live execution fed turn by turn and a fresh one replaying the
    past must both take exactly the recorded steps. Returns the last turn's result."""
    live = WorkflowExecution(instance_id, resolve)
    last: TurnResult | None = None
    for number, turn in enumerate(split_turns(history)):
        expected = [comparable(e) for e in turn.recorded]
        sticky = live.step(turn.inputs)
        _, fresh = execute(instance_id, resolve, turn.past, turn.inputs)
        assert turn_signature(sticky) == expected, (
            f"turn {number}: live execution differs from history"
        )
        assert turn_signature(fresh) == expected, (
            f"turn {number}: replay from scratch differs from history"
        )
        assert sticky.actions == fresh.actions, f"turn {number}: live and replayed actions differ"
        last = fresh
    assert last is not None
    return last


class Runner:
    """Drives one `WorkflowExecution` the way the orchestrator does, keeping the history it writes.

    Inputs go to the live execution unnumbered (as the orchestrator passes them) and into the
    history numbered, followed by the events recording the turn's actions.
    """

    def __init__(
        self,
        resolve: Callable[[str], Any],
        name: str,
        *,
        instance_id: str = "i1",
        input: str | None = None,
        execution_id: str = "e1",
    ) -> None:
        self.resolve = resolve
        self.name = name
        self.instance_id = instance_id
        self.input = input
        self.execution_id = execution_id
        self.history: list[ev.HistoryEvent] = []
        self.execution = WorkflowExecution(instance_id, resolve)
        self.results: list[TurnResult] = []

    def start(self, t: float = 0) -> TurnResult:
        started_event = ev.ExecutionStarted(
            timestamp=at(t),
            name=self.name,
            instance_id=self.instance_id,
            execution_id=self.execution_id,
            input=self.input,
        )
        return self.turn(t, started_event)

    def turn(self, t: float, *inputs: ev.HistoryEvent) -> TurnResult:
        events = [ev.WorkflowStarted(timestamp=at(t)), *inputs]
        self.history.extend(numbered(events, len(self.history)))
        result = self.execution.step(events)
        record_turn(self.history, result, at(t))
        self.results.append(result)
        return result

    def complete_task(self, t: float, task_id: int, result: str | None = None) -> TurnResult:
        return self.turn(
            t, ev.TaskCompleted(timestamp=at(t), task_scheduled_id=task_id, result=result)
        )

    def fire(self, t: float, timer_id: int) -> TurnResult:
        return self.turn(t, ev.TimerFired(timestamp=at(t), timer_id=timer_id, fire_at=at(t)))

    def raise_event(self, t: float, name: str, input: str | None = None) -> TurnResult:
        return self.turn(t, ev.EventRaised(timestamp=at(t), name=name, input=input))

    def replayed(self) -> WorkflowExecution:
        """A fresh execution that replayed the whole history so far."""
        fresh = WorkflowExecution(self.instance_id, self.resolve)
        fresh.replay(self.history)
        return fresh

    def check(self) -> TurnResult:
        """Every turn so far replays to the same steps, live and from scratch."""
        return check_replay_turns(self.instance_id, self.resolve, self.history)

