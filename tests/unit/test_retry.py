"""RetryPolicy: Dapr's validation, the delay arithmetic, retries as durable timers in history."""

from __future__ import annotations

from datetime import timedelta

import pytest
from support import Runner, at, resolver

from engine import RetryPolicy, TaskFailedError
from engine.core import events as ev
from engine.core.actions import CreateChildWorkflow, CreateTimer, ScheduleTask
from engine.core.retry import LONGEST_DELAY
from engine.core.values import FailureDetails, RuntimeStatus

S = timedelta(seconds=1)


def policy(**kw) -> RetryPolicy:
    kw.setdefault("first_retry_interval", S)
    kw.setdefault("max_number_of_attempts", 3)
    return RetryPolicy(**kw)


class Test_validation:
    @pytest.mark.parametrize(
        ("kw", "message"),
        [
            ({"first_retry_interval": -S}, "first_retry_interval must be >= 0"),
            ({"max_number_of_attempts": 0}, "max_number_of_attempts must be >= 1"),
            ({"max_number_of_attempts": -3}, "max_number_of_attempts must be >= 1"),
            ({"backoff_coefficient": 0.99}, "backoff_coefficient must be >= 1"),
            ({"backoff_coefficient": 0}, "backoff_coefficient must be >= 1"),
            ({"backoff_coefficient": float("nan")}, "backoff_coefficient must be >= 1"),
            ({"max_retry_interval": -S}, "max_retry_interval must be >= 0"),
            ({"retry_timeout": -S}, "retry_timeout must be >= 0"),
        ],
    )
    def test_rejects_what_dapr_rejects(self, kw, message):
        with pytest.raises(ValueError, match=message):
            policy(**kw)

    def test_accepts_the_boundaries(self):
        p = policy(
            first_retry_interval=timedelta(0),
            max_number_of_attempts=1,
            backoff_coefficient=1,
            max_retry_interval=timedelta(0),
            retry_timeout=timedelta(0),
        )
        assert p.first_retry_interval == timedelta(0)
        assert p.max_number_of_attempts == 1
        assert p.backoff_coefficient == 1.0
        assert p.max_retry_interval == timedelta(0)
        assert p.retry_timeout == timedelta(0)

    def test_backoff_coefficient_none_means_one(self):
        assert policy(backoff_coefficient=None).backoff_coefficient == 1.0

    def test_arguments_are_keyword_only(self):
        with pytest.raises(TypeError):
            RetryPolicy(S, 3)  # type: ignore[misc]

    def test_repr_names_every_setting(self):
        text = repr(policy(backoff_coefficient=2, retry_timeout=timedelta(minutes=1)))
        for name in (
            "first_retry_interval",
            "max_number_of_attempts=3",
            "backoff_coefficient=2.0",
            "max_retry_interval=None",
            "retry_timeout=",
        ):
            assert name in text


