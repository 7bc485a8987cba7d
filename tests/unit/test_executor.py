"""The replay executor, driven directly with hand-built histories (no orchestrator, no backend)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from support import Runner, at, numbered, resolver, started

from engine import DaprWorkflowContext, TaskFailedError, alternate_name, when_any
from engine.core import events as ev
from engine.core.actions import CompleteWorkflow, CreateChildWorkflow, CreateTimer, ScheduleTask
from engine.core.executor import WorkflowExecution, call_with_optional_input, execute
from engine.core.values import FailureDetails, RuntimeStatus


def payload(text: str | None) -> object:
    return None if text is None else orjson.loads(text)


def hello(ctx, name):
    return f"hello {name}"


# -- starting and finishing -----------------------------------------------------------------


class Test_start:
    def test_generator_first_step_schedules_activity_with_json_input(self):
        def wf(ctx, order):
            result = yield ctx.call_activity(hello, input=order["who"])
            return result

        run = Runner(resolver(wf), "wf", input='{"who": "ada"}')
        first = run.start()
        assert first.actions == (ScheduleTask(id=0, name="hello", input='"ada"'),)
        assert first.completion is None
        done = run.complete_task(1, 0, '"hello ada"')
        assert done.completion == CompleteWorkflow(
            id=1, status=RuntimeStatus.COMPLETED, result='"hello ada"'
        )

    def test_non_generator_workflow_completes_with_return_value(self):
        def plain(ctx, x):
            return {"doubled": x * 2}

        result = Runner(resolver(plain), "plain", input="21").start()
        assert result.actions == (
            CompleteWorkflow(id=0, status=RuntimeStatus.COMPLETED, result='{"doubled": 42}'),
        )

    def test_workflow_without_input_parameter_is_called_with_ctx_only(self):
        seen = []

        def no_input(ctx):
            seen.append(type(ctx))
            return None

        result = Runner(resolver(no_input), "no_input", input='"ignored"').start()
        assert seen == [DaprWorkflowContext]
        assert result.completion is not None
        assert result.completion.status is RuntimeStatus.COMPLETED
        assert result.completion.result is None

    def test_returning_none_has_no_payload_but_returning_json_null_is_impossible_to_confuse(self):
        def returns_list(ctx):
            return [None]

        result = Runner(resolver(returns_list), "returns_list").start()
        assert result.completion is not None
        assert result.completion.result == "[null]"

    def test_exception_fails_with_type_message_and_stack_trace(self):
        def broken(ctx, _):
            yield ctx.create_timer(timedelta(seconds=1))
            raise KeyError("no such order")

        run = Runner(resolver(broken), "broken")
        run.start()
        result = run.fire(1, 0)
        completion = result.completion
        assert completion is not None
        assert completion.status is RuntimeStatus.FAILED
        assert completion.failure is not None
        assert completion.failure.error_type == "KeyError"
        assert completion.failure.message == "'no such order'"
        assert completion.failure.stack_trace is not None
        assert "Traceback" in completion.failure.stack_trace
        assert 'raise KeyError("no such order")' in completion.failure.stack_trace
        assert completion.result is None

    def test_exception_before_first_yield_fails(self):
        def early(ctx, _):
            raise ValueError("bad input")
            yield  # pragma: no cover - makes this a generator

        result = Runner(resolver(early), "early").start()
        assert result.completion is not None
        assert result.completion.failure == FailureDetails(
            error_type="ValueError",
            message="bad input",
            stack_trace=result.completion.failure.stack_trace,
        )

    def test_unknown_workflow_fails_naming_it(self):
        result = Runner(resolver(), "nope").start()
        completion = result.completion
        assert completion is not None
        assert completion.status is RuntimeStatus.FAILED
        assert completion.failure is not None
        assert completion.failure.error_type == "UnknownWorkflowError"
        assert "'nope'" in completion.failure.message

    def test_yielding_something_that_is_not_a_task_fails(self):
        def yields_int(ctx):
            yield 42

        result = Runner(resolver(yields_int), "yields_int").start()
        assert result.completion is not None
        assert result.completion.failure is not None
        assert result.completion.failure.error_type == "TypeError"
        assert "int" in result.completion.failure.message

    def test_unserializable_result_fails_the_workflow(self):
        def returns_set(ctx):
            return {1, 2}

        result = Runner(resolver(returns_set), "returns_set").start()
        assert result.completion is not None
        assert result.completion.failure is not None
        assert result.completion.failure.error_type == "SerializationError"
        assert "set" in result.completion.failure.message

    def test_completion_is_returned_once(self):
        def plain(ctx):
            return 1

        run = Runner(resolver(plain), "plain")
        assert run.start().completion is not None
        later = run.turn(5, ev.EventRaised(timestamp=at(5), name="x"))
        assert later.actions == ()


# -- activities and children ------------------------------------------------------------------


class Test_call_activity:
    def test_by_function_by_name_and_by_alternate_name(self):
        @alternate_name("renamed")
        def original(ctx, x):
            return x

        def wf(ctx):
            a = ctx.call_activity(hello, input=1)
            b = ctx.call_activity("by_name", input=2)
            c = ctx.call_activity(original, input=3, app_id="other-app")
            yield when_any([a, b, c])

        result = Runner(resolver(wf), "wf").start()
        assert result.actions == (
            ScheduleTask(id=0, name="hello", input="1"),
            ScheduleTask(id=1, name="by_name", input="2"),
            ScheduleTask(id=2, name="renamed", input="3", app_id="other-app"),
        )

    def test_result_is_decoded_json(self):
        got = []

        def wf(ctx):
            got.append((yield ctx.call_activity(hello, input="x")))

        run = Runner(resolver(wf), "wf")
        run.start()
        run.complete_task(1, 0, '{"a": [1, 2]}')
        assert got == [{"a": [1, 2]}]

    def test_failure_raises_task_failed_error_with_inner_details(self):
        caught = []

        def wf(ctx):
            try:
                yield ctx.call_activity(hello, input="x")
            except TaskFailedError as exc:
                caught.append(exc)
                return "handled"

        inner = FailureDetails(
            error_type="ZeroDivisionError", message="division by zero", stack_trace="Traceback ..."
        )
        run = Runner(resolver(wf), "wf")
        run.start()
        done = run.turn(1, ev.TaskFailed(timestamp=at(1), task_scheduled_id=0, failure=inner))
        (exc,) = caught
        assert exc.details == inner
        assert "'hello'" in str(exc)
        assert "division by zero" in str(exc)
        assert done.completion is not None
        assert done.completion.result == '"handled"'

    def test_unhandled_task_failure_fails_workflow_with_inner_failure(self):
        def wf(ctx):
            yield ctx.call_activity(hello, input="x")

        inner = FailureDetails(error_type="RuntimeError", message="disk full")
        run = Runner(resolver(wf), "wf")
        run.start()
        done = run.turn(1, ev.TaskFailed(timestamp=at(1), task_scheduled_id=0, failure=inner))
        failure = done.completion.failure if done.completion else None
        assert failure is not None
        assert failure.error_type == "TaskFailedError"
        assert failure.inner == inner

    def test_duplicate_result_for_settled_task_is_ignored(self):
        got = []

        def wf(ctx):
            got.append((yield ctx.call_activity(hello)))
            got.append((yield ctx.call_activity(hello)))

        run = Runner(resolver(wf), "wf")
        run.start()
        run.complete_task(1, 0, '"first"')
        again = run.complete_task(2, 0, '"again"')
        assert again.actions == ()
        assert got == ["first"]


class Test_call_child_workflow:
    def test_default_child_id_is_parent_and_daprs_action_number_in_four_hex_digits(self):
        # Dapr numbers actions from 1 (durabletask's next_sequence_number), so the 18th action's
        # child is `:0012`; our action IDs count from 0 and stay so (recorded histories replay).
        def child(ctx):
            return 1

        def parent(ctx):
            tasks = [ctx.call_activity(hello) for _ in range(17)]
            tasks.append(ctx.call_child_workflow(child, input={"k": 1}))
            tasks.append(ctx.call_child_workflow("other", instance_id="explicit-id"))
            yield when_any(tasks)

        result = Runner(resolver(parent, child), "parent", instance_id="order-7").start()
        assert result.actions[17] == CreateChildWorkflow(
            id=17, instance_id="order-7:0012", name="child", input='{"k": 1}'
        )
        assert result.actions[18] == CreateChildWorkflow(
            id=18, instance_id="explicit-id", name="other"
        )

    def test_child_result_and_failure(self):
        got = []

        def parent(ctx):
            got.append((yield ctx.call_child_workflow("c1")))
            try:
                yield ctx.call_child_workflow("c2")
            except TaskFailedError as exc:
                got.append(exc.details.error_type)
                got.append(str(exc).split(" ")[:2])

        run = Runner(resolver(parent), "parent")
        run.start()
        run.turn(1, ev.ChildWorkflowCompleted(timestamp=at(1), task_scheduled_id=0, result='"ok"'))
        done = run.turn(
            2,
            ev.ChildWorkflowFailed(
                timestamp=at(2),
                task_scheduled_id=1,
                failure=FailureDetails(error_type="Boom", message="b"),
            ),
        )
        assert got == ["ok", "Boom", ["Child", "workflow"]]
        assert done.completion is not None
        assert done.completion.status is RuntimeStatus.COMPLETED
        run.check()


# -- timers ------------------------------------------------------------------------------------


class Test_create_timer:
    def test_timedelta_counts_from_current_time_and_datetime_is_absolute(self):
        def wf(ctx):
            yield ctx.create_timer(timedelta(minutes=5))
            yield ctx.create_timer(datetime(2030, 1, 1, tzinfo=UTC))
            yield ctx.create_timer(datetime(2030, 1, 2))  # naive: read as UTC
            return "woke"

        run = Runner(resolver(wf), "wf")
        assert run.start(10).actions == (CreateTimer(id=0, fire_at=at(10 + 300)),)
        assert run.fire(310, 0).actions == (
            CreateTimer(id=1, fire_at=datetime(2030, 1, 1, tzinfo=UTC)),
        )
        assert run.fire(400, 1).actions == (
            CreateTimer(id=2, fire_at=datetime(2030, 1, 2, tzinfo=UTC)),
        )
        done = run.fire(500, 2)
        assert done.completion is not None
        assert done.completion.result == '"woke"'
        run.check()


# -- external events ---------------------------------------------------------------------------


class Test_wait_for_external_event:
    def test_names_are_case_insensitive_and_fifo(self):
        got = []

        def wf(ctx):
            for _ in range(3):
                got.append((yield ctx.wait_for_external_event("Approval")))

        run = Runner(resolver(wf), "wf")
        run.start()
        run.turn(
            1,
            ev.EventRaised(timestamp=at(1), name="APPROVAL", input="1"),
            ev.EventRaised(timestamp=at(1), name="approval", input="2"),
        )
        run.raise_event(2, "aPPROVAL", "3")
        assert got == [1, 2, 3]
        run.check()

    def test_event_raised_before_anyone_waits_is_kept(self):
        got = []

        def wf(ctx):
            yield ctx.create_timer(timedelta(seconds=10))
            got.append((yield ctx.wait_for_external_event("go")))
            return "done"

        run = Runner(resolver(wf), "wf")
        run.start()
        run.raise_event(1, "other", '"x"')
        run.raise_event(2, "GO", '"early"')
        done = run.fire(10, 0)
        assert got == ["early"]
        assert done.completion is not None
        run.check()

    def test_timeout_zero_fails_at_once_when_nothing_is_buffered(self):
        got = []

        def wf(ctx):
            try:
                yield ctx.wait_for_external_event("e", timeout=timedelta(0))
            except TimeoutError as exc:
                got.append(str(exc))
            return "after"

        result = Runner(resolver(wf), "wf").start()
        assert result.actions == (
            CompleteWorkflow(id=0, status=RuntimeStatus.COMPLETED, result='"after"'),
        )
        assert got == ["timed out waiting for external event 'e'"]

    def test_timeout_zero_takes_a_buffered_event(self):
        def wf(ctx):
            yield ctx.create_timer(timedelta(seconds=1))
            value = yield ctx.wait_for_external_event("e", timeout=timedelta(0))
            return value

        run = Runner(resolver(wf), "wf")
        run.start()
        run.raise_event(0.5, "e", '"buffered"')
        done = run.fire(1, 0)
        assert done.completion is not None
        assert done.completion.result == '"buffered"'

    def test_negative_timeout_waits_forever(self):
        def wf(ctx):
            return (yield ctx.wait_for_external_event("e", timeout=timedelta(seconds=-1)))

        run = Runner(resolver(wf), "wf")
        assert run.start().actions == ()  # no timer: nothing but the event can end the wait
        done = run.raise_event(10**6, "e", "7")
        assert done.completion is not None
        assert done.completion.result == "7"

    def test_timeout_creates_timer_and_fires_timeout_error(self):
        got = []

        def wf(ctx):
            try:
                yield ctx.wait_for_external_event("e", timeout=timedelta(seconds=30))
            except TimeoutError:
                got.append("timeout")
            # A later event of that name is not swallowed by the timed-out wait.
            got.append((yield ctx.wait_for_external_event("e")))

        run = Runner(resolver(wf), "wf")
        assert run.start().actions == (CreateTimer(id=0, fire_at=at(30), origin="external_event"),)
        run.fire(30, 0)
        assert got == ["timeout"]
        run.raise_event(40, "e", '"late"')
        assert got == ["timeout", "late"]
        run.check()

    def test_timeout_with_absolute_datetime(self):
        def wf(ctx):
            return (yield ctx.wait_for_external_event("e", timeout=at(100)))

        run = Runner(resolver(wf), "wf")
        assert run.start().actions == (CreateTimer(id=0, fire_at=at(100), origin="external_event"),)
        done = run.raise_event(5, "e", "1")
        assert done.completion is not None
        assert done.completion.result == "1"
        # The timeout's timer still fires later; it must change nothing.
        assert run.fire(100, 0).actions == ()

    def test_event_arrives_before_timeout(self):
        def wf(ctx):
            return (yield ctx.wait_for_external_event("e", timeout=timedelta(seconds=30)))

        run = Runner(resolver(wf), "wf")
        run.start()
        done = run.raise_event(3, "e", '"in time"')
        assert done.completion is not None
        assert done.completion.result == '"in time"'
        run.check()


# -- continue as new ---------------------------------------------------------------------------


class Test_continue_as_new:
    def test_without_save_events_drops_unconsumed_events(self):
        def wf(ctx, n):
            yield ctx.create_timer(timedelta(seconds=1))
            ctx.continue_as_new(n + 1)

        run = Runner(resolver(wf), "wf", input="1")
        run.start()
        run.raise_event(0.5, "x", "1")
        done = run.fire(1, 0)
        assert done.completion == CompleteWorkflow(
            id=1, status=RuntimeStatus.CONTINUED_AS_NEW, result="2"
        )

    def test_with_save_events_carries_unconsumed_events_in_arrival_order(self):
        def wf(ctx, n):
            yield ctx.wait_for_external_event("used")
            ctx.continue_as_new(n + 1, save_events=True)

        run = Runner(resolver(wf), "wf", input="1")
        run.start()
        run.raise_event(1, "b", '"b1"')
        run.raise_event(2, "a", '"a1"')
        run.raise_event(3, "B", '"b2"')
        done = run.raise_event(4, "used")
        assert done.completion is not None
        assert done.completion.status is RuntimeStatus.CONTINUED_AS_NEW
        carried = [(e.name, e.input) for e in done.completion.carryover_events]
        assert carried == [("b", '"b1"'), ("a", '"a1"'), ("B", '"b2"')]
        # A fresh replay of the same history carries the same events, in the same order.
        _, replayed = execute("i1", run.resolve, run.history[:-4], run.history[-4:-2])
        assert replayed.completion is not None
        assert [(e.name, e.input) for e in replayed.completion.carryover_events] == carried

    def test_code_after_continue_as_new_runs_and_its_return_value_is_ignored(self):
        trail = []

        def wf(ctx, n):
            yield ctx.create_timer(timedelta(seconds=1))
            try:
                ctx.continue_as_new(n + 1)
            except Exception as exc:  # the call itself must not raise into workflow code
                trail.append(repr(exc))
            trail.append("after")
            return "ignored"

        run = Runner(resolver(wf), "wf", input="0")
        run.start()
        done = run.fire(1, 0)
        assert trail == ["after"]
        assert done.completion == CompleteWorkflow(
            id=1, status=RuntimeStatus.CONTINUED_AS_NEW, result="1"
        )

    def test_yield_after_continue_as_new_closes_the_generator(self):
        trail = []

        def wf(ctx, n):
            ctx.continue_as_new(n + 1)
            try:
                yield ctx.create_timer(timedelta(seconds=1))
            finally:
                trail.append("closed")
            trail.append("not reached")

        result = Runner(resolver(wf), "wf", input="0").start()
        assert trail == ["closed"]
        assert result.completion is not None
        assert result.completion.status is RuntimeStatus.CONTINUED_AS_NEW


# -- deterministic helpers ---------------------------------------------------------------------


class Test_deterministic_context:
    def test_instance_id_custom_status_and_time_from_history(self):
        seen = []

        def wf(ctx):
            seen.append((ctx.instance_id, ctx.current_utc_datetime))
            with pytest.deprecated_call():  # as in Dapr's SDK: a non-str is JSON-encoded, and deprecated
                ctx.set_custom_status({"phase": 1})
            yield ctx.create_timer(timedelta(seconds=60))
            seen.append((ctx.instance_id, ctx.current_utc_datetime))
            ctx.set_custom_status("phase 2")

        run = Runner(resolver(wf), "wf", instance_id="abc")
        first = run.start(7)
        assert first.custom_status == '{"phase": 1}'
        second = run.fire(99, 0)  # the turn's time is the WorkflowStarted time, not the fire_at
        assert second.custom_status == "phase 2"  # a string is stored as it is, as Dapr's SDK does
        assert seen == [("abc", at(7)), ("abc", at(99))]
        seen.clear()
        run.replayed()
        assert seen == [("abc", at(7)), ("abc", at(99))]

    def test_is_replaying_is_true_only_for_past_events(self):
        seen = []

        def wf(ctx):
            seen.append(("start", ctx.is_replaying))
            yield ctx.create_timer(timedelta(seconds=1))
            seen.append(("after timer", ctx.is_replaying))
            yield ctx.create_timer(timedelta(seconds=1))
            seen.append(("after second", ctx.is_replaying))

        run = Runner(resolver(wf), "wf")
        run.start()
        run.fire(1, 0)
        assert seen == [("start", False), ("after timer", False)]
        seen.clear()
        fresh = WorkflowExecution("i1", run.resolve)
        fresh.replay(run.history)
        fresh.step(
            [
                ev.WorkflowStarted(timestamp=at(2)),
                ev.TimerFired(timestamp=at(2), timer_id=1, fire_at=at(2)),
            ]
        )
        assert seen == [("start", True), ("after timer", True), ("after second", False)]

    def test_new_uuid_is_the_same_on_replay_and_differs_between_calls(self):
        ids = []

        def wf(ctx):
            ids.append(ctx.new_uuid())
            ids.append(ctx.new_uuid())
            yield ctx.create_timer(timedelta(seconds=1))
            ids.append(ctx.new_uuid())

        run = Runner(resolver(wf), "wf")
        run.start()
        run.fire(1, 0)
        first = list(ids)
        assert len(set(first)) == 3
        assert all(uuid.UUID(i).version == 5 for i in first)
        ids.clear()
        run.replayed()
        assert ids == first
        ids.clear()
        Runner(resolver(wf), "wf", instance_id="other").start()
        assert ids[0] not in first  # the instance ID is part of the name


# -- suspend, resume, terminate ----------------------------------------------------------------


class Test_suspend_and_terminate:
    def test_events_while_suspended_wait_for_resume(self):
        got = []

        def wf(ctx):
            got.append((yield ctx.wait_for_external_event("e")))
            got.append((yield ctx.call_activity(hello)))

        run = Runner(resolver(wf), "wf")
        run.start()
        run.turn(1, ev.ExecutionSuspended(timestamp=at(1)))
        assert run.raise_event(2, "e", '"held"').actions == ()
        assert got == []
        resumed = run.turn(3, ev.ExecutionResumed(timestamp=at(3)))
        assert got == ["held"]
        assert resumed.actions == (ScheduleTask(id=0, name="hello"),)
        run.check()

    def test_terminate_completes_with_output_even_when_suspended(self):
        def wf(ctx):
            yield ctx.wait_for_external_event("never")

        run = Runner(resolver(wf), "wf")
        run.start()
        run.turn(1, ev.ExecutionSuspended(timestamp=at(1)))
        done = run.turn(2, ev.ExecutionTerminated(timestamp=at(2), output='"stopped"'))
        assert done.completion == CompleteWorkflow(
            id=0, status=RuntimeStatus.TERMINATED, result='"stopped"'
        )
        run.check()


# -- non-determinism ---------------------------------------------------------------------------


def _history_of(wf, *turns):
    run = Runner(resolver(wf=wf), "wf")
    run.start()
    for t, event in enumerate(turns, start=1):
        run.turn(t, event)
    return run.history


def _replay_failure(history, changed) -> FailureDetails:
    _execution, result = execute(
        "i1", resolver(wf=changed), history, [ev.WorkflowStarted(timestamp=at(99))]
    )
    assert result.completion is not None, "the changed code should have failed the instance"
    assert result.completion.status is RuntimeStatus.FAILED
    assert result.completion.failure is not None
    return result.completion.failure


class Test_non_determinism:
    def original(self, ctx):
        yield ctx.call_activity("charge")
        yield ctx.call_activity("ship")
        return "done"

    def history(self):
        return _history_of(self.original, ev.TaskCompleted(timestamp=at(1), task_scheduled_id=0))

    def test_renamed_activity_names_expected_and_actual_step(self):
        def changed(ctx):
            yield ctx.call_activity("refund")

        failure = _replay_failure(self.history(), changed)
        assert failure.error_type == "NonDeterminismError"
        assert "call_activity('charge')" in failure.message
        assert "call_activity('refund')" in failure.message
        assert "#0" in failure.message

    def test_activity_replaced_by_timer(self):
        def changed(ctx):
            yield ctx.create_timer(timedelta(seconds=1))

        failure = _replay_failure(self.history(), changed)
        assert failure.error_type == "NonDeterminismError"
        assert "call_activity('charge')" in failure.message
        assert "create_timer" in failure.message

    def test_step_removed(self):
        def changed(ctx):
            return "done"
            yield  # pragma: no cover

        failure = _replay_failure(self.history(), changed)
        assert failure.error_type == "NonDeterminismError"
        assert "call_activity('charge')" in failure.message
        assert "COMPLETED" in failure.message  # what the code does now: it completes at that step

    def test_second_step_changed(self):
        def changed(ctx):
            yield ctx.call_activity("charge")
            yield ctx.call_child_workflow("ship")

        failure = _replay_failure(self.history(), changed)
        assert failure.error_type == "NonDeterminismError"
        assert "call_activity('ship')" in failure.message
        assert "call_child_workflow('ship')" in failure.message
        assert "#1" in failure.message

    def test_code_keeps_running_where_history_completed(self):
        def original(ctx):
            return "done"

        history = _history_of(original)

        def changed(ctx):
            yield ctx.create_timer(timedelta(seconds=1))

        execution = WorkflowExecution("i1", resolver(wf=changed))
        execution.replay(history)
        assert execution.is_complete
        result = execution.step([])
        assert result.completion is not None
        assert result.completion.failure is not None
        assert result.completion.failure.error_type == "NonDeterminismError"
        assert "ended COMPLETED" in result.completion.failure.message

    def test_unchanged_code_replays_cleanly(self):
        history = self.history()
        _, result = execute(
            "i1",
            resolver(wf=self.original),
            history,
            [
                ev.WorkflowStarted(timestamp=at(5)),
                ev.TaskCompleted(timestamp=at(5), task_scheduled_id=1),
            ],
        )
        assert result.completion == CompleteWorkflow(
            id=2, status=RuntimeStatus.COMPLETED, result='"done"'
        )


# -- small helpers -----------------------------------------------------------------------------


class Test_call_with_optional_input:
    def test_passes_decoded_input_when_the_function_takes_it(self):
        assert call_with_optional_input(lambda ctx, x: (ctx, x), "c", '{"a":1}') == ("c", {"a": 1})
        assert call_with_optional_input(lambda ctx, *args: args, "c", "[1]") == ([1],)
        assert call_with_optional_input(lambda ctx: ctx, "c", "[1]") == "c"


def test_execute_returns_the_execution_for_further_steps():
    def wf(ctx):
        yield ctx.create_timer(timedelta(seconds=1))
        yield ctx.create_timer(timedelta(seconds=1))

    history = numbered(
        [
            *started("wf"),
            ev.TimerCreated(timestamp=at(0), event_id=0, fire_at=at(1)),
            ev.WorkflowCompleted(timestamp=at(0)),
        ]
    )
    execution, result = execute(
        "i1",
        resolver(wf),
        history,
        [
            ev.WorkflowStarted(timestamp=at(1)),
            ev.TimerFired(timestamp=at(1), timer_id=0, fire_at=at(1)),
        ],
    )
    assert result.actions == (CreateTimer(id=1, fire_at=at(2)),)
    again = execution.step(
        [
            ev.WorkflowStarted(timestamp=at(2)),
            ev.TimerFired(timestamp=at(2), timer_id=1, fire_at=at(2)),
        ]
    )
    assert again.completion is not None
    assert again.completion.status is RuntimeStatus.COMPLETED


def test_continue_as_new_then_return_releases_the_generator():
    def wf(ctx, n):
        yield ctx.create_timer(timedelta(seconds=1))
        ctx.continue_as_new(n + 1)
        return "ignored"

    run = Runner(resolver(wf), "wf", input="0")
    run.start()
    run.fire(1, 0)
    assert run.execution.is_complete
    assert run.execution._generator is None  # nothing left running
