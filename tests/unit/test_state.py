"""The fold: hand-built histories in, instance state out; invalid transitions refused."""

from __future__ import annotations

from types import MappingProxyType

import pytest
from support import at, numbered, started

from engine.core import events as ev
from engine.core.state import InstanceState, fold, fold_all
from engine.core.values import FailureDetails, ParentInstance, RuntimeStatus
from engine.errors import InvalidTransitionError


def fresh() -> InstanceState:
    return InstanceState(instance_id="i1")


def running(*more: ev.HistoryEvent) -> InstanceState:
    history = numbered([*started("wf", input='"in"'), *more])
    return fold_all(fresh(), history)


def turn(start: int, *events: ev.HistoryEvent, t: float = 1) -> list[ev.HistoryEvent]:
    return numbered(
        [ev.WorkflowStarted(timestamp=at(t)), *events, ev.WorkflowCompleted(timestamp=at(t))], start
    )


class Test_start:
    def test_a_new_instance(self):
        state = fold_all(fresh(), numbered(started("wf", input='"in"', t=3, execution_id="x1")))
        assert state.status is RuntimeStatus.RUNNING
        assert state.name == "wf"
        assert state.input == '"in"'
        assert state.execution_id == "x1"
        assert state.created_at == at(3)
        assert state.last_updated_at == at(3)
        assert state.history_length == 2
        assert state.is_running
        assert not state.is_terminal
        assert state.generation == 0

    def test_parent_is_kept(self):
        parent = ParentInstance(instance_id="p", name="pwf", task_scheduled_id=4, execution_id="pe")
        events = numbered(
            [
                ev.WorkflowStarted(timestamp=at(0)),
                ev.ExecutionStarted(
                    timestamp=at(0), name="c", instance_id="i1", execution_id="e", parent=parent
                ),
            ]
        )
        assert fold_all(fresh(), events).parent == parent

    def test_fold_of_one_event_is_fold_all_of_a_list(self):
        a, b = numbered(started("wf"))
        assert fold(fold(fresh(), a), b) == fold_all(fresh(), [a, b])

    def test_the_input_state_is_not_changed(self):
        before = running()
        after = fold_all(before, turn(2, ev.TaskScheduled(timestamp=at(1), event_id=0, name="a")))
        assert before.pending_tasks == {}
        assert after.pending_tasks == {0: "a"}
        assert isinstance(after.pending_tasks, MappingProxyType)


class Test_pending_work:
    def test_tasks_timers_children_are_tracked_until_their_results(self):
        state = running(
            ev.TaskScheduled(timestamp=at(0), event_id=0, name="act"),
            ev.TimerCreated(timestamp=at(0), event_id=1, fire_at=at(60)),
            ev.ChildWorkflowCreated(
                timestamp=at(0), event_id=2, instance_id="i1:0002", name="child"
            ),
            ev.WorkflowCompleted(timestamp=at(0)),
        )
        assert state.pending_tasks == {0: "act"}
        assert state.pending_timers == {1: at(60)}
        assert state.pending_children == {2: "i1:0002"}
        n = state.history_length
        state = fold_all(
            state,
            turn(
                n,
                ev.TaskCompleted(timestamp=at(1), task_scheduled_id=0, result="1"),
                ev.TimerFired(timestamp=at(1), timer_id=1, fire_at=at(60)),
                ev.ChildWorkflowFailed(
                    timestamp=at(1),
                    task_scheduled_id=2,
                    failure=FailureDetails(error_type="E", message="m"),
                ),
            ),
        )
        assert state.pending_tasks == {}
        assert state.pending_timers == {}
        assert state.pending_children == {}
        assert state.last_updated_at == at(1)

    def test_task_failed_clears_the_task(self):
        state = running(ev.TaskScheduled(timestamp=at(0), event_id=0, name="a"))
        state = fold(
            state,
            ev.TaskFailed(
                timestamp=at(1),
                seq=state.history_length,
                task_scheduled_id=0,
                failure=FailureDetails(error_type="E", message="m"),
            ),
        )
        assert state.pending_tasks == {}

    def test_custom_status_comes_from_workflow_completed(self):
        state = running(ev.WorkflowCompleted(timestamp=at(0), custom_status='"half way"'))
        assert state.custom_status == '"half way"'