class Test_arithmetic:
    def test_delays_grow_by_the_coefficient(self):
        p = policy(backoff_coefficient=2, max_number_of_attempts=10)
        assert [p.delay_after(n).total_seconds() for n in range(1, 6)] == [1, 2, 4, 8, 16]

    def test_constant_delay_with_coefficient_one(self):
        p = policy(first_retry_interval=timedelta(seconds=5), max_number_of_attempts=10)
        assert {p.delay_after(n) for n in range(1, 8)} == {timedelta(seconds=5)}

    def test_fractional_coefficient(self):
        p = policy(first_retry_interval=timedelta(seconds=2), backoff_coefficient=1.5)
        assert p.delay_after(3) == timedelta(seconds=4.5)

    def test_max_retry_interval_caps_each_delay(self):
        p = policy(
            backoff_coefficient=3,
            max_retry_interval=timedelta(seconds=10),
            max_number_of_attempts=10,
        )
        assert [p.delay_after(n).total_seconds() for n in range(1, 6)] == [1, 3, 9, 10, 10]

    def test_gives_up_after_max_number_of_attempts(self):
        p = policy(max_number_of_attempts=3)
        assert p.next_delay(attempt=1, first_attempt_at=at(0), now=at(0)) == S
        assert p.next_delay(attempt=2, first_attempt_at=at(0), now=at(1)) == S
        assert p.next_delay(attempt=3, first_attempt_at=at(0), now=at(2)) is None

    def test_one_attempt_means_no_retry(self):
        assert (
            policy(max_number_of_attempts=1).next_delay(
                attempt=1, first_attempt_at=at(0), now=at(0)
            )
            is None
        )

    def test_retry_timeout_stops_retries_that_would_start_after_it(self):
        # Dapr: the next attempt must start before first attempt + retry_timeout (delays 1, 2, 4 fit
        # in 10 seconds; the fourth attempt would start at 1+2+4+8 = 15s).
        p = policy(
            backoff_coefficient=2, max_number_of_attempts=10, retry_timeout=timedelta(seconds=10)
        )
        assert p.next_delay(attempt=1, first_attempt_at=at(0), now=at(0)) == S
        assert p.next_delay(attempt=2, first_attempt_at=at(0), now=at(1)) == 2 * S
        assert p.next_delay(attempt=3, first_attempt_at=at(0), now=at(3)) == 4 * S
        assert p.next_delay(attempt=4, first_attempt_at=at(0), now=at(7)) is None

    def test_retry_timeout_counts_history_time_since_the_first_attempt(self):
        p = policy(max_number_of_attempts=10, retry_timeout=timedelta(seconds=60))
        assert p.next_delay(attempt=1, first_attempt_at=at(0), now=at(58)) == S
        assert (
            p.next_delay(attempt=1, first_attempt_at=at(0), now=at(59)) is None
        )  # would start at 60
        assert p.next_delay(attempt=1, first_attempt_at=at(0), now=at(61)) is None

    def test_delays_past_what_a_float_or_datetime_holds_are_a_century(self):
        # A coefficient of 1e300 overflows a float at the third attempt; a year-long interval times
        # 1e4 is past datetime's year 9999; timedelta.max as a timeout is past it too.
        huge = policy(backoff_coefficient=1e300, max_number_of_attempts=10)
        assert huge.delay_after(2) == LONGEST_DELAY  # 1e300 seconds
        assert huge.delay_after(3) == LONGEST_DELAY
        long = policy(first_retry_interval=timedelta(days=365), backoff_coefficient=1e4,
                      max_number_of_attempts=10, retry_timeout=timedelta.max)
        assert long.next_delay(attempt=2, first_attempt_at=at(0), now=at(9)) == LONGEST_DELAY
        # No interval stays none; an infinite coefficient is the longest delay; a clock behind the
        # first attempt's with the longest timeout.
        assert policy(first_retry_interval=timedelta(0), backoff_coefficient=1e300,
                      max_number_of_attempts=10).delay_after(5) == timedelta(0)
        assert policy(backoff_coefficient=float("inf"), max_number_of_attempts=10).delay_after(2) == LONGEST_DELAY
        assert long.next_delay(attempt=1, first_attempt_at=at(9), now=at(0)) == timedelta(days=365)
        # A shorter max_retry_interval still caps it.
        capped = policy(backoff_coefficient=1e300, max_number_of_attempts=10, max_retry_interval=timedelta(hours=1))
        assert capped.delay_after(5) == timedelta(hours=1)

    def test_zero_retry_timeout_never_retries(self):
        p = policy(first_retry_interval=timedelta(0), retry_timeout=timedelta(0))
        assert p.next_delay(attempt=1, first_attempt_at=at(0), now=at(0)) is None


def fail(
    t: float, task_id: int, message: str = "boom", *, non_retriable: bool = False
) -> ev.TaskFailed:
    return ev.TaskFailed(
        timestamp=at(t),
        task_scheduled_id=task_id,
        failure=FailureDetails(error_type="IOError", message=message, non_retriable=non_retriable),
    )


