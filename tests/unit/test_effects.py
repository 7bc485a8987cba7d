"""`apply_outcome`: what each kind of turn writes, and in which order, seen through a recording sink.

The Kafka engine's transaction sink and the test environment's memory both implement
`EffectSink`; these tests pin the one decision they share.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest
from support import at

from engine.core import commands as cmd
from engine.core import events as ev
from engine.core.cache import ExecutionCache
from engine.core.effects import apply_outcome, due_message
from engine.core.orchestrator import Disposition, Orchestrator, TurnOutcome, Unapplied
from engine.core.state import InstanceState
from engine.core.timers import DurableTimer, ScheduledStart, Timer
from engine.core.values import FailureDetails, ParentInstance, RuntimeStatus


class RecordingSink:
    """Records every effect in order; keeps states and histories so turns can follow each other."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.states: dict[str, InstanceState] = {}
        self.histories: dict[str, list[ev.HistoryEvent]] = {}

    def close_execution(self, instance_id: str, execution_id: str, events: Sequence[ev.HistoryEvent]) -> None:
        self.calls.append(("close_execution", instance_id, execution_id, [type(e).__name__ for e in events]))

    def remove_instance(self, instance_id: str) -> None:
        self.calls.append(("remove_instance", instance_id))
        self.states.pop(instance_id, None)
        self.histories.pop(instance_id, None)

    def append_history(self, state: InstanceState, events: Sequence[ev.HistoryEvent], *, reset: bool) -> None:
        self.calls.append(("append_history", state.instance_id, state.execution_id,
                           [type(e).__name__ for e in events], reset))
        if reset:
            self.histories[state.instance_id] = []
        self.histories.setdefault(state.instance_id, []).extend(events)

    def put_state(self, state: InstanceState) -> None:
        self.calls.append(("put_state", state.instance_id, state.status))
        self.states[state.instance_id] = state

    def send_task(self, item: cmd.ActivityWorkItem) -> None:
        self.calls.append(("send_task", item.instance_id, item.task_id, item.name))

    def schedule_timer(self, timer: Timer) -> None:
        self.calls.append(("schedule_timer", timer))

    def send_message(self, message: cmd.InstanceMessage) -> None:
        self.calls.append(("send_message", message))

    def ignore(self, message: cmd.InstanceMessage | None, unapplied: Unapplied) -> None:
        self.calls.append(("ignore", unapplied.disposition))

    def refuse(self, message: cmd.InstanceMessage | None, unapplied: Unapplied) -> None:
        self.calls.append(("refuse", unapplied.disposition, unapplied.reason))


def one_task(ctx: Any, x: Any) -> Any:
    return (yield ctx.call_activity("a", input=x))


def two_tasks(ctx: Any, x: Any) -> Any:
    a = yield ctx.call_activity("a", input=x)
    return (yield ctx.call_activity("b", input=a))


def sleeper(ctx: Any) -> Any:
    yield ctx.create_timer(timedelta(seconds=10))
    return "slept"


def parent(ctx: Any) -> Any:
    return (yield ctx.call_child_workflow("child", instance_id="kid"))


def child(ctx: Any) -> Any:
    return (yield ctx.wait_for_external_event("go"))


def looper(ctx: Any, n: Any) -> Any:
    yield ctx.create_timer(timedelta(seconds=1))
    if n < 1:
        ctx.continue_as_new(n + 1)
    return n


WORKFLOWS = {
    "one_task": one_task, "two_tasks": two_tasks, "sleeper": sleeper, "parent": parent, "child": child,
    "looper": looper,
}


class Turns:
    def __init__(self) -> None:
        self.orchestrator = Orchestrator(WORKFLOWS.get, ExecutionCache(0))  # replay every turn
        self.sink = RecordingSink()

    def handle(self, message: cmd.InstanceMessage, t: float = 0) -> list[tuple[Any, ...]]:
        iid = message.instance_id
        outcome = self.orchestrator.handle(self.sink.states.get(iid), message, at(t),
                                           lambda: list(self.sink.histories.get(iid, [])))
        return self.apply(iid, outcome, message)

    def apply(self, iid: str, outcome: TurnOutcome, message: cmd.InstanceMessage | None = None
              ) -> list[tuple[Any, ...]]:
        self.sink.calls.clear()
        apply_outcome(iid, outcome, self.sink, message)
        return list(self.sink.calls)