class Test_endings:
    def test_completed(self):
        state = running(
            ev.TaskScheduled(timestamp=at(0), event_id=0, name="a"),
            ev.WorkflowCompleted(timestamp=at(0)),
            ev.ExecutionCompleted(
                timestamp=at(5), event_id=1, status=RuntimeStatus.COMPLETED, result='"out"'
            ),
        )
        assert state.status is RuntimeStatus.COMPLETED
        assert state.is_terminal
        assert not state.is_running
        assert state.output == '"out"'
        assert state.failure is None
        assert state.completed_at == at(5)
        assert state.pending_tasks == {}

    def test_failed_keeps_failure_and_drops_output(self):
        failure = FailureDetails(error_type="ValueError", message="bad", stack_trace="tb")
        state = running(
            ev.ExecutionCompleted(
                timestamp=at(5), status=RuntimeStatus.FAILED, result='"x"', failure=failure
            )
        )
        assert state.status is RuntimeStatus.FAILED
        assert state.failure == failure
        assert state.output is None

    def test_terminated_with_output(self):
        state = running(
            ev.ExecutionTerminated(timestamp=at(1), output='"why"'),
            ev.ExecutionCompleted(timestamp=at(1), status=RuntimeStatus.TERMINATED, result='"why"'),
        )
        assert state.status is RuntimeStatus.TERMINATED
        assert state.output == '"why"'

    def test_continue_as_new_opens_the_next_generation(self):
        state = running(
            ev.WorkflowCompleted(timestamp=at(0), custom_status='"kept"'),
            ev.ContinuedAsNew(timestamp=at(1), input='"next"'),
        )
        assert state.status is RuntimeStatus.CONTINUED_AS_NEW
        assert state.output == '"next"'
        assert not state.is_terminal
        assert not state.is_running
        next_gen = fold_all(state, numbered(started("wf", input='"next"', t=2, execution_id="e2")))
        assert next_gen.status is RuntimeStatus.RUNNING
        assert next_gen.history_length == 2  # the history restarts
        assert next_gen.generation == 1
        assert next_gen.execution_id == "e2"
        assert next_gen.input == '"next"'
        assert next_gen.created_at == at(0)  # the instance is as old as its first generation
        assert next_gen.custom_status == '"kept"'
        assert next_gen.output is None

    def test_restart_over_a_finished_instance(self):
        done = running(
            ev.ExecutionCompleted(timestamp=at(1), status=RuntimeStatus.COMPLETED, result="1")
        )
        again = fold_all(done, numbered(started("wf2", t=10, execution_id="e9")))
        assert again.status is RuntimeStatus.RUNNING
        assert again.name == "wf2"
        assert again.created_at == at(10)
        assert again.output is None
        assert again.generation == 0


class Test_suspend:
    def test_events_while_suspended_are_counted_and_resume_releases_them(self):
        state = running(ev.ExecutionSuspended(timestamp=at(1), reason="maintenance"))
        assert state.status is RuntimeStatus.SUSPENDED
        assert state.is_running
        n = state.history_length
        state = fold_all(
            state,
            numbered(
                [
                    ev.EventRaised(timestamp=at(2), name="a"),
                    ev.EventRaised(timestamp=at(2), name="b"),
                ],
                n,
            ),
        )
        assert state.buffered_events == 2
        state = fold(state, ev.ExecutionResumed(timestamp=at(3), seq=state.history_length))
        assert state.status is RuntimeStatus.RUNNING
        assert state.buffered_events == 0

    def test_events_while_running_are_not_buffered(self):
        assert running(ev.EventRaised(timestamp=at(1), name="a")).buffered_events == 0


