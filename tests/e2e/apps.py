"""Workflows for the end-to-end tests (importable by engine/worker subprocesses as tests.e2e.apps:runtime)."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from engine import (
    DaprWorkflowContext,
    RetryPolicy,
    TaskFailedError,
    WorkflowActivityContext,
    WorkflowRuntime,
    when_all,
)
from examples.app import runtime as examples

runtime = WorkflowRuntime()
for name, fn in examples.registry.workflows.items():
    runtime.register_workflow(fn, name=name)
for name, fn in examples.registry.activities.items():
    runtime.register_activity(fn, name=name)

#: Where activities that count their runs leave marks (set by tests that need it).
MARKS = os.environ.get("HEADRACE_TEST_MARKS", "")


def _mark(kind: str, key: str) -> None:
    if MARKS:
        with Path(MARKS, f"{kind}.log").open("a") as f:
            f.write(key + "\n")


@runtime.activity(name="flaky")
def flaky(ctx: WorkflowActivityContext, fail_times: int) -> str:
    # Fails the first `fail_times` attempts of this task; attempts are told apart by marks on disk
    # so the count survives process restarts.
    path = Path(MARKS or "/tmp", f"flaky-{ctx.workflow_id}")
    attempts = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(attempts))
    if attempts <= fail_times:
        raise RuntimeError(f"attempt {attempts} fails")
    return f"ok after {attempts}"


@runtime.activity(name="slow")
def slow(ctx: WorkflowActivityContext, seconds: float) -> float:
    _mark("slow-start", ctx.workflow_id)
    time.sleep(seconds)
    _mark("slow-end", ctx.workflow_id)
    return seconds


@runtime.activity(name="step")
def step(ctx: WorkflowActivityContext, value: int) -> int:
    _mark("step", f"{ctx.workflow_id}#{ctx.task_id}")
    return value + 1


@runtime.workflow(name="retrying")
def retrying(ctx: DaprWorkflowContext, fail_times: int) -> Any:
    policy = RetryPolicy(first_retry_interval=timedelta(milliseconds=200), max_number_of_attempts=3,
                         backoff_coefficient=2)
    try:
        return (yield ctx.call_activity(flaky, input=fail_times, retry_policy=policy))
    except TaskFailedError as exc:
        return f"gave up: {exc.details.message}"


@runtime.workflow(name="sleeper")
def sleeper(ctx: DaprWorkflowContext, seconds: float) -> Any:
    start = ctx.current_utc_datetime
    yield ctx.create_timer(timedelta(seconds=seconds))
    return (ctx.current_utc_datetime - start).total_seconds()


@runtime.workflow(name="waiter")
def waiter(ctx: DaprWorkflowContext, names: list[str]) -> Any:
    got = []
    for name in names:
        got.append((yield ctx.wait_for_external_event(name)))
    return got


@runtime.workflow(name="counter")
def counter(ctx: DaprWorkflowContext, steps: int) -> Any:
    value = 0
    for _ in range(steps):
        value = yield ctx.call_activity(step, input=value)
    return value


@runtime.workflow(name="slow_chain")
def slow_chain(ctx: DaprWorkflowContext, seconds: float) -> Any:
    return (yield ctx.call_activity(slow, input=seconds))


@runtime.workflow(name="tree")
def tree(ctx: DaprWorkflowContext, depth: int) -> Any:
    if depth <= 0:
        yield ctx.wait_for_external_event("never")
        return 0
    results = yield when_all([ctx.call_child_workflow(tree, input=depth - 1) for _ in range(2)])
    return sum(results) + 1


@runtime.workflow(name="missing_activity")
def missing_activity(ctx: DaprWorkflowContext) -> Any:
    return (yield ctx.call_activity("no_such_activity"))


# -- hostile-input probes (tests/e2e/test_hostile.py) ------------------------------------------


@runtime.activity(name="measure")
def measure(ctx: WorkflowActivityContext, doc: str) -> int:
    return len(doc)


@runtime.workflow(name="fan_same")
def fan_same(ctx: DaprWorkflowContext, args: dict[str, Any]) -> Any:
    # One turn that schedules `n` activities with the same large input: its events are n payloads.
    sizes = yield when_all([ctx.call_activity(measure, input=args["doc"]) for _ in range(args["n"])])
    return sum(sizes)


@runtime.workflow(name="loud_failure")
def loud_failure(ctx: DaprWorkflowContext, size: int) -> Any:
    raise RuntimeError("x" * size)


@runtime.workflow(name="child_named")
def child_named(ctx: DaprWorkflowContext, child_id: str) -> Any:
    return (yield ctx.call_child_workflow(counter, input=1, instance_id=child_id))
