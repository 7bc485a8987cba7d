"""End to end on the in-memory backend: every authoring feature, sticky and replay-every-turn."""

from __future__ import annotations

from datetime import timedelta

import pytest
from support import T0, at, check_replay_turns, counter_ids

from engine import (
    DaprWorkflowContext,
    RetryPolicy,
    TaskFailedError,
    WorkflowActivityContext,
    WorkflowRuntime,
    WorkflowStatus,
    when_all,
    when_any,
)
from engine.core import events as ev
from engine.errors import (
    InstanceExistsError,
    InstanceNotFoundError,
    InstanceNotTerminalError,
    WorkflowError,
)
from engine.testing import WorkflowTestEnvironment

wfr = WorkflowRuntime()
FLAKY_RUNS: dict[str, int] = {}


@wfr.activity
def double(ctx: WorkflowActivityContext, x):
    return x * 2


@wfr.activity(name="greet")
def greeting(ctx, name):
    return f"hello {name}"


@wfr.activity
async def async_add(ctx, pair):
    return pair[0] + pair[1]


@wfr.activity
def whoami(ctx: WorkflowActivityContext):
    return [ctx.workflow_id, ctx.task_id]


@wfr.activity
def explode(ctx, message):
    raise RuntimeError(message)


@wfr.activity
def flaky(ctx, key):
    FLAKY_RUNS[key] = FLAKY_RUNS.get(key, 0) + 1
    if FLAKY_RUNS[key] < 3:
        raise ConnectionError(f"attempt {FLAKY_RUNS[key]} failed")
    return FLAKY_RUNS[key]


@wfr.workflow(name="child")
def child_wf(ctx, x):
    y = yield ctx.call_activity(double, input=x)
    return {"child": ctx.instance_id, "value": y}


@wfr.workflow
def waiting_child(ctx):
    return (yield ctx.wait_for_external_event("release"))


@wfr.workflow
def order(ctx: DaprWorkflowContext, items):
    ctx.set_custom_status("charging")
    doubled = yield ctx.call_activity(double, input=items[0])
    greeting_text = yield ctx.call_activity("greet", input="ada")
    fanned = yield when_all([ctx.call_activity(double, input=i) for i in items])
    approval = ctx.wait_for_external_event("approval")
    timeout = ctx.create_timer(timedelta(hours=1))
    winner = yield when_any([approval, timeout])
    child = yield ctx.call_child_workflow(child_wf, input=10)
    ctx.set_custom_status("done")
    return {
        "doubled": doubled,
        "greeting": greeting_text,
        "fanned": fanned,
        "approved": winner is approval and approval.get_result(),
        "child": child,
    }


@wfr.workflow
def plain(ctx, x):
    return x + 1


@wfr.workflow
def failing(ctx):
    yield ctx.create_timer(timedelta(seconds=1))
    raise ValueError("the order is invalid")


@wfr.workflow
def calls_explode(ctx, catch):
    try:
        yield ctx.call_activity(explode, input="kaboom")
    except TaskFailedError as exc:
        if not catch:
            raise
        return [exc.details.error_type, exc.details.message]


@wfr.workflow
def calls_missing(ctx):
    try:
        yield ctx.call_activity("no_such_activity")
    except TaskFailedError as exc:
        return [exc.details.error_type, exc.details.message]


@wfr.workflow
def events(ctx):
    got = []
    for _ in range(3):
        got.append((yield ctx.wait_for_external_event("Item")))
    return got


@wfr.workflow
def timed_wait(ctx, seconds):
    try:
        return (yield ctx.wait_for_external_event("answer", timeout=timedelta(seconds=seconds)))
    except TimeoutError as exc:
        return f"timeout: {exc}"


@wfr.workflow
def parent(ctx, n):
    return (yield when_all([ctx.call_child_workflow(waiting_child) for _ in range(n)]))


@wfr.workflow
def retrying(ctx, key):
    policy = RetryPolicy(
        first_retry_interval=timedelta(seconds=10), backoff_coefficient=2, max_number_of_attempts=5
    )
    return (yield ctx.call_activity(flaky, input=key, retry_policy=policy))


@wfr.workflow
def counter(ctx, state):
    item = yield ctx.wait_for_external_event("add")
    total = state["total"] + item
    if state["round"] < 3:
        ctx.continue_as_new({"total": total, "round": state["round"] + 1}, save_events=True)
        return None
    return total


