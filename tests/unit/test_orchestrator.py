"""Orchestrator.handle: one message in, one instance's turn out (events, state, effects)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from support import at, check_replay_turns

from engine.core import commands as cmd
from engine.core import events as ev
from engine.core.cache import ExecutionCache
from engine.core.effects import apply_outcome
from engine.core.orchestrator import (
    Disposition,
    Orchestrator,
    StateWrite,
    TurnOutcome,
    Unapplied,
    scheduled_start_command,
)
from engine.core.preconditions import EARLY_EVENT_OVERHEAD
from engine.core.state import InstanceState, fold_all
from engine.core.timers import Timer
from engine.core.values import FailureDetails, ParentInstance, RuntimeStatus


class Harness:
    """Keeps states and histories the way a backend would, and counts history loads."""

    def __init__(self, workflows: dict, cache_size: int = 100) -> None:
        self.workflows = dict(workflows)
        self.orchestrator = Orchestrator(
            lambda name: self.workflows.get(name), ExecutionCache(cache_size)
        )
        self.states: dict[str, InstanceState] = {}
        self.histories: dict[str, list[ev.HistoryEvent]] = {}
        self.loads = 0

    def handle(self, message: cmd.InstanceMessage, t: float = 0) -> TurnOutcome:
        iid = message.instance_id

        def load():
            self.loads += 1
            return list(self.histories.get(iid, []))

        outcome = self.orchestrator.handle(self.states.get(iid), message, at(t), load)
        apply_outcome(iid, outcome, self, message)
        if outcome.state is not None and outcome.events:
            # The state is always the fold of the history.
            assert (
                fold_all(InstanceState(instance_id=iid), self.histories[iid]).pending_tasks
                == outcome.state.pending_tasks
            )
        return outcome

    # The effects this harness keeps (`engine.core.effects.EffectSink`): states and histories.

    def close_execution(self, instance_id, execution_id, events) -> None:
        pass

    def remove_instance(self, instance_id: str) -> None:
        self.states.pop(instance_id, None)
        self.histories.pop(instance_id, None)

    def append_history(self, state: InstanceState, events, *, reset: bool) -> None:
        if reset:
            self.histories[state.instance_id] = []
        self.histories.setdefault(state.instance_id, []).extend(events)

    def put_state(self, state: InstanceState) -> None:
        self.states[state.instance_id] = state

    def send_task(self, item) -> None:
        pass

    def schedule_timer(self, timer: Timer) -> None:
        pass

    def send_message(self, message) -> None:
        pass

    def ignore(self, message, unapplied) -> None:
        pass

    def refuse(self, message, unapplied) -> None:
        pass


def is_refused(outcome: TurnOutcome) -> bool:
    return outcome.unapplied is not None and outcome.unapplied.disposition is Disposition.REFUSED


def unapplied(disposition: Disposition, reason: str) -> Unapplied:
    return Unapplied(disposition, reason)


def start(iid="i1", name="wf", command_id="c1", input=None, parent=None) -> cmd.StartWorkflow:
    return cmd.StartWorkflow(
        instance_id=iid, command_id=command_id, name=name, input=input, parent=parent
    )


def result(iid, task_id, value=None, execution_id="c1", failure=None) -> cmd.ActivityResult:
    return cmd.ActivityResult(
        instance_id=iid, execution_id=execution_id, task_id=task_id, result=value, failure=failure
    )


def two_steps(ctx, x):
    a = yield ctx.call_activity("a", input=x)
    b = yield ctx.call_activity("b", input=a)
    return b


def sleeper(ctx):
    yield ctx.create_timer(timedelta(seconds=10))
    return "slept"


def waiter(ctx):
    return (yield ctx.wait_for_external_event("go"))


def parent_wf(ctx):
    return (yield ctx.call_child_workflow("waiter"))


class Test_start:
    def test_records_the_first_turn_and_hands_out_work(self):
        h = Harness({"wf": two_steps})
        outcome = h.handle(start(input="1"), t=3)
        assert outcome.history_reset
        assert outcome.changed
        assert outcome.unapplied is None
        assert [type(e).__name__ for e in outcome.events] == [
            "WorkflowStarted",
            "ExecutionStarted",
            "TaskScheduled",
            "WorkflowCompleted",
        ]
        assert [e.seq for e in outcome.events] == [0, 1, 2, 3]
        assert all(e.timestamp == at(3) for e in outcome.events)
        assert outcome.work_items == [
            cmd.ActivityWorkItem(
                instance_id="i1", execution_id="c1", task_id=0, name="a", input="1"
            )
        ]
        state = outcome.state
        assert state is not None
        assert state.status is RuntimeStatus.RUNNING
        assert state.execution_id == "c1"
        assert state.pending_tasks == {0: "a"}

    def test_the_same_start_twice_changes_nothing(self):
        h = Harness({"wf": two_steps})
        h.handle(start())
        again = h.handle(start())
        assert not again.changed
        assert again.work_items == []
        assert not is_refused(again)
        assert again.unapplied == unapplied(Disposition.DUPLICATE, "this start was applied already")

    def test_start_over_a_running_instance_is_refused(self):
        h = Harness({"wf": two_steps})
        h.handle(start())
        refused = h.handle(start(command_id="c2"))
        assert is_refused(refused)
        assert refused.events == [] and refused.work_items == []
        assert refused.unapplied == unapplied(Disposition.REFUSED, "an active workflow with ID 'i1' already exists")
        assert refused.state is not None
        assert refused.state.execution_id == "c1"
        # The refusal is recorded in the state, so the sender sees it in the status view.
        assert refused.state.recent_commands[-1] == "c2"
        assert refused.write is StateWrite.SAVE
        again = h.handle(start(command_id="c2"))
        assert is_refused(again) and not again.changed

    def test_a_child_refused_tells_its_parent(self):
        h = Harness({"wf": two_steps})
        h.handle(start(iid="kid"))
        parent = ParentInstance(instance_id="p", name="pwf", task_scheduled_id=3, execution_id="pe")
        refused = h.handle(start(iid="kid", command_id="c2", parent=parent))
        (message,) = refused.messages
        assert isinstance(message, cmd.ChildResult)
        assert (message.instance_id, message.execution_id, message.task_id) == ("p", "pe", 3)
        assert message.failure is not None
        assert message.failure.error_type == "WorkflowAlreadyExistsError"

    def test_start_over_a_finished_instance_replaces_it(self):
        h = Harness({"wf": two_steps, "plain": lambda ctx: "done"})
        h.handle(start(name="plain"))
        assert h.states["i1"].status is RuntimeStatus.COMPLETED
        again = h.handle(start(command_id="c2", input='"x"'), t=50)
        assert again.history_reset
        assert again.state is not None
        assert again.state.execution_id == "c2"
        assert again.state.name == "wf"
        assert again.state.created_at == at(50)
        assert again.state.output is None
        assert h.histories["i1"][0].seq == 0
        assert len(h.histories["i1"]) == 4

    def test_unknown_workflow_fails_naming_it_once_its_wait_is_over(self):
        h = Harness({})
        h.orchestrator.unknown_code_timeout = timedelta(0)  # no wait (`tests/unit/test_unknown_code.py`)
        outcome = h.handle(start(name="ghost"))
        state = outcome.state
        assert state is not None
        assert state.status is RuntimeStatus.FAILED
        assert state.failure is not None
        assert state.failure.error_type == "UnknownWorkflowError"
        assert "'ghost'" in state.failure.message
        assert isinstance(outcome.events[-1], ev.ExecutionCompleted)


class Test_results:
    def test_result_advances_and_duplicate_is_ignored(self):
        h = Harness({"wf": two_steps})
        h.handle(start(input="1"))
        outcome = h.handle(result("i1", 0, '"A"'), t=1)
        assert [type(e).__name__ for e in outcome.events] == [
            "WorkflowStarted",
            "TaskCompleted",
            "TaskScheduled",
            "WorkflowCompleted",
        ]
        assert outcome.work_items[0].input == '"A"'
        assert outcome.work_items[0].task_id == 1
        again = h.handle(result("i1", 0, '"A"'), t=2)
        assert not again.changed
        assert again.work_items == []
        assert again.unapplied == unapplied(
            Disposition.DUPLICATE, "activity task #0 is not pending (a repeated or late result)"
        )

    def test_result_for_an_earlier_execution_is_stale(self):
        h = Harness({"wf": two_steps})
        h.handle(start())
        stale = h.handle(result("i1", 0, execution_id="old"))
        assert stale.unapplied == unapplied(Disposition.STALE, "addressed to an earlier execution of the instance")
        assert not stale.changed

    def test_failure_is_recorded_as_task_failed(self):
        h = Harness({"wf": two_steps})
        h.handle(start())
        failure = FailureDetails(error_type="E", message="m")
        outcome = h.handle(result("i1", 0, failure=failure), t=1)
        assert any(isinstance(e, ev.TaskFailed) and e.failure == failure for e in outcome.events)
        assert outcome.state is not None
        assert outcome.state.status is RuntimeStatus.FAILED

    def test_timer_request_firing_and_refiring(self):
        h = Harness({"wf": sleeper})
        (timer,) = h.handle(start(name="wf")).timers
        assert timer.message() == cmd.TimerFiring(
            instance_id="i1", execution_id="c1", timer_id=0, fire_at=at(10)
        )
        fired = h.handle(timer.message(), t=10)
        assert fired.state is not None
        assert fired.state.output == '"slept"'
        again = h.handle(timer.message(), t=11)
        assert again.unapplied == unapplied(Disposition.MOOT, "instance 'i1' is COMPLETED")

    def test_message_for_a_missing_instance(self):
        outcome = Harness({}).handle(result("nobody", 0))
        assert outcome.state is None
        assert outcome.unapplied == unapplied(Disposition.NOT_FOUND, "no workflow instance 'nobody' exists")

    def test_work_for_a_finished_generation_is_not_handed_out(self):
        def fire_and_forget(ctx):
            ctx.call_activity("never_awaited")
            return "done"

        h = Harness({"wf": fire_and_forget})
        outcome = h.handle(start())
        assert any(isinstance(e, ev.TaskScheduled) for e in outcome.events)
        assert outcome.work_items == []
        assert outcome.state is not None
        assert outcome.state.pending_tasks == {}


class Test_commands:
    def test_raise_event(self):
        h = Harness({"wf": waiter})
        h.handle(start())
        outcome = h.handle(
            cmd.RaiseEvent(instance_id="i1", command_id="r1", name="GO", input="5"), t=1
        )
        assert outcome.state is not None
        assert outcome.state.output == "5"

    def test_event_for_a_finished_instance_is_ignored(self):
        h = Harness({"plain": lambda ctx: 1})
        h.handle(start(name="plain"))
        outcome = h.handle(cmd.RaiseEvent(instance_id="i1", command_id="r1", name="x"))
        assert outcome.unapplied == unapplied(Disposition.MOOT, "instance 'i1' is COMPLETED")
        assert not outcome.changed

    def test_suspend_and_resume_are_idempotent(self):
        h = Harness({"wf": waiter})
        h.handle(start())
        suspend = cmd.SuspendWorkflow(instance_id="i1", command_id="s1")
        resume = cmd.ResumeWorkflow(instance_id="i1", command_id="s2")
        assert h.handle(resume).unapplied == unapplied(Disposition.MOOT, "not suspended")
        assert h.handle(suspend).state.status is RuntimeStatus.SUSPENDED
        assert h.handle(suspend).unapplied == unapplied(Disposition.DUPLICATE, "command s1 was applied already")
        again = cmd.SuspendWorkflow(instance_id="i1", command_id="s3")
        assert h.handle(again).unapplied == unapplied(Disposition.MOOT, "already suspended")
        held = h.handle(cmd.RaiseEvent(instance_id="i1", command_id="r1", name="go", input="1"))
        assert held.state is not None
        assert held.state.status is RuntimeStatus.SUSPENDED
        assert held.state.buffered_events == 1
        done = h.handle(resume)
        assert done.state is not None
        assert done.state.status is RuntimeStatus.COMPLETED
        assert done.state.output == "1"

    def test_a_command_delivered_twice_applies_once(self):
        h = Harness({"wf": waiter})
        h.handle(start())
        raise_once = cmd.RaiseEvent(instance_id="i1", command_id="r1", name="other", input="1")
        first = h.handle(raise_once)
        assert first.events and first.state is not None
        assert "r1" in first.state.recent_commands
        second = h.handle(raise_once)
        assert second.events == []
        assert second.unapplied == unapplied(Disposition.DUPLICATE, "command r1 was applied already")

    @pytest.mark.parametrize("recursive", [True, False])
    def test_terminate_reaches_running_children_when_recursive(self, recursive):
        h = Harness({"parent": parent_wf, "waiter": waiter})
        created = h.handle(start(name="parent", iid="p"))
        (child_start,) = created.messages
        assert isinstance(child_start, cmd.StartWorkflow)
        assert child_start.instance_id == "p:0001"
        assert child_start.parent == ParentInstance(
            instance_id="p", name="parent", task_scheduled_id=0, execution_id="c1"
        )
        h.handle(child_start)
        outcome = h.handle(
            cmd.TerminateWorkflow(
                instance_id="p", command_id="t1", output='"bye"', recursive=recursive
            )
        )
        assert outcome.state is not None
        assert outcome.state.status is RuntimeStatus.TERMINATED
        assert outcome.state.output == '"bye"'
        if recursive:
            assert outcome.messages == [
                cmd.TerminateWorkflow(instance_id="p:0001", command_id="t1:p:0001", output='"bye"')
            ]
        else:
            assert outcome.messages == []

    def test_terminated_child_reports_to_its_parent(self):
        h = Harness({"parent": parent_wf, "waiter": waiter})
        (child_start,) = h.handle(start(name="parent", iid="p")).messages
        h.handle(child_start)
        outcome = h.handle(cmd.TerminateWorkflow(instance_id="p:0001", command_id="t1"))
        (report,) = outcome.messages
        assert isinstance(report, cmd.ChildResult)
        assert report.failure is not None
        assert report.failure.error_type == "WorkflowTerminatedError"
        after = h.handle(report)
        assert after.state is not None
        assert after.state.status is RuntimeStatus.FAILED

    def test_purge_refused_while_running(self):
        h = Harness({"wf": waiter})
        h.handle(start())
        outcome = h.handle(cmd.PurgeWorkflow(instance_id="i1", command_id="x"))
        assert is_refused(outcome)
        assert outcome.write is not StateWrite.PURGE
        assert outcome.unapplied is not None
        assert "RUNNING" in outcome.unapplied.reason
        assert "only COMPLETED, FAILED or TERMINATED" in outcome.unapplied.reason

    def test_purge_recurses_to_every_child_in_history(self):
        def two_children(ctx):
            yield ctx.call_child_workflow("plain")
            yield ctx.call_child_workflow("plain")

        h = Harness({"wf": two_children, "plain": lambda ctx: 1})
        messages = h.handle(start(iid="p")).messages
        while messages:
            message = messages.pop(0)
            messages.extend(h.handle(message).messages)
        assert h.states["p"].status is RuntimeStatus.COMPLETED
        outcome = h.handle(cmd.PurgeWorkflow(instance_id="p", command_id="pg"))
        assert outcome.write is StateWrite.PURGE
        assert outcome.state is None
        assert [(m.instance_id, m.command_id) for m in outcome.messages] == [
            ("p:0001", "pg:p:0001"),
            ("p:0002", "pg:p:0002"),
        ]
        assert "p" not in h.states
        flat = h.handle(cmd.PurgeWorkflow(instance_id="p:0001", command_id="pg2", recursive=False))
        assert flat.write is StateWrite.PURGE
        assert flat.messages == []


class Test_children:
    def test_child_result_goes_back_to_the_parent(self):
        h = Harness({"parent": parent_wf, "waiter": waiter})
        (child_start,) = h.handle(start(name="parent", iid="p")).messages
        h.handle(child_start)
        outcome = h.handle(
            cmd.RaiseEvent(instance_id="p:0001", command_id="r", name="go", input='"v"')
        )
        (report,) = outcome.messages
        assert report == cmd.ChildResult(
            instance_id="p", execution_id="c1", task_id=0, child_instance_id="p:0001", result='"v"'
        )
        done = h.handle(report)
        assert done.state is not None
        assert done.state.output == '"v"'


def forgets_its_child(ctx):
    ctx.call_child_workflow("waiter", instance_id=f"{ctx.instance_id}-child")  # not awaited
    yield ctx.create_timer(timedelta(seconds=1))
    return "done"


def child_in_last_turn(ctx):
    ctx.call_child_workflow("waiter", instance_id=f"{ctx.instance_id}-child")
    return "done"
    yield  # a generator workflow


def finish_parent(h: Harness) -> cmd.StartWorkflow:
    """Run a fire_and_forget parent 'p' to COMPLETED; return its child's start (not applied)."""
    first = h.handle(start(name="parent", iid="p"))
    (child_start,) = first.messages
    (timer,) = first.timers
    h.handle(timer.message(), t=1)
    assert h.states["p"].status is RuntimeStatus.COMPLETED
    assert isinstance(child_start, cmd.StartWorkflow)
    return child_start