class Test_invalid_transitions:
    def test_event_for_a_completed_instance(self):
        done = running(
            ev.TaskScheduled(timestamp=at(0), event_id=0, name="a"),
            ev.ExecutionCompleted(timestamp=at(1), status=RuntimeStatus.COMPLETED),
        )
        late = ev.TaskCompleted(timestamp=at(2), seq=done.history_length, task_scheduled_id=0)
        with pytest.raises(InvalidTransitionError) as info:
            fold(done, late)
        message = str(info.value)
        assert "TaskCompleted" in message
        assert "'i1'" in message
        assert "COMPLETED" in message
        assert "has finished" in message

    def test_event_before_start(self):
        with pytest.raises(InvalidTransitionError, match=r"EventRaised .*PENDING.*has not started"):
            fold(fresh(), ev.EventRaised(timestamp=at(0), name="x"))

    def test_sequence_gap(self):
        state = running()
        with pytest.raises(
            InvalidTransitionError,
            match=r"TimerCreated \(seq 5\).*expected sequence number 2.*no gaps",
        ):
            fold(state, ev.TimerCreated(timestamp=at(0), seq=5, event_id=0, fire_at=at(1)))

    def test_repeated_sequence_number(self):
        state = running()
        with pytest.raises(InvalidTransitionError, match="expected sequence number 2"):
            fold(state, ev.EventRaised(timestamp=at(0), seq=1, name="x"))

    @pytest.mark.parametrize(
        ("event", "what"),
        [
            (
                ev.TaskCompleted(timestamp=at(1), task_scheduled_id=7),
                "no activity task #7 is pending",
            ),
            (
                ev.TaskFailed(
                    timestamp=at(1),
                    task_scheduled_id=7,
                    failure=FailureDetails(error_type="E", message="m"),
                ),
                "no activity task #7 is pending",
            ),
            (ev.TimerFired(timestamp=at(1), timer_id=7, fire_at=at(1)), "no timer #7 is pending"),
            (
                ev.ChildWorkflowCompleted(timestamp=at(1), task_scheduled_id=7),
                "no child workflow task #7 is pending",
            ),
            (
                ev.ChildWorkflowFailed(
                    timestamp=at(1),
                    task_scheduled_id=7,
                    failure=FailureDetails(error_type="E", message="m"),
                ),
                "no child workflow task #7 is pending",
            ),
        ],
    )
    def test_result_for_a_task_not_pending(self, event, what):
        state = running()
        with pytest.raises(InvalidTransitionError, match=what):
            fold(state, event)

    def test_result_delivered_twice(self):
        state = running(
            ev.TaskScheduled(timestamp=at(0), event_id=0, name="a"),
            ev.TaskCompleted(timestamp=at(1), task_scheduled_id=0),
        )
        with pytest.raises(InvalidTransitionError, match="no activity task #0 is pending"):
            fold(state, ev.TaskCompleted(timestamp=at(1), task_scheduled_id=0))

    def test_start_while_running(self):
        state = running()
        again = ev.ExecutionStarted(
            timestamp=at(1), seq=2, name="wf", instance_id="i1", execution_id="e2"
        )
        with pytest.raises(InvalidTransitionError, match="already running"):
            fold(state, again)

    def test_a_failed_batch_leaves_the_original_state_usable(self):
        state = running()
        with pytest.raises(InvalidTransitionError):
            fold_all(
                state,
                numbered(
                    [
                        ev.TaskScheduled(timestamp=at(1), event_id=0, name="a"),
                        ev.TaskCompleted(timestamp=at(1), task_scheduled_id=9),
                    ],
                    2,
                ),
            )
        assert state.pending_tasks == {}
        assert state.history_length == 2

    def test_unnumbered_events_are_not_checked_for_gaps(self):
        state = fold(running(), ev.EventRaised(timestamp=at(1), name="x"))
        assert state.history_length == 3
