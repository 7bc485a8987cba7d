"""Tasks and their composites: when_all, when_any, TaskFailedError."""

from __future__ import annotations

from datetime import timedelta

import pytest
from support import Runner, at, resolver

from engine import TaskFailedError, when_all, when_any
from engine.core import events as ev
from engine.core.actions import CreateTimer, ScheduleTask
from engine.core.tasks import (
    CompletableTask,
    ExternalEventTask,
    TimerTask,
    WhenAllTask,
    WhenAnyTask,
)
from engine.core.values import FailureDetails, RuntimeStatus
from engine.errors import WorkflowError


def failed(message: str) -> TaskFailedError:
    return TaskFailedError(message, FailureDetails(error_type="E", message=message))


class Test_Task:
    def test_result_and_exception_access(self):
        task: CompletableTask[int] = CompletableTask()
        assert not task.is_complete
        assert not task.is_failed
        with pytest.raises(WorkflowError, match="not complete"):
            task.get_result()
        with pytest.raises(WorkflowError, match="did not fail"):
            task.get_exception()
        task.complete(5)
        assert task.is_complete
        assert task.get_result() == 5

    def test_failed_task_raises_its_exception(self):
        task: CompletableTask[int] = CompletableTask()
        error = failed("x")
        task.fail(error)
        assert task.is_failed
        assert task.get_exception() is error
        with pytest.raises(TaskFailedError):
            task.get_result()

    def test_settling_twice_keeps_the_first_outcome(self):
        task: CompletableTask[int] = CompletableTask()
        task.complete(1)
        task.fail(failed("late"))
        task.complete(2)
        assert task.get_result() == 1
        assert not task.is_failed


class Test_TaskFailedError:
    def test_carries_inner_failure_details(self):
        inner = FailureDetails(
            error_type="ValueError",
            message="bad",
            stack_trace="tb",
            inner=FailureDetails(error_type="KeyError", message="k"),
        )
        error = TaskFailedError("Activity task 'x' #3 failed: bad", inner)
        assert error.details is inner
        assert error.details.inner is not None
        assert error.details.inner.error_type == "KeyError"
        assert str(error) == "Activity task 'x' #3 failed: bad"
        # A workflow failing with it keeps the inner failure.
        outer = FailureDetails.from_exception(error)
        assert outer.error_type == "TaskFailedError"
        assert outer.inner is inner


class Test_when_all:
    def test_results_in_task_order_whatever_the_completion_order(self):
        a, b, c = CompletableTask(), CompletableTask(), CompletableTask()
        all_ = when_all([a, b, c])
        c.complete("c")
        a.complete("a")
        assert not all_.is_complete
        b.complete("b")
        assert all_.get_result() == ["a", "b", "c"]

    def test_empty_completes_at_once(self):
        assert when_all([]).get_result() == []

    def test_already_complete_children_count(self):
        a, b = CompletableTask(), CompletableTask()
        a.complete(1)
        all_ = when_all([a, b])
        assert not all_.is_complete
        b.complete(2)
        assert all_.get_result() == [1, 2]

    def test_failure_waits_for_all_then_raises_the_first_failure(self):
        a, b, c = CompletableTask(), CompletableTask(), CompletableTask()
        all_ = when_all([a, b, c])
        first, second = failed("first"), failed("second")
        c.fail(first)
        assert not all_.is_complete  # the others are still running
        b.complete("ok")
        a.fail(second)
        assert all_.is_complete
        assert all_.is_failed
        assert all_.get_exception() is first

    def test_rejects_non_tasks(self):
        with pytest.raises(TypeError, match="expected a Task"):
            when_all([CompletableTask(), "nope"])  # type: ignore[list-item]

    def test_in_a_workflow_fails_only_after_every_activity_settled(self):
        outcome = []

        def wf(ctx):
            tasks = [ctx.call_activity("a", input=i) for i in range(3)]
            try:
                yield when_all(tasks)
            except TaskFailedError as exc:
                outcome.append(exc.details.message)
                outcome.append([t.is_complete for t in tasks])
            return "handled"

        run = Runner(resolver(wf), "wf")
        assert len(run.start().actions) == 3
        run.turn(
            1,
            ev.TaskFailed(
                timestamp=at(1),
                task_scheduled_id=1,
                failure=FailureDetails(error_type="E", message="one failed"),
            ),
        )
        assert outcome == []
        run.complete_task(2, 0, "0")
        assert outcome == []
        done = run.turn(
            3,
            ev.TaskFailed(
                timestamp=at(3),
                task_scheduled_id=2,
                failure=FailureDetails(error_type="E", message="two failed"),
            ),
        )
        assert outcome == ["one failed", [True, True, True]]
        assert done.completion is not None
        assert done.completion.result == '"handled"'
        run.check()


class Test_when_any:
    def test_returns_the_winning_task(self):
        a, b = CompletableTask(), CompletableTask()
        any_ = when_any([a, b])
        b.complete("b")
        a.complete("a")
        assert any_.get_result() is b

    def test_a_failed_task_wins_without_raising(self):
        a, b = CompletableTask(), CompletableTask()
        any_ = when_any([a, b])
        a.fail(failed("x"))
        assert any_.get_result() is a
        assert a.is_failed

    def test_already_complete_child_wins_at_once(self):
        a, b = CompletableTask(), CompletableTask()
        b.complete(1)
        assert when_any([a, b]).get_result() is b

    def test_empty_is_an_error(self):
        with pytest.raises(ValueError, match="at least one"):
            when_any([])

    def test_nested_composites(self):
        a, b, c = CompletableTask(), CompletableTask(), CompletableTask()
        inner = when_all([a, b])
        outer = when_any([inner, c])
        a.complete(1)
        assert not outer.is_complete
        b.complete(2)
        assert outer.get_result() is inner
        assert inner.get_result() == [1, 2]
        assert isinstance(inner, WhenAllTask)
        assert isinstance(outer, WhenAnyTask)

    def test_activity_against_timer_timeout_in_a_workflow(self):
        def wf(ctx):
            work = ctx.call_activity("slow")
            timeout = ctx.create_timer(timedelta(seconds=30))
            winner = yield when_any([work, timeout])
            return "timeout" if winner is timeout else winner.get_result()

        timed_out = Runner(resolver(wf), "wf")
        assert timed_out.start().actions == (
            ScheduleTask(id=0, name="slow"),
            CreateTimer(id=1, fire_at=at(30)),
        )
        done = timed_out.fire(30, 1)
        assert done.completion is not None
        assert done.completion.result == '"timeout"'
        # The late result changes nothing.
        assert timed_out.complete_task(40, 0, '"late"').actions == ()
        timed_out.check()

        in_time = Runner(resolver(wf), "wf")
        in_time.start()
        done = in_time.complete_task(5, 0, '"fast"')
        assert done.completion is not None
        assert done.completion.status is RuntimeStatus.COMPLETED
        assert done.completion.result == '"fast"'
        in_time.check()

    def test_external_event_against_timer(self):
        def wf(ctx):
            approval = ctx.wait_for_external_event("approval")
            timeout = ctx.create_timer(timedelta(hours=24))
            winner = yield when_any([approval, timeout])
            return winner is approval

        run = Runner(resolver(wf), "wf")
        run.start()
        done = run.raise_event(60, "Approval", "true")
        assert done.completion is not None
        assert done.completion.result == "true"


def test_task_types_expose_what_they_wait_for():
    assert TimerTask(at(5)).fire_at == at(5)
    assert ExternalEventTask("Go").name == "Go"
