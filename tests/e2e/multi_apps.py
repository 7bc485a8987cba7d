"""Three apps that call each other (Dapr 1.16's multi-app workflows), for tests/e2e/test_multi_app.py.

Each runs as a process of its own (`headrace run --app tests.e2e.multi_apps:front`, `:middle`,
`:back`) with its app ID in `HEADRACE_APP_ID`. The IDs the code calls are given to every process in
`HEADRACE_TEST_MIDDLE_APP` and `HEADRACE_TEST_BACK_APP` (fixed for the process, so replays agree),
so each test run has apps of its own on the shared broker.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

from engine import DaprWorkflowContext, RetryPolicy, TaskFailedError, WorkflowActivityContext, WorkflowRuntime

MIDDLE = os.environ.get("HEADRACE_TEST_MIDDLE_APP", "middle")
BACK = os.environ.get("HEADRACE_TEST_BACK_APP", "back")
#: Where activities count their attempts (so the count holds across processes).
MARKS = Path(os.environ.get("HEADRACE_TEST_MARKS", "/tmp"))

RETRY = RetryPolicy(first_retry_interval=timedelta(milliseconds=200), max_number_of_attempts=3)

front = WorkflowRuntime()
middle = WorkflowRuntime()
back = WorkflowRuntime()


# -- front: calls the other two ------------------------------------------------------------------


@front.workflow(name="front_activity")
def front_activity(ctx: DaprWorkflowContext, x: int) -> Any:
    return (yield ctx.call_activity("back_double", input=x, app_id=BACK))


@front.workflow(name="front_retried")
def front_retried(ctx: DaprWorkflowContext, fail_times: int) -> Any:
    try:
        return (yield ctx.call_activity("back_flaky", input=fail_times, app_id=BACK, retry_policy=RETRY))
    except TaskFailedError as exc:
        return f"gave up: {exc.details.message}"


@front.workflow(name="front_child")
def front_child(ctx: DaprWorkflowContext, x: int) -> Any:
    try:
        return (yield ctx.call_child_workflow("middle_child", input=x, app_id=MIDDLE))
    except TaskFailedError as exc:
        return f"child failed: {exc.details.error_type}: {exc.details.message}"


@front.workflow(name="front_long")
def front_long(ctx: DaprWorkflowContext, _: Any) -> Any:
    yield ctx.call_child_workflow("middle_long", instance_id=f"{ctx.instance_id}-middle", app_id=MIDDLE)


# -- middle: a child of front that calls back --------------------------------------------------


@middle.workflow(name="middle_child")
def middle_child(ctx: DaprWorkflowContext, x: int) -> Any:
    if x < 0:
        raise ValueError(f"no negative orders ({x})")
    doubled = yield ctx.call_activity("back_double", input=x, app_id=BACK)
    return {"middle": doubled}


@middle.workflow(name="middle_long")
def middle_long(ctx: DaprWorkflowContext, _: Any) -> Any:
    yield ctx.call_child_workflow("back_long", instance_id=f"{ctx.instance_id}-back", app_id=BACK)


# -- back: activities and a workflow that never ends by itself --------------------------------


@back.activity(name="back_double")
def back_double(ctx: WorkflowActivityContext, x: int) -> int:
    return 2 * x


@back.activity(name="back_flaky")
def back_flaky(ctx: WorkflowActivityContext, fail_times: int) -> str:
    path = MARKS / f"back-flaky-{ctx.workflow_id}"
    attempts = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(attempts))
    if attempts <= fail_times:
        raise RuntimeError(f"attempt {attempts} fails in app {os.environ.get('HEADRACE_APP_ID')}")
    return f"ok after {attempts}"


@back.workflow(name="back_long")
def back_long(ctx: DaprWorkflowContext, _: Any) -> Any:
    yield ctx.wait_for_external_event("never")