@wfr.workflow
def deterministic(ctx):
    # (is_replaying is left out on purpose: it differs between sticky and replayed runs.)
    seen = [ctx.new_uuid(), ctx.current_utc_datetime.isoformat()]
    yield ctx.create_timer(timedelta(minutes=5))
    seen += [ctx.new_uuid(), ctx.current_utc_datetime.isoformat()]
    who = yield ctx.call_activity(whoami)
    return [seen, who]


@wfr.workflow
def misc_calls(ctx):
    total = yield ctx.call_activity(async_add, input=[2, 3])
    return total


@wfr.workflow
def child_counter(ctx, n):
    yield ctx.create_timer(timedelta(seconds=1))
    if n < 3:
        ctx.continue_as_new(n + 1)
        return None
    return n


@wfr.workflow
def parent_of_generations(ctx):
    return (yield ctx.call_child_workflow(child_counter, input=0))


@wfr.workflow
def parent_of_unknown(ctx):
    try:
        yield ctx.call_child_workflow("no_such_workflow")
    except TaskFailedError as exc:
        return [exc.details.error_type, exc.details.message]


@wfr.workflow
def timers_in_order(ctx):
    late = ctx.create_timer(timedelta(seconds=30))
    early = ctx.create_timer(timedelta(seconds=10))
    first = yield when_any([late, early])
    yield late
    return ["early" if first is early else "late", ctx.current_utc_datetime.isoformat()]


@pytest.fixture(params=[0, 1000], ids=["replay-every-turn", "sticky"])
def env(request) -> WorkflowTestEnvironment:
    FLAKY_RUNS.clear()
    return WorkflowTestEnvironment(wfr, cache_size=request.param, ids=counter_ids())


def output(env, iid):
    state = env.get_workflow_state(iid)
    assert state is not None
    assert state.runtime_status is WorkflowStatus.COMPLETED, state.failure_details
    import orjson

    return orjson.loads(state.serialized_output) if state.serialized_output is not None else None


class Test_authoring_features:
    def test_order_workflow_end_to_end(self, env):
        iid = env.schedule_new_workflow(order, input=[1, 2, 3], instance_id="order-1")
        env.run()
        state = env.get_workflow_state(iid)
        assert state.runtime_status is WorkflowStatus.RUNNING
        assert state.serialized_custom_status == "charging"
        env.raise_workflow_event(iid, "APPROVAL", data="yes")
        assert env.wait_for_workflow_completion(iid).serialized_custom_status == "done"
        assert output(env, iid) == {
            "doubled": 2,
            "greeting": "hello ada",
            "fanned": [2, 4, 6],
            "approved": "yes",
            "child": {"child": "order-1:0007", "value": 20},
        }
        check_replay_turns(iid, wfr.registry.get_workflow, env.history(iid))

    def test_timer_wins_when_no_approval_comes(self, env):
        iid = env.schedule_new_workflow(order, input=[1], instance_id="o")
        env.run()
        env.advance(timedelta(minutes=59))
        assert env.get_workflow_state(iid).runtime_status is WorkflowStatus.RUNNING
        env.advance(timedelta(minutes=1))
        assert output(env, iid)["approved"] is False

    def test_non_generator_workflow(self, env):
        iid = env.schedule_new_workflow(plain, input=41)
        env.run()
        assert output(env, iid) == 42

    def test_async_activity(self, env):
        iid = env.schedule_new_workflow(misc_calls)
        env.run()
        assert output(env, iid) == 5

    def test_activity_failure_caught_as_task_failed_error(self, env):
        iid = env.schedule_new_workflow(calls_explode, input=True)
        env.run()
        assert output(env, iid) == ["RuntimeError", "kaboom"]

    def test_activity_failure_uncaught_fails_the_workflow_with_inner_details(self, env):
        iid = env.schedule_new_workflow(calls_explode, input=False)
        state = env.wait_for_workflow_completion(iid)
        assert state.runtime_status is WorkflowStatus.FAILED
        failure = state.failure_details
        assert failure.error_type == "TaskFailedError"
        assert "kaboom" in failure.message
        assert failure.inner is not None
        assert failure.inner.error_type == "RuntimeError"
        assert "raise RuntimeError(message)" in (failure.inner.stack_trace or "")

    def test_workflow_exception_fails_with_type_message_and_stack(self, env):
        iid = env.schedule_new_workflow(failing)
        state = env.wait_for_workflow_completion(iid)
        assert state.runtime_status is WorkflowStatus.FAILED
        assert state.failure_details.error_type == "ValueError"
        assert state.failure_details.message == "the order is invalid"
        assert 'raise ValueError("the order is invalid")' in state.failure_details.stack_trace
        assert state.serialized_output is None

    def test_unknown_workflow_fails_naming_it(self, env):
        iid = env.schedule_new_workflow("not_registered")
        env.run()
        assert env.get_workflow_state(iid).runtime_status is WorkflowStatus.PENDING  # waits for its code
        state = env.wait_for_workflow_completion(iid)
        assert state.runtime_status is WorkflowStatus.FAILED
        assert state.failure_details.error_type == "UnknownWorkflowError"
        assert "'not_registered'" in state.failure_details.message

    def test_unknown_activity_fails_the_task_naming_it(self, env):
        iid = env.schedule_new_workflow(calls_missing)
        env.run()
        assert env.get_workflow_state(iid).runtime_status is WorkflowStatus.RUNNING  # handed on, waiting
        env.wait_for_workflow_completion(iid)
        error_type, message = output(env, iid)
        assert error_type == "UnknownActivityError"
        assert "'no_such_activity'" in message

    def test_activity_context_and_deterministic_helpers(self, env):
        iid = env.schedule_new_workflow(deterministic, instance_id="det")
        state = env.wait_for_workflow_completion(iid)
        seen, who = output(env, iid)
        assert seen[1] == T0.isoformat()
        assert seen[3] == at(300).isoformat()
        assert seen[0] != seen[2]
        assert who == ["det", 1]
        assert state.last_updated_at == at(300)


