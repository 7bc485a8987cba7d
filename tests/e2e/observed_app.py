"""Workflows for the observability tests (tests.e2e.observed_app:runtime): activities, a retry, a child."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

from engine import DaprWorkflowContext, RetryPolicy, WorkflowActivityContext, WorkflowRuntime

runtime = WorkflowRuntime()

#: A directory where `fails_once` remembers which instances it failed already (set by the test).
MARKS = os.environ.get("HEADRACE_TEST_MARKS", "")


@runtime.activity(name="double")
def double(ctx: WorkflowActivityContext, value: int) -> int:
    return value * 2


@runtime.activity(name="fails_once")
def fails_once(ctx: WorkflowActivityContext, value: int) -> int:
    # The first attempt of each instance fails; the mark on disk survives the retry's new task.
    mark = Path(MARKS or "/tmp", f"fails-once-{ctx.workflow_id}")
    if not mark.exists():
        mark.write_text("failed")
        raise RuntimeError("the first attempt fails")
    return value + 1


@runtime.workflow(name="traced_child")
def traced_child(ctx: DaprWorkflowContext, value: int) -> Any:
    return (yield ctx.call_activity(double, input=value))


@runtime.workflow(name="traced")
def traced(ctx: DaprWorkflowContext, value: int) -> Any:
    doubled = yield ctx.call_activity(double, input=value)
    policy = RetryPolicy(first_retry_interval=timedelta(milliseconds=100), max_number_of_attempts=3)
    bumped = yield ctx.call_activity(fails_once, input=doubled, retry_policy=policy)
    return (yield ctx.call_child_workflow(traced_child, input=bumped))


@runtime.workflow(name="traced_wait")
def traced_wait(ctx: DaprWorkflowContext, value: int) -> Any:
    doubled = yield ctx.call_activity(double, input=value)
    ctx.set_custom_status("waiting")
    go = yield ctx.wait_for_external_event("go")
    return (yield ctx.call_activity(double, input=doubled + int(go)))