class Test_restart_while_a_child_runs:
    """daprd refuses to recreate a finished workflow while a child of its run still runs."""

    def test_a_parent_whose_child_still_runs_cannot_be_restarted_until_the_child_ends(self):
        h = Harness({"parent": forgets_its_child, "waiter": waiter})
        child_start = finish_parent(h)
        assert dict(h.states["p"].unfinished_children) == {0: "p-child"}
        h.handle(child_start)
        refused = h.handle(start(name="parent", iid="p", command_id="c2"))
        assert refused.unapplied == unapplied(
            Disposition.REFUSED,
            "cannot recreate workflow with ID 'p': child workflow 'p-child': orchestration has not "
            "yet completed",
        )
        assert refused.state is not None and refused.state.recent_commands[-1] == "c2"
        # The child ends: its result reaches the finished parent, which lets go of it.
        (report,) = h.handle(
            cmd.RaiseEvent(instance_id="p-child", command_id="r", name="go", input="1")
        ).messages
        late = h.handle(report)
        assert late.write is StateWrite.SAVE and not late.events and late.unapplied is None
        assert late.state is not None and not late.state.unfinished_children
        again = h.handle(start(name="parent", iid="p", command_id="c3"))
        assert not is_refused(again)
        assert again.state is not None and again.state.run_id == "c3"
        assert not again.state.unfinished_children

    def test_a_child_that_reported_before_the_parent_ended_does_not_block(self):
        h = Harness({"parent": parent_wf, "waiter": waiter})
        (child_start,) = h.handle(start(name="parent", iid="p")).messages
        h.handle(child_start)
        (report,) = h.handle(
            cmd.RaiseEvent(instance_id="p:0001", command_id="r", name="go", input="1")
        ).messages
        h.handle(report)
        assert h.states["p"].status is RuntimeStatus.COMPLETED
        assert not h.states["p"].unfinished_children
        assert not is_refused(h.handle(start(name="parent", iid="p", command_id="c2")))

    def test_a_child_made_in_the_last_turn_is_never_started_and_does_not_block(self):
        h = Harness({"parent": child_in_last_turn, "waiter": waiter})
        done = h.handle(start(name="parent", iid="p"))
        assert done.messages == []
        assert done.state is not None and done.state.status is RuntimeStatus.COMPLETED
        assert not done.state.unfinished_children
        assert not is_refused(h.handle(start(name="parent", iid="p", command_id="c2")))

    def test_a_terminated_parent_waits_for_its_terminated_children(self):
        h = Harness({"parent": parent_wf, "waiter": waiter})
        (child_start,) = h.handle(start(name="parent", iid="p")).messages
        h.handle(child_start)
        stop = h.handle(cmd.TerminateWorkflow(instance_id="p", command_id="t", recursive=True))
        assert h.states["p"].status is RuntimeStatus.TERMINATED
        assert is_refused(h.handle(start(name="parent", iid="p", command_id="c2")))
        (child_stop,) = stop.messages
        (report,) = h.handle(child_stop).messages
        h.handle(report)
        assert not is_refused(h.handle(start(name="parent", iid="p", command_id="c3")))

    def test_a_result_for_another_run_or_task_changes_nothing(self):
        h = Harness({"parent": forgets_its_child, "waiter": waiter})
        finish_parent(h)
        stale = cmd.ChildResult(
            instance_id="p", execution_id="old", task_id=0, child_instance_id="p-child", result="1"
        )
        assert not h.handle(stale).changed
        other = cmd.ChildResult(
            instance_id="p", execution_id="c1", task_id=7, child_instance_id="x", result="1"
        )
        assert not h.handle(other).changed
        assert dict(h.states["p"].unfinished_children) == {0: "p-child"}