class Test_external_events:
    def test_case_insensitive_and_fifo(self, env):
        iid = env.schedule_new_workflow(events)
        env.run()
        for n, name in enumerate(["ITEM", "item", "iTeM"]):
            env.raise_workflow_event(iid, name, data=n)
        env.run()
        assert output(env, iid) == [0, 1, 2]

    def test_raised_before_anyone_waits(self, env):
        iid = env.schedule_new_workflow(events)
        # Raised in the same breath as the start: nobody waits yet.
        env.raise_workflow_event(iid, "item", data="a")
        env.raise_workflow_event(iid, "other", data="ignored")
        env.raise_workflow_event(iid, "item", data="b")
        env.run()
        env.raise_workflow_event(iid, "item", data="c")
        env.run()
        assert output(env, iid) == ["a", "b", "c"]

    def test_timeout(self, env):
        iid = env.schedule_new_workflow(timed_wait, input=30)
        env.advance(timedelta(seconds=29))
        assert env.get_workflow_state(iid).runtime_status is WorkflowStatus.RUNNING
        env.advance(timedelta(seconds=1))
        assert output(env, iid) == "timeout: timed out waiting for external event 'answer'"

    def test_answer_before_timeout(self, env):
        iid = env.schedule_new_workflow(timed_wait, input=30)
        env.advance(timedelta(seconds=10))
        env.raise_workflow_event(iid, "Answer", data=42)
        env.run()
        assert output(env, iid) == 42
        env.advance(timedelta(minutes=1))  # the timeout timer fires into a finished instance
        assert output(env, iid) == 42

    def test_zero_timeout(self, env):
        iid = env.schedule_new_workflow(timed_wait, input=0)
        env.run()
        assert output(env, iid).startswith("timeout")