def start(iid: str = "i", name: str = "one_task", command_id: str = "c1", input: str = "1", **kw: Any
          ) -> cmd.StartWorkflow:
    return cmd.StartWorkflow(instance_id=iid, command_id=command_id, name=name, input=input, **kw)


OPENING = ["WorkflowStarted", "ExecutionStarted"]


def test_start_writes_history_then_state_then_the_work_item() -> None:
    t = Turns()
    assert t.handle(start()) == [
        ("append_history", "i", "c1", [*OPENING, "TaskScheduled", "WorkflowCompleted"], True),
        ("put_state", "i", RuntimeStatus.RUNNING),
        ("send_task", "i", 0, "a"),
    ]


def test_completion_appends_without_reset_and_sends_nothing_more() -> None:
    t = Turns()
    t.handle(start())
    calls = t.handle(cmd.ActivityResult(instance_id="i", execution_id="c1", task_id=0, result="2"))
    assert calls == [
        ("append_history", "i", "c1", ["WorkflowStarted", "TaskCompleted", "WorkflowCompleted",
                                        "ExecutionCompleted"], False),
        ("put_state", "i", RuntimeStatus.COMPLETED),
    ]


def test_a_duplicate_result_writes_nothing_and_is_ignored() -> None:
    t = Turns()
    t.handle(start(name="two_tasks"))
    result = cmd.ActivityResult(instance_id="i", execution_id="c1", task_id=0, result="2")
    assert [c[0] for c in t.handle(result)] == ["append_history", "put_state", "send_task"]
    assert t.handle(result) == [("ignore", Disposition.DUPLICATE)]
    t.handle(cmd.ActivityResult(instance_id="i", execution_id="c1", task_id=1, result="3"))
    # Once the instance has finished, anything more for it is moot.
    assert t.handle(result) == [("ignore", Disposition.MOOT)]


def test_a_repeated_command_is_a_duplicate() -> None:
    t = Turns()
    t.handle(start(name="child", iid="k"))
    event = cmd.RaiseEvent(instance_id="k", command_id="e1", name="other")
    assert [c[0] for c in t.handle(event)] == ["append_history", "put_state"]
    assert t.handle(event) == [("ignore", Disposition.DUPLICATE)]
    assert t.handle(start(name="child", iid="k")) == [("ignore", Disposition.DUPLICATE)]


def test_a_stale_result_is_ignored() -> None:
    t = Turns()
    t.handle(start())
    stale = cmd.ActivityResult(instance_id="i", execution_id="old", task_id=0, result="2")
    assert t.handle(stale) == [("ignore", Disposition.STALE)]


def test_a_timer_is_scheduled_and_fires_through_its_message() -> None:
    t = Turns()
    calls = t.handle(start(name="sleeper"))
    timer = DurableTimer(due=at(10), instance_id="i", execution_id="c1", timer_id=0)
    assert calls[-1] == ("schedule_timer", timer)
    firing = due_message(timer, t.sink.states["i"])
    assert firing == cmd.TimerFiring(instance_id="i", execution_id="c1", timer_id=0, fire_at=at(10))
    assert t.handle(firing, t=10)[-1] == ("put_state", "i", RuntimeStatus.COMPLETED)
    assert t.handle(firing, t=11) == [("ignore", Disposition.MOOT)]


def test_a_child_start_and_its_result_are_messages() -> None:
    t = Turns()
    calls = t.handle(start(name="parent", iid="p"))
    assert [c[0] for c in calls] == ["append_history", "put_state", "send_message"]
    child_start = calls[-1][1]
    assert isinstance(child_start, cmd.StartWorkflow)
    assert (child_start.instance_id, child_start.name) == ("kid", "child")
    assert child_start.parent == ParentInstance(instance_id="p", name="parent", task_scheduled_id=0,
                                                execution_id="c1")
    t.handle(child_start)
    calls = t.handle(cmd.RaiseEvent(instance_id="kid", command_id="go", name="go", input='"ok"'))
    assert [c[0] for c in calls] == ["append_history", "put_state", "send_message"]
    report = calls[-1][1]
    assert report == cmd.ChildResult(instance_id="p", execution_id="c1", task_id=0, child_instance_id="kid",
                                     result='"ok"')
    assert t.handle(report)[-1] == ("put_state", "p", RuntimeStatus.COMPLETED)


