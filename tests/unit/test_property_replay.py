"""Property: replaying from scratch every turn and keeping generators live write the same histories.

Hypothesis generates workflow "programs" (activity calls, timers, when_all, when_any of activity vs
timer, external event waits with and without timeouts, custom status, child workflows, UUIDs,
retries, fire-and-forget activities, continue-as-new) and a seed for a random scheduler that picks
which activity finishes next, when timers fire, when events are raised and when the instance is
paused. The same program and seed run in a `WorkflowTestEnvironment` with `cache_size=0` (every
turn replays the whole history) and with a large cache (sticky generators); the audit logs (every
history event of every instance and generation), the final states and the activity runs must be
identical. Then every turn of every recorded history is replayed directly: a live
`WorkflowExecution` fed turn by turn and `execute(past, new)` from scratch must both take exactly
the recorded steps.
"""

from __future__ import annotations

import heapq
import random
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import check_replay_turns, counter_ids

from engine import RetryPolicy, TaskFailedError, WorkflowRuntime, when_all, when_any
from engine.core.state import InstanceState, fold_all
from engine.core.values import RuntimeStatus
from engine.testing import WorkflowTestEnvironment

wfr = WorkflowRuntime()
EVENT_NAMES = ("alpha", "beta")


@wfr.activity
def echo(ctx, value):
    return value


@wfr.activity
def boom(ctx, value):
    raise ValueError(f"boom {value}")


@wfr.activity
def sometimes(ctx, value):
    # Fails for some task IDs only: retries (new task IDs) may then succeed, deterministically.
    if (ctx.task_id + value) % 3:
        raise ConnectionError(f"task {ctx.task_id} unlucky")
    return ctx.task_id


RETRY = RetryPolicy(
    first_retry_interval=timedelta(seconds=2), backoff_coefficient=2, max_number_of_attempts=3
)


def run_steps(ctx, steps: list[Any], out: list[Any]):
    for step in steps:
        kind = step[0]
        if kind == "act":
            out.append((yield ctx.call_activity(echo, input=step[1])))
        elif kind == "fail":
            try:
                yield ctx.call_activity(boom, input=step[1])
            except TaskFailedError as exc:
                out.append(exc.details.message)
        elif kind == "retry":
            try:
                out.append((yield ctx.call_activity(sometimes, input=step[1], retry_policy=RETRY)))
            except TaskFailedError as exc:
                out.append(exc.details.message)
        elif kind == "timer":
            yield ctx.create_timer(timedelta(seconds=step[1]))
            out.append(ctx.current_utc_datetime.isoformat())
        elif kind == "all":
            k, failing = step[1], step[2]
            tasks = [ctx.call_activity(boom if i == failing else echo, input=i) for i in range(k)]
            try:
                out.append((yield when_all(tasks)))
            except TaskFailedError as exc:
                out.append(exc.details.message)
        elif kind == "any":
            work = ctx.call_activity(echo, input="work")
            timer = ctx.create_timer(timedelta(seconds=step[1]))
            winner = yield when_any([work, timer])
            out.append("timer" if winner is timer else winner.get_result())
        elif kind == "event":
            timeout = None if step[2] is None else timedelta(seconds=step[2])
            try:
                out.append((yield ctx.wait_for_external_event(step[1], timeout=timeout)))
            except TimeoutError:
                out.append("timeout")
        elif kind == "status":
            ctx.set_custom_status(step[1])
        elif kind == "child":
            out.append(
                (yield ctx.call_child_workflow(program, input={"steps": step[1], "rounds": 0}))
            )
        elif kind == "uuid":
            out.append(ctx.new_uuid())
        elif kind == "spawn":
            ctx.call_activity(echo, input="never awaited")
        else:  # pragma: no cover - the strategy makes no other kinds
            raise AssertionError(kind)


@wfr.workflow(name="program")
def program(ctx, spec):
    out: list[Any] = []
    yield from run_steps(ctx, spec["steps"], out)
    if spec["rounds"] > 0:
        ctx.continue_as_new(
            {"steps": spec["steps"], "rounds": spec["rounds"] - 1}, save_events=True
        )
        return None
    return out


# -- generating programs --------------------------------------------------------------------------