class Test_lifecycle:
    def test_pause_buffers_events_until_resume(self, env):
        iid = env.schedule_new_workflow(events)
        env.run()
        env.pause_workflow(iid)
        assert env.get_workflow_state(iid).runtime_status is WorkflowStatus.SUSPENDED
        for n in range(3):
            env.raise_workflow_event(iid, "item", data=n)
        env.run()
        assert env.get_workflow_state(iid).runtime_status is WorkflowStatus.SUSPENDED
        assert env.states[iid].buffered_events == 3
        env.resume_workflow(iid)
        env.run()
        assert output(env, iid) == [0, 1, 2]

    def test_activity_results_while_paused_wait_for_resume(self, env):
        iid = env.schedule_new_workflow(child_wf, input=4)
        env.pause_workflow(iid)
        env.run()  # the activity runs and its result is recorded, but the code does not move on
        assert env.get_workflow_state(iid).runtime_status is WorkflowStatus.SUSPENDED
        assert any(isinstance(e, ev.TaskCompleted) for e in env.history(iid))
        env.resume_workflow(iid)
        env.run()
        assert output(env, iid)["value"] == 8

    def test_terminate_is_recursive(self, env):
        iid = env.schedule_new_workflow(parent, input=2, instance_id="p")
        env.run()
        children = ["p:0001", "p:0002"]
        assert all(
            env.get_workflow_state(c).runtime_status is WorkflowStatus.RUNNING for c in children
        )
        env.terminate_workflow(iid, output="stopped")
        env.run()
        state = env.get_workflow_state(iid)
        assert state.runtime_status is WorkflowStatus.TERMINATED
        assert state.serialized_output == '"stopped"'
        assert all(
            env.get_workflow_state(c).runtime_status is WorkflowStatus.TERMINATED for c in children
        )

    def test_terminate_not_recursive_leaves_children_running(self, env):
        iid = env.schedule_new_workflow(parent, input=1, instance_id="p")
        env.run()
        env.terminate_workflow(iid, recursive=False)
        env.run()
        assert env.get_workflow_state("p:0001").runtime_status is WorkflowStatus.RUNNING
        env.raise_workflow_event("p:0001", "release", data=1)
        env.run()  # the child's result reaches a terminated parent and is dropped
        assert env.get_workflow_state("p:0001").runtime_status is WorkflowStatus.COMPLETED
        assert env.get_workflow_state(iid).runtime_status is WorkflowStatus.TERMINATED

    def test_purge_is_refused_for_a_running_instance(self, env):
        iid = env.schedule_new_workflow(events)
        env.run()
        with pytest.raises(InstanceNotTerminalError, match="RUNNING"):
            env.purge_workflow(iid)
        assert env.get_workflow_state(iid) is not None

    def test_purge_is_recursive(self, env):
        iid = env.schedule_new_workflow(parent, input=2, instance_id="p")
        env.run()
        for c in ("p:0001", "p:0002"):
            env.raise_workflow_event(c, "release", data=c)
        env.run()
        assert output(env, iid) == ["p:0001", "p:0002"]
        env.purge_workflow(iid)
        env.run()
        for gone in ("p", "p:0001", "p:0002"):
            assert env.get_workflow_state(gone) is None
            assert env.history(gone) == []
        with pytest.raises(InstanceNotFoundError):
            env.purge_workflow(iid)

    def test_purge_not_recursive_keeps_children(self, env):
        iid = env.schedule_new_workflow(parent, input=1, instance_id="p")
        env.run()
        env.raise_workflow_event("p:0001", "release")
        env.run()
        env.purge_workflow(iid, recursive=False)
        env.run()
        assert env.get_workflow_state(iid) is None
        assert env.get_workflow_state("p:0001") is not None

    def test_start_over_a_running_instance_is_refused(self, env):
        env.schedule_new_workflow(events, instance_id="x")
        env.run()
        with pytest.raises(InstanceExistsError, match="'x' already exists"):
            env.schedule_new_workflow(plain, input=1, instance_id="x")
        env.pause_workflow("x")
        with pytest.raises(InstanceExistsError):
            env.schedule_new_workflow(plain, input=1, instance_id="x")

    def test_start_over_a_finished_instance_replaces_it(self, env):
        env.schedule_new_workflow(plain, input=1, instance_id="x")
        env.run()
        first_history = env.history("x")
        env.advance(timedelta(seconds=5))
        env.schedule_new_workflow(child_wf, input=3, instance_id="x")
        env.run()
        state = env.get_workflow_state("x")
        assert state.name == "child"
        assert state.created_at == at(5)
        assert output(env, "x") == {"child": "x", "value": 6}
        assert env.history("x")[0].seq == 0
        assert env.history("x") != first_history

    def test_unknown_instance(self, env):
        assert env.get_workflow_state("nobody") is None
        with pytest.raises(InstanceNotFoundError, match="nobody"):
            env.raise_workflow_event("nobody", "x")
        with pytest.raises(InstanceNotFoundError):
            env.terminate_workflow("nobody")

    def test_waiting_forever_is_reported(self, env):
        iid = env.schedule_new_workflow(events)
        with pytest.raises(WorkflowError, match="cannot finish"):
            env.wait_for_workflow_completion(iid)


class Test_children_and_timers:
    def test_child_that_continues_as_new_reports_its_last_generation(self, env):
        iid = env.schedule_new_workflow(parent_of_generations, instance_id="p")
        env.wait_for_workflow_completion(iid)
        assert output(env, iid) == 3
        assert env.states["p:0001"].generation == 3

    def test_unknown_child_workflow_fails_the_parent_task(self, env):
        iid = env.schedule_new_workflow(parent_of_unknown)
        env.wait_for_workflow_completion(iid)  # the child waits for its code, then fails
        error_type, message = output(env, iid)
        assert error_type == "UnknownWorkflowError"
        assert "'no_such_workflow'" in message

    def test_timers_fire_in_due_order(self, env):
        iid = env.schedule_new_workflow(timers_in_order)
        env.advance(timedelta(minutes=1))
        assert output(env, iid) == ["early", at(30).isoformat()]

    def test_terminate_while_paused(self, env):
        iid = env.schedule_new_workflow(events)
        env.run()
        env.pause_workflow(iid)
        env.terminate_workflow(iid, output="gone")
        state = env.get_workflow_state(iid)
        assert state.runtime_status is WorkflowStatus.TERMINATED
        assert state.serialized_output == '"gone"'