def test_continue_as_new_closes_the_old_execution_first() -> None:
    t = Turns()
    t.handle(start(name="looper", input="0"))
    timer = t.sink.calls[-1][1]
    calls = t.handle(timer.message(), t=1)
    assert calls[0] == ("close_execution", "i", "c1",
                        ["WorkflowStarted", "TimerFired", "WorkflowCompleted", "ContinuedAsNew"])
    (_, _, new_execution, events, reset) = calls[1]
    assert calls[1][0] == "append_history" and reset and events[:2] == OPENING and new_execution != "c1"
    assert calls[2] == ("put_state", "i", RuntimeStatus.RUNNING)
    assert calls[3][0] == "schedule_timer" and calls[3][1].execution_id == new_execution
    assert len(calls) == 4


def test_a_start_over_a_running_instance_is_refused_and_recorded() -> None:
    t = Turns()
    t.handle(start())
    calls = t.handle(start(command_id="c2"))
    assert calls == [
        ("put_state", "i", RuntimeStatus.RUNNING),  # the refusal is in recent_commands
        ("refuse", Disposition.REFUSED, "an active workflow with ID 'i' already exists"),
    ]
    assert t.sink.states["i"].recent_commands[-1] == "c2"
    # Refused again: already recorded, so nothing is written, but the sender still hears of it.
    assert t.handle(start(command_id="c2")) == [
        ("refuse", Disposition.REFUSED, "an active workflow with ID 'i' already exists"),
    ]


def test_a_refused_child_start_tells_its_parent() -> None:
    t = Turns()
    t.handle(start(iid="kid"))
    by = ParentInstance(instance_id="p", name="parent", task_scheduled_id=3, execution_id="pe")
    calls = t.handle(start(iid="kid", command_id="c2", parent=by))
    assert [c[0] for c in calls] == ["put_state", "send_message", "refuse"]
    report = calls[1][1]
    assert isinstance(report, cmd.ChildResult) and report.failure is not None
    assert report.failure.error_type == "WorkflowAlreadyExistsError"


@pytest.mark.parametrize(
    ("message", "reported"),
    [
        (cmd.RaiseEvent(instance_id="nobody", command_id="c", name="x"), True),
        (cmd.PurgeWorkflow(instance_id="nobody", command_id="c"), True),
        (cmd.ActivityResult(instance_id="nobody", execution_id="e", task_id=0, result="1"), False),
    ],
)
def test_commands_for_no_instance_are_refused_and_results_dropped(message: cmd.InstanceMessage,
                                                                    reported: bool) -> None:
    (call,) = Turns().handle(message)
    assert call[:2] == (("refuse" if reported else "ignore"), Disposition.NOT_FOUND)


def test_purge_of_a_running_instance_is_refused() -> None:
    t = Turns()
    t.handle(start())
    ((kind, disposition, reason),) = t.handle(cmd.PurgeWorkflow(instance_id="i", command_id="p"))
    assert (kind, disposition) == ("refuse", Disposition.REFUSED)
    assert "only COMPLETED, FAILED or TERMINATED" in reason


def test_terminate_recursive_ends_the_instance_and_reaches_its_children() -> None:
    t = Turns()
    t.handle(start(name="parent", iid="p"))
    calls = t.handle(cmd.TerminateWorkflow(instance_id="p", command_id="t", recursive=True))
    assert [c[0] for c in calls] == ["append_history", "put_state", "send_message"]
    assert calls[0][3][-1] == "ExecutionCompleted"
    assert calls[1] == ("put_state", "p", RuntimeStatus.TERMINATED)
    assert calls[2][1] == cmd.TerminateWorkflow(instance_id="kid", command_id="t:kid")


def test_purge_recursive_removes_the_instance_and_reaches_its_children() -> None:
    t = Turns()
    t.handle(start(name="parent", iid="p"))
    t.handle(cmd.TerminateWorkflow(instance_id="p", command_id="t", recursive=False))
    calls = t.handle(cmd.PurgeWorkflow(instance_id="p", command_id="x", recursive=True))
    assert calls == [
        ("remove_instance", "p"),
        ("send_message", cmd.PurgeWorkflow(instance_id="kid", command_id="x:kid")),
    ]
    assert "p" not in t.sink.states


