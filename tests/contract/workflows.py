"""The workflows of the contract suite, registered once and run unchanged on both backends.

Activities that count their runs count in this process: the in-memory backend runs them inline and
the Kafka backend's worker runs them in a thread of this process (`RuntimeHost`).
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from datetime import timedelta
from typing import Any

from engine import (
    DaprWorkflowContext,
    RetryPolicy,
    TaskFailedError,
    WorkflowActivityContext,
    WorkflowRuntime,
    when_all,
)

runtime = WorkflowRuntime()

_lock = threading.Lock()
#: Activity runs (and workflow code runs, for the non-determinism probe) per instance ID.
_runs: Counter[str] = Counter()


def runs(key: str) -> int:
    with _lock:
        return _runs[key]


def _count(key: str) -> int:
    with _lock:
        _runs[key] += 1
        return _runs[key]


# -- activities -------------------------------------------------------------------------------


@runtime.activity(name="greet")
def greet(ctx: WorkflowActivityContext, name: str) -> str:
    return f"Hello, {name}!"


@runtime.activity(name="square")
def square(ctx: WorkflowActivityContext, n: int) -> int:
    return n * n


@runtime.activity(name="flaky")
def flaky(ctx: WorkflowActivityContext, fail_times: int) -> str:
    attempt = _count(f"flaky/{ctx.workflow_id}")
    if attempt <= fail_times:
        raise RuntimeError(f"attempt {attempt} fails")
    return f"ok after {attempt}"


@runtime.activity(name="explode")
def explode(ctx: WorkflowActivityContext, message: str) -> None:
    raise RuntimeError(message)


# -- workflows --------------------------------------------------------------------------------


@runtime.workflow(name="chain")
def chain(ctx: DaprWorkflowContext, name: str) -> Any:
    value = name
    for _ in range(3):
        value = yield ctx.call_activity(greet, input=value)
    return value


@runtime.workflow(name="fan_out")
def fan_out(ctx: DaprWorkflowContext, numbers: list[int]) -> Any:
    squares = yield when_all([ctx.call_activity(square, input=n) for n in numbers])
    return sum(squares)


@runtime.workflow(name="greeter")
def greeter(ctx: DaprWorkflowContext, name: str) -> Any:
    return (yield ctx.call_activity(greet, input=name))


@runtime.workflow(name="parent")
def parent(ctx: DaprWorkflowContext, names: list[str]) -> Any:
    return (yield when_all([ctx.call_child_workflow(greeter, input=n) for n in names]))


@runtime.workflow(name="blocked")
def blocked(ctx: DaprWorkflowContext) -> Any:
    yield ctx.wait_for_external_event("never")


@runtime.workflow(name="blocked_parent")
def blocked_parent(ctx: DaprWorkflowContext, children: int) -> Any:
    yield when_all([ctx.call_child_workflow(blocked) for _ in range(children)])


@runtime.workflow(name="approval")
def approval(ctx: DaprWorkflowContext, timeout_s: float) -> Any:
    ctx.set_custom_status("waiting for approval")
    try:
        approved = yield ctx.wait_for_external_event("approval", timeout=timedelta(seconds=timeout_s))
    except TimeoutError:
        ctx.set_custom_status("expired")
        return {"approved": None}
    ctx.set_custom_status("decided")
    return {"approved": approved}


@runtime.workflow(name="sleeper")
def sleeper(ctx: DaprWorkflowContext, seconds: float) -> Any:
    due = ctx.current_utc_datetime + timedelta(seconds=seconds)
    yield ctx.create_timer(timedelta(seconds=seconds))
    # Workflow time is the time of the turn, so it reads at least the due time once the timer fired.
    return ctx.current_utc_datetime >= due


@runtime.workflow(name="retrying")
def retrying(ctx: DaprWorkflowContext, fail_times: int) -> Any:
    policy = RetryPolicy(first_retry_interval=timedelta(milliseconds=100), max_number_of_attempts=3,
                         backoff_coefficient=2)
    try:
        return (yield ctx.call_activity(flaky, input=fail_times, retry_policy=policy))
    except TaskFailedError as exc:
        return f"gave up: {exc.details.message}"


@runtime.workflow(name="accumulate")
def accumulate(ctx: DaprWorkflowContext, progress: dict[str, int]) -> Any:
    # One "add" event per generation, for `rounds` generations; the first waits for "go" first.
    if progress["round"] == 1:
        yield ctx.wait_for_external_event("go")
    total = progress["total"] + (yield ctx.wait_for_external_event("add"))
    if progress["round"] < progress["rounds"]:
        # Events received but not taken yet carry over to the next generation.
        ctx.continue_as_new({**progress, "total": total, "round": progress["round"] + 1}, save_events=True)
        return None
    return total


@runtime.workflow(name="gated")
def gated(ctx: DaprWorkflowContext, name: str) -> Any:
    word = yield ctx.wait_for_external_event("go")
    return (yield ctx.call_activity(greet, input=f"{name} {word}"))


@runtime.workflow(name="broken")
def broken(ctx: DaprWorkflowContext, message: str) -> Any:
    yield ctx.call_activity(greet, input="first")
    raise ValueError(message)


@runtime.workflow(name="activity_fails")
def activity_fails(ctx: DaprWorkflowContext, message: str) -> Any:
    return (yield ctx.call_activity(explode, input=message))


@runtime.workflow(name="reporting")
def reporting(ctx: DaprWorkflowContext) -> Any:
    ctx.set_custom_status(json.dumps({"step": 1}))
    yield ctx.wait_for_external_event("next")
    ctx.set_custom_status("done")
    return "finished"


@runtime.workflow(name="fickle")
def fickle(ctx: DaprWorkflowContext) -> Any:
    # Its first step changes after the first run: replaying the recorded history must fail.
    if _count(f"fickle/{ctx.instance_id}") == 1:
        yield ctx.call_activity(greet, input="once")
    else:
        yield ctx.create_timer(timedelta(seconds=1))
    return "unreachable once replayed"


@runtime.workflow(name="nest")
def nest(ctx: DaprWorkflowContext, depth: int) -> Any:
    if depth <= 0:
        return (yield ctx.wait_for_external_event("finish"))
    return (yield ctx.call_child_workflow(nest, input=depth - 1))


@runtime.workflow(name="failing_parent")
def failing_parent(ctx: DaprWorkflowContext, message: str) -> Any:
    return (yield ctx.call_child_workflow(broken, input=message))


@runtime.activity(name="blow_up")
def blow_up(ctx: WorkflowActivityContext, size: int) -> str:
    return "x" * size


@runtime.workflow(name="big_result")
def big_result(ctx: DaprWorkflowContext, size: int) -> Any:
    try:
        return len((yield ctx.call_activity(blow_up, input=size)))
    except TaskFailedError as exc:
        return {"error_type": exc.details.error_type}


@runtime.workflow(name="big_output")
def big_output(ctx: DaprWorkflowContext, size: int) -> Any:
    return "x" * size


@runtime.workflow(name="missing_activity")
def missing_activity(ctx: DaprWorkflowContext) -> Any:
    return (yield ctx.call_activity("no_such_activity"))


@runtime.workflow(name="listener")
def listener(ctx: DaprWorkflowContext, names: list[str]) -> Any:
    got = []
    for name in names:
        got.append((yield ctx.wait_for_external_event(name)))
    return got


# Dapr 1.17 workflow versions and patches: new runs take the latest version and every patch.
@runtime.versioned_workflow(name="versioned", version_name="v1", is_latest=False)
def versioned_v1(ctx: DaprWorkflowContext) -> Any:
    return "v1"


@runtime.versioned_workflow(name="versioned", version_name="v2", is_latest=True)
def versioned_v2(ctx: DaprWorkflowContext) -> Any:
    patched = ctx.is_patched("p1")
    yield ctx.wait_for_external_event("go")
    return ["v2", patched, ctx.is_patched("p1")]