class Test_continue_as_new:
    def test_history_restarts_and_the_old_generation_is_closed(self):
        def looper(ctx, n):
            yield ctx.create_timer(timedelta(seconds=1))
            if n < 2:
                ctx.continue_as_new(n + 1, save_events=True)
            return n

        h = Harness({"wf": looper})
        first = h.handle(start(input="0"))
        h.handle(cmd.RaiseEvent(instance_id="i1", command_id="r", name="kept", input='"e"'), t=0.5)
        outcome = h.handle(first.timers[0].message(), t=1)
        assert outcome.history_reset
        (closed,) = outcome.closed
        closed_events = closed.events
        assert closed.execution_id == "c1"
        assert isinstance(closed_events[-1], ev.ContinuedAsNew)
        assert closed_events[-1].carryover_events == 1
        state = outcome.state
        assert state is not None
        assert state.status is RuntimeStatus.RUNNING
        assert state.generation == 1
        expected_id = str(uuid.uuid5(uuid.UUID("0b6e7f4a-4a39-5c1e-9d55-6865616472ad"), "c1:1"))
        assert state.execution_id == expected_id
        assert state.input == "1"
        assert [type(e).__name__ for e in outcome.events] == [
            "WorkflowStarted",
            "ExecutionStarted",
            "EventRaised",
            "TimerCreated",
            "WorkflowCompleted",
        ]
        assert [e.seq for e in outcome.events] == [0, 1, 2, 3, 4]
        assert outcome.timers[0].execution_id == expected_id
        # The late firing of the old generation is stale; the new one proceeds.
        assert h.handle(first.timers[0].message(), t=2).unapplied is not None
        check_replay_turns("i1", h.workflows.get, h.histories["i1"])