def test_a_scheduled_start_is_a_timer_and_only_the_latest_start_applies() -> None:
    t = Turns()
    calls = t.handle(start(scheduled_start=at(60)))
    assert calls == [("put_state", "i", RuntimeStatus.PENDING),
                     ("schedule_timer", ScheduledStart(due=at(60), instance_id="i"))]
    # A later start replaces the pending one: the first timer then rebuilds the second start,
    # which is not due yet, so nothing happens.
    t.handle(start(command_id="c2", scheduled_start=at(120)))
    first = due_message(ScheduledStart(due=at(60), instance_id="i"), t.sink.states["i"])
    assert isinstance(first, cmd.StartWorkflow) and first.command_id == "c2"
    assert t.handle(first, t=60) == [("ignore", Disposition.DUPLICATE)]
    calls = t.handle(first, t=120)
    assert calls[0][0] == "append_history" and calls[0][4]
    assert t.sink.states["i"].run_id == "c2"
    assert due_message(ScheduledStart(due=at(60), instance_id="i"), t.sink.states["i"]) is None


def test_engine_failure_of_a_running_instance_and_of_a_start() -> None:
    t = Turns()
    t.handle(start(name="parent", iid="p"))
    t.handle(start(name="child", iid="kid", parent=ParentInstance(instance_id="p", name="parent",
                                                                     task_scheduled_id=0, execution_id="c1")))
    failure = FailureDetails(error_type="EngineError", message="no")
    calls = t.apply("kid", t.orchestrator.fail(t.sink.states["kid"], failure, at(1)))
    assert [c[0] for c in calls] == ["append_history", "put_state", "send_message"]
    assert calls[0][3] == ["WorkflowStarted", "WorkflowCompleted", "ExecutionCompleted"] and not calls[0][4]
    assert calls[1] == ("put_state", "kid", RuntimeStatus.FAILED)
    assert calls[2][1].failure == failure
    calls = t.apply("new", t.orchestrator.fail(None, failure, at(1), start(iid="new")))
    assert calls[0][3][:2] == OPENING and calls[0][4]
    assert calls[1] == ("put_state", "new", RuntimeStatus.FAILED)
    # Nothing to fail: not running and no start; the engine-made turn reports to nobody.
    assert t.apply("new", t.orchestrator.fail(t.sink.states["new"], failure, at(2))) == [
        ("ignore", Disposition.MOOT)
    ]


def test_a_late_child_result_frees_the_finished_parent_without_history() -> None:
    def forgets(ctx: Any) -> Any:
        ctx.call_child_workflow("child", instance_id="kid")  # not awaited
        yield ctx.create_timer(timedelta(seconds=1))
        return "done"

    t = Turns()
    t.orchestrator = Orchestrator({**WORKFLOWS, "forgets": forgets}.get, ExecutionCache(0))
    calls = t.handle(start(name="forgets", iid="p"))
    child_start = next(c[1] for c in calls if c[0] == "send_message")
    timer = next(c[1] for c in calls if c[0] == "schedule_timer")
    t.handle(timer.message(), t=1)
    t.handle(child_start)
    report = t.handle(cmd.RaiseEvent(instance_id="kid", command_id="go", name="go", input="1"))[-1][1]
    assert t.handle(report) == [("put_state", "p", RuntimeStatus.COMPLETED)]
    assert not t.sink.states["p"].unfinished_children


def test_timers_order_by_due_time_then_instance_then_start_first() -> None:
    late = DurableTimer(due=at(2), instance_id="a", execution_id="e", timer_id=0)
    b1 = DurableTimer(due=at(1), instance_id="b", execution_id="e", timer_id=1)
    b0 = DurableTimer(due=at(1), instance_id="b", execution_id="e", timer_id=0)
    b_start = ScheduledStart(due=at(1), instance_id="b")
    a1 = DurableTimer(due=at(1), instance_id="a", execution_id="e", timer_id=5)
    assert sorted([late, b1, b0, b_start, a1]) == [a1, b_start, b0, b1, late]