seconds = st.integers(min_value=1, max_value=120)
simple_step = st.one_of(
    st.tuples(st.just("act"), st.integers(0, 99)),
    st.tuples(st.just("fail"), st.integers(0, 99)),
    st.tuples(st.just("retry"), st.integers(0, 5)),
    st.tuples(st.just("timer"), seconds),
    st.integers(1, 4).flatmap(
        lambda k: st.tuples(st.just("all"), st.just(k), st.integers(-1, k - 1))
    ),
    st.tuples(st.just("any"), seconds),
    st.tuples(
        st.just("event"),
        st.sampled_from(EVENT_NAMES),
        st.one_of(st.none(), st.just(0), st.just(-5), seconds),
    ),
    # A custom status is a string (a number as its JSON text: a non-str is deprecated, as in Dapr's SDK).
    st.tuples(
        st.just("status"),
        st.one_of(st.text(max_size=5), st.integers(-(2**63), 2**63 - 1).map(str), st.none()),
    ),
    st.tuples(st.just("uuid")),
    st.tuples(st.just("spawn")),
)
child_step = st.tuples(st.just("child"), st.lists(simple_step, max_size=4))
steps = st.lists(st.one_of(simple_step, child_step), min_size=1, max_size=8)
specs = st.fixed_dictionaries({"steps": steps, "rounds": st.integers(0, 2)})


# -- a random scheduler over the test environment's queues ---------------------------------------
# It reaches into the environment's queues on purpose: `run()` drains them in a fixed order, and
# the point here is to try many orders.


def drive(
    env: WorkflowTestEnvironment, spec: dict[str, Any], seed: int, max_moves: int = 3000
) -> None:
    rng = random.Random(seed)
    env.schedule_new_workflow("program", input=spec, instance_id="root")
    for _ in range(max_moves):
        while env._messages:
            env._handle(env._messages.popleft())
        if env.states["root"].is_terminal:
            return
        running = sorted(iid for iid, s in env.states.items() if s.is_running)
        moves = ["work"] * 3 * bool(env._work) + ["timer"] * bool(env._timers) + ["event"]
        if rng.random() < 0.05:
            moves.append("pause")
        move = rng.choice(moves)
        env.clock.advance(timedelta(milliseconds=rng.randrange(0, 5000)))
        if move == "work":
            index = rng.randrange(len(env._work))
            item = env._work[index]
            del env._work[index]
            env._run_activity(item)
        elif move == "timer":
            timer = heapq.heappop(env._timers)
            env.clock.now = max(env.clock.now, timer.due)
            env._fire(timer)
        elif move == "event":
            name = rng.choice(EVENT_NAMES)
            name = name.upper() if rng.random() < 0.5 else name
            env.raise_workflow_event(rng.choice(running), name, data=rng.randrange(1000))
        else:
            iid = rng.choice(running)
            if env.states[iid].status is RuntimeStatus.SUSPENDED:
                env.resume_workflow(iid)
            else:
                env.pause_workflow(iid)
        # Nothing stays paused for ever: the scheduler resumes everything now and then.
        if rng.random() < 0.2:
            for iid, state in list(env.states.items()):
                if state.status is RuntimeStatus.SUSPENDED:
                    env.resume_workflow(iid)
    raise AssertionError(f"the program did not finish in {max_moves} moves: {spec}")


def run(spec: dict[str, Any], seed: int, cache_size: int) -> WorkflowTestEnvironment:
    env = WorkflowTestEnvironment(wfr, cache_size=cache_size, ids=counter_ids())
    drive(env, spec, seed)
    return env


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=specs, seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_replay_every_turn_and_sticky_write_identical_histories(spec, seed):
    replaying = run(spec, seed, cache_size=0)
    sticky = run(spec, seed, cache_size=10_000)

    assert sticky.audit == replaying.audit
    assert sticky.states == replaying.states
    assert sticky.activity_runs == replaying.activity_runs
    root = sticky.states["root"]
    assert root.status is RuntimeStatus.COMPLETED, root.failure
    assert sticky.orchestrator.cache.misses == 0  # every turn after the first found its generator

    # The state kept turn by turn is the fold of the current generation's history.
    for iid, state in sticky.states.items():
        folded = fold_all(InstanceState(instance_id=iid), sticky.history(iid))
        for name in (
            "status",
            "execution_id",
            "input",
            "output",
            "failure",
            "history_length",
            "pending_tasks",
            "pending_timers",
            "pending_children",
            "buffered_events",
        ):
            assert getattr(folded, name) == getattr(state, name), (iid, name)

    # Every execution (instance and generation) replays turn by turn, live and from scratch.
    histories: dict[tuple[str, str], list] = {}
    for instance_id, execution_id, event in sticky.audit:
        histories.setdefault((instance_id, execution_id), []).append(event)
    for (instance_id, _), history in histories.items():
        check_replay_turns(instance_id, wfr.registry.get_workflow, history)


def test_the_generator_covers_every_step_kind():
    # A guard against a strategy that silently stops producing some step kinds.
    kinds = {
        "act",
        "fail",
        "retry",
        "timer",
        "all",
        "any",
        "event",
        "status",
        "uuid",
        "spawn",
        "child",
    }
    seen: set[str] = set()

    @settings(max_examples=300, database=None)
    @given(steps)
    def collect(generated):
        seen.update(step[0] for step in generated)

    collect()
    assert seen == kinds