class Test_retries_in_history:
    def wf(self, retry_policy):
        def wf(ctx):
            return (yield ctx.call_activity("flaky", input="x", retry_policy=retry_policy))

        return wf

    def test_each_retry_is_a_durable_timer_then_a_new_task(self):
        run = Runner(
            resolver(wf=self.wf(policy(backoff_coefficient=2, max_number_of_attempts=3))), "wf"
        )
        assert run.start().actions == (ScheduleTask(id=0, name="flaky", input='"x"'),)
        assert run.turn(1, fail(1, 0)).actions == (
            CreateTimer(id=1, fire_at=at(2), origin="retry"),
        )
        assert run.fire(2, 1).actions == (ScheduleTask(id=2, name="flaky", input='"x"'),)
        assert run.turn(3, fail(3, 2)).actions == (
            CreateTimer(id=3, fire_at=at(5), origin="retry"),
        )
        assert run.fire(5, 3).actions == (ScheduleTask(id=4, name="flaky", input='"x"'),)
        done = run.complete_task(6, 4, '"third time lucky"')
        assert done.completion is not None
        assert done.completion.result == '"third time lucky"'
        # The timers are in history, so a replay makes the same decisions.
        timers = [e for e in run.history if isinstance(e, ev.TimerCreated)]
        assert [(t.event_id, t.fire_at, t.origin) for t in timers] == [
            (1, at(2), "retry"),
            (3, at(5), "retry"),
        ]
        run.check()

    def test_a_backoff_past_any_date_is_a_retry_a_century_later(self):
        run = Runner(resolver(wf=self.wf(policy(backoff_coefficient=1e300, max_number_of_attempts=5))), "wf")
        run.start()
        run.turn(1, fail(1, 0))
        run.fire(2, 1)
        run.turn(3, fail(3, 2))
        run.fire(4, 3)
        assert run.turn(5, fail(5, 4)).actions == (CreateTimer(id=5, fire_at=at(5) + LONGEST_DELAY, origin="retry"),)
        run.check()

    def test_gives_up_with_the_last_failure(self):
        run = Runner(resolver(wf=self.wf(policy(max_number_of_attempts=2))), "wf")
        run.start()
        run.turn(1, fail(1, 0, "first"))
        run.fire(2, 1)
        done = run.turn(3, fail(3, 2, "second"))
        completion = done.completion
        assert completion is not None
        assert completion.status is RuntimeStatus.FAILED
        assert completion.failure is not None
        assert completion.failure.inner is not None
        assert completion.failure.inner.message == "second"
        run.check()

    def test_retry_timeout_cuts_off_in_a_workflow(self):
        p = policy(
            max_number_of_attempts=100,
            first_retry_interval=timedelta(seconds=10),
            retry_timeout=timedelta(seconds=25),
        )
        run = Runner(resolver(wf=self.wf(p)), "wf")
        run.start()
        assert run.turn(1, fail(1, 0)).actions == (
            CreateTimer(id=1, fire_at=at(11), origin="retry"),
        )
        run.fire(11, 1)
        # Failed at 12: a retry would start at 22, inside the 25 seconds.
        assert run.turn(12, fail(12, 2)).actions == (
            CreateTimer(id=3, fire_at=at(22), origin="retry"),
        )
        run.fire(22, 3)
        done = run.turn(23, fail(23, 4))  # a retry would start at 33: past the timeout
        assert done.completion is not None
        assert done.completion.status is RuntimeStatus.FAILED
        run.check()

    def test_non_retriable_failure_is_not_retried(self):
        run = Runner(resolver(wf=self.wf(policy(max_number_of_attempts=5))), "wf")
        run.start()
        done = run.turn(1, fail(1, 0, "no such activity", non_retriable=True))
        assert done.completion is not None
        assert done.completion.status is RuntimeStatus.FAILED

    def test_workflow_catching_the_final_failure(self):
        def wf(ctx):
            try:
                yield ctx.call_activity("flaky", retry_policy=policy(max_number_of_attempts=2))
            except TaskFailedError as exc:
                return f"gave up: {exc.details.message}"

        run = Runner(resolver(wf), "wf")
        run.start()
        run.turn(1, fail(1, 0))
        run.fire(2, 1)
        done = run.turn(3, fail(3, 2, "still broken"))
        assert done.completion is not None
        assert done.completion.result == '"gave up: still broken"'

    def test_child_workflow_retries_with_the_same_instance_id(self):
        def wf(ctx):
            return (
                yield ctx.call_child_workflow(
                    "child", retry_policy=policy(max_number_of_attempts=2)
                )
            )

        run = Runner(resolver(wf), "wf", instance_id="p")
        assert run.start().actions == (
            CreateChildWorkflow(id=0, instance_id="p:0001", name="child"),
        )
        failure = FailureDetails(error_type="E", message="child failed")
        run.turn(1, ev.ChildWorkflowFailed(timestamp=at(1), task_scheduled_id=0, failure=failure))
        assert run.fire(2, 1).actions == (
            CreateChildWorkflow(id=2, instance_id="p:0001", name="child"),
        )
        done = run.turn(
            3, ev.ChildWorkflowCompleted(timestamp=at(3), task_scheduled_id=2, result="1")
        )
        assert done.completion is not None
        assert done.completion.result == "1"
        run.check()