class Test_retry_and_continue_as_new:
    def test_retries_are_durable_timers(self, env):
        iid = env.schedule_new_workflow(retrying, input="k")
        state = env.wait_for_workflow_completion(iid)
        assert output(env, iid) == 3
        assert env.activity_runs["flaky"] == 3
        timers = [e for e in env.history(iid) if isinstance(e, ev.TimerCreated)]
        assert [(t.origin, t.fire_at) for t in timers] == [("retry", at(10)), ("retry", at(30))]
        assert state.last_updated_at == at(30)

    def test_continue_as_new_carries_unconsumed_events(self, env):
        iid = env.schedule_new_workflow(counter, input={"total": 0, "round": 1}, instance_id="c")
        env.run()
        for n in (1, 10, 100):
            env.raise_workflow_event(iid, "add", data=n)
        env.run()
        assert output(env, iid) == 111
        generations = {execution for instance, execution, _ in env.audit if instance == "c"}
        assert len(generations) == 3
        state = env.states["c"]
        assert state.generation == 2
        assert state.input == '{"total": 11, "round": 3}'
        check_replay_turns("c", wfr.registry.get_workflow, env.history("c"))


def run_to_end(cache_size: int) -> WorkflowTestEnvironment:
    FLAKY_RUNS.clear()
    env = WorkflowTestEnvironment(wfr, cache_size=cache_size, ids=counter_ids())
    iid = env.schedule_new_workflow(order, input=[3, 4])
    env.run()
    env.raise_workflow_event(iid, "approval", data=True)
    env.schedule_new_workflow(deterministic)
    env.schedule_new_workflow(retrying, input="same")
    env.advance(timedelta(days=1))
    return env


def test_sticky_and_replay_every_turn_write_the_same_histories():
    sticky, replaying = run_to_end(1000), run_to_end(0)
    assert sticky.audit == replaying.audit
    assert sticky.states == replaying.states
    assert sticky.orchestrator.cache.hits > 0
    assert replaying.orchestrator.cache.hits == 0


def test_is_replaying_is_seen_by_code_that_replays():
    seen = []
    runtime = WorkflowRuntime()

    @runtime.workflow
    def observe(ctx):
        seen.append(ctx.is_replaying)
        yield ctx.create_timer(timedelta(seconds=1))
        seen.append(ctx.is_replaying)

    env = WorkflowTestEnvironment(runtime, cache_size=0)
    env.wait_for_workflow_completion(env.schedule_new_workflow(observe))
    assert seen == [False, True, False]


def test_random_ids_by_default():
    env = WorkflowTestEnvironment(wfr)
    a, b = env.schedule_new_workflow(plain, input=1), env.schedule_new_workflow(plain, input=1)
    assert a != b
    assert len(a) == 32


def test_clock_only_moves_forward():
    env = WorkflowTestEnvironment(wfr)
    with pytest.raises(ValueError, match="forward"):
        env.clock.advance(timedelta(seconds=-1))


def test_start_at_keeps_the_instance_pending_until_due() -> None:
    from datetime import timedelta

    from engine import WorkflowRuntime, WorkflowStatus
    from engine.testing import WorkflowTestEnvironment

    rt = WorkflowRuntime()

    @rt.workflow(name="hello")
    def hello(ctx, name):  # type: ignore[no-untyped-def]
        return f"hi {name} at {ctx.current_utc_datetime.isoformat()}"

    env = WorkflowTestEnvironment(rt)
    due = env.clock.now + timedelta(minutes=5)
    iid = env.schedule_new_workflow("hello", input="ada", start_at=due)
    env.run()
    state = env.get_workflow_state(iid)
    assert state is not None and state.runtime_status is WorkflowStatus.PENDING
    env.advance(timedelta(minutes=4))
    assert env.get_workflow_state(iid).runtime_status is WorkflowStatus.PENDING  # type: ignore[union-attr]
    done = env.wait_for_workflow_completion(iid)
    assert done.serialized_output == f'"hi ada at {due.isoformat()}"'