class Test_cache:
    def test_sticky_execution_does_not_reload_history(self):
        h = Harness({"wf": two_steps}, cache_size=10)
        h.handle(start())
        h.handle(result("i1", 0, "1"))
        assert h.loads == 0
        assert h.orchestrator.cache.hits == 1

    def test_without_cache_every_turn_replays(self):
        h = Harness({"wf": two_steps}, cache_size=0)
        h.handle(start())
        h.handle(result("i1", 0, "1"))
        h.handle(result("i1", 1, "2"))
        assert h.loads == 2
        assert h.states["i1"].output == "2"

    def test_changed_code_fails_the_instance_on_replay(self):
        def changed(ctx, x):
            yield ctx.call_activity("refund", input=x)

        h = Harness({"wf": two_steps}, cache_size=0)
        h.handle(start(input="1"))
        h.workflows["wf"] = changed
        outcome = h.handle(result("i1", 0, "1"))
        state = outcome.state
        assert state is not None
        assert state.status is RuntimeStatus.FAILED
        assert state.failure is not None
        assert state.failure.error_type == "NonDeterminismError"
        assert "call_activity('a')" in state.failure.message
        assert "call_activity('refund')" in state.failure.message


class Test_commands_before_the_start:
    """A start scheduled for later, or waiting for its code, keeps what is sent to it meanwhile."""

    def scheduled(self, h: Harness) -> None:
        h.handle(cmd.StartWorkflow(instance_id="i1", command_id="c1", name="wf", scheduled_start=at(60)))
        assert h.states["i1"].status is RuntimeStatus.PENDING

    def due(self, h: Harness) -> TurnOutcome:
        return h.handle(cmd.StartWorkflow(instance_id="i1", command_id="c1", name="wf", scheduled_start=at(60)),
                        t=60)

    def test_an_event_raised_before_a_scheduled_start_reaches_the_run(self):
        h = Harness({"wf": waiter})
        self.scheduled(h)
        raised = cmd.RaiseEvent(instance_id="i1", command_id="r1", name="go", input="7")
        kept = h.handle(raised, t=1)
        assert kept.state is not None and kept.state.status is RuntimeStatus.PENDING
        assert [e.name for e in kept.state.early_events] == ["go"]
        assert "r1" in kept.state.recent_commands
        assert h.handle(raised, t=2).unapplied == unapplied(Disposition.DUPLICATE, "command r1 was applied already")
        started = self.due(h)
        assert started.state is not None
        assert started.state.status is RuntimeStatus.COMPLETED
        assert started.state.output == "7"
        assert started.state.early_events == ()

    def test_an_event_raised_while_the_start_waits_for_its_code_reaches_the_run(self):
        h = Harness({})
        h.handle(start(name="wf"))
        assert h.states["i1"].waiting_for_code is not None
        h.handle(cmd.RaiseEvent(instance_id="i1", command_id="r1", name="go", input="3"), t=1)
        h.workflows["wf"] = waiter
        started = h.handle(start(name="wf"), t=5)
        assert started.state is not None and started.state.output == "3"

    def test_a_rescheduled_wait_for_code_keeps_the_events(self):
        h = Harness({})
        self.scheduled(h)
        h.handle(cmd.RaiseEvent(instance_id="i1", command_id="r1", name="go", input="3"), t=1)
        waiting = self.due(h)  # due, but no code here: it waits, and keeps the event
        assert waiting.state is not None and waiting.state.waiting_for_code is not None
        assert [e.input for e in waiting.state.early_events] == ["3"]

    def test_a_terminate_ends_a_scheduled_instance_before_it_starts(self):
        h = Harness({"wf": waiter})
        self.scheduled(h)
        ended = h.handle(cmd.TerminateWorkflow(instance_id="i1", command_id="t1", output='"bye"'), t=1)
        assert ended.state is not None and ended.state.status is RuntimeStatus.TERMINATED
        assert ended.state.output == '"bye"'
        assert "t1" in ended.state.recent_commands
        assert [type(e).__name__ for e in h.histories["i1"]] == [
            "WorkflowStarted", "ExecutionStarted", "ExecutionTerminated", "WorkflowCompleted", "ExecutionCompleted"]
        # The start it waited for is now moot.
        assert self.due(h).unapplied == unapplied(Disposition.DUPLICATE, "this start was applied already")

    def test_a_terminated_child_that_never_started_reports_to_its_parent(self):
        h = Harness({})
        parent = ParentInstance(instance_id="p", name="pwf", task_scheduled_id=3, execution_id="pe")
        h.handle(start(name="wf", parent=parent))
        ended = h.handle(cmd.TerminateWorkflow(instance_id="i1", command_id="t1"), t=1)
        assert [type(m).__name__ for m in ended.messages] == ["ChildResult"]

    def test_a_suspend_before_the_start_starts_the_run_suspended(self):
        h = Harness({"wf": waiter})
        self.scheduled(h)
        h.handle(cmd.SuspendWorkflow(instance_id="i1", command_id="s1"), t=1)
        assert h.states["i1"].starts_suspended
        assert self.due(h).state.status is RuntimeStatus.SUSPENDED
        h2 = Harness({"wf": waiter})
        self.scheduled(h2)
        h2.handle(cmd.SuspendWorkflow(instance_id="i1", command_id="s1"), t=1)
        h2.handle(cmd.ResumeWorkflow(instance_id="i1", command_id="s2"), t=2)
        assert self.due(h2).state.status is RuntimeStatus.RUNNING

    def test_events_held_before_the_start_are_bounded(self):
        h = Harness({"wf": waiter})
        h.orchestrator.max_early_bytes = 2 * EARLY_EVENT_OVERHEAD + 20  # room for one event, not two
        self.scheduled(h)
        assert h.handle(cmd.RaiseEvent(instance_id="i1", command_id="r1", name="a", input='"12345"')).changed
        refused = h.handle(cmd.RaiseEvent(instance_id="i1", command_id="r2", name="b", input='"123456"'))
        assert refused.unapplied is not None and refused.unapplied.disposition is Disposition.REFUSED
        assert len(h.states["i1"].early_events) == 1

    def test_a_start_that_waits_for_its_code_keeps_its_handed_on_history(self):
        h = Harness({})
        h.handle(cmd.StartWorkflow(instance_id="i1", command_id="c1", name="wf", propagated_history='{"x":1}'))
        assert h.states["i1"].propagated_history == '{"x":1}'
        h.workflows["wf"] = waiter
        h.handle(scheduled_start_command(h.states["i1"]), t=5)
        started = next(e for e in h.histories["i1"] if isinstance(e, ev.ExecutionStarted))
        assert started.propagated_history == '{"x":1}'
        assert h.states["i1"].propagated_history is None
