"""The chaos load's workflows: `headrace engine|worker --app ops.chaos.apps:runtime` loads them.

Every workflow's output is a pure function of its input (`expected_output` in load.py computes
it), so the checker can tell a right answer from a wrong one. Activities leave a mark per run in
`$HEADRACE_CHAOS_MARKS/<pid>.log` ("S <instance> <task id> <name>" when a run starts, "E …" when
it returns), one file per worker process, so runs are countable after any crash: a task that
shows two starts ran twice (a redelivery).

`chaos_versioned` is the one workflow `apps_v2` changes, for the non-determinism scenario.
"""

from __future__ import annotations

import os
import random
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from engine import DaprWorkflowContext, RetryPolicy, WorkflowActivityContext, WorkflowRuntime, when_all

runtime = WorkflowRuntime()

#: Where activities leave their run marks ("" = nowhere).
MARKS = os.environ.get("HEADRACE_CHAOS_MARKS", "")
#: Attempts the retrying workflow's policy allows (the checker bounds scheduled attempts by it).
RETRY_ATTEMPTS = 3
RETRY = RetryPolicy(first_retry_interval=timedelta(milliseconds=200), max_number_of_attempts=RETRY_ATTEMPTS)


def mark(kind: str, ctx: WorkflowActivityContext) -> None:
    if not MARKS:
        return
    line = f"{kind} {ctx.workflow_id} {ctx.task_id} {ctx.activity_name}\n".encode()
    # One write() of a short line to an O_APPEND file: whole lines even if the process dies.
    fd = os.open(Path(MARKS, f"{os.getpid()}.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def _busy(ctx: WorkflowActivityContext) -> None:
    """A short, random amount of work, so a kill lands mid-activity as often as not."""
    mark("S", ctx)
    time.sleep(random.uniform(0.005, 0.04))  # noqa: S311 - timing jitter, not a secret


@runtime.activity(name="chaos_add")
def add(ctx: WorkflowActivityContext, value: int) -> int:
    _busy(ctx)
    mark("E", ctx)
    return value + 1


@runtime.activity(name="chaos_double")
def double(ctx: WorkflowActivityContext, value: int) -> int:
    _busy(ctx)
    mark("E", ctx)
    return value * 2


@runtime.activity(name="chaos_flaky")
def flaky(ctx: WorkflowActivityContext, args: dict[str, Any]) -> int:
    """Fails until it has run `fail` times for this instance (counted on disk, across processes)."""
    _busy(ctx)
    attempts = 1
    if MARKS:
        counter = Path(MARKS, "flaky", ctx.workflow_id)
        counter.parent.mkdir(exist_ok=True)
        fd = os.open(counter, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, b".")
        finally:
            os.close(fd)
        attempts = counter.stat().st_size
    mark("E", ctx)
    if attempts <= int(args["fail"]):
        raise RuntimeError(f"attempt {attempts} fails on purpose")
    return int(args["x"]) + 1


@runtime.workflow(name="chaos_chain")
def chain(ctx: DaprWorkflowContext, args: dict[str, Any]) -> Any:
    value = int(args["x"])
    for _ in range(int(args["n"])):
        value = yield ctx.call_activity(add, input=value)
    return value


@runtime.workflow(name="chaos_fan_out")
def fan_out(ctx: DaprWorkflowContext, args: dict[str, Any]) -> Any:
    x = int(args["x"])
    results = yield when_all([ctx.call_activity(add, input=x + i) for i in range(int(args["width"]))])
    return sum(results)


@runtime.workflow(name="chaos_timer")
def timer(ctx: DaprWorkflowContext, args: dict[str, Any]) -> Any:
    yield ctx.create_timer(timedelta(seconds=float(args["delay_s"])))
    return (yield ctx.call_activity(add, input=int(args["x"])))


@runtime.workflow(name="chaos_event")
def event(ctx: DaprWorkflowContext, args: dict[str, Any]) -> Any:
    # No timeout: an event that never arrives leaves the instance running, and the checker
    # counts it lost.
    got = yield ctx.wait_for_external_event("go")
    return int(args["x"]) + int(got["v"])


@runtime.workflow(name="chaos_parent")
def parent(ctx: DaprWorkflowContext, args: dict[str, Any]) -> Any:
    x = int(args["x"])
    children = [ctx.call_child_workflow(chain, input={"x": x + i, "n": 1}) for i in range(int(args["children"]))]
    results = yield when_all(children)
    return sum(results)


@runtime.workflow(name="chaos_retry")
def retrying(ctx: DaprWorkflowContext, args: dict[str, Any]) -> Any:
    return (yield ctx.call_activity(flaky, input=args, retry_policy=RETRY))


@runtime.workflow(name="chaos_versioned")
def versioned(ctx: DaprWorkflowContext, args: dict[str, Any]) -> Any:
    """Version 1: add, then wait for `go`. Version 2 (apps_v2) doubles first instead."""
    first = yield ctx.call_activity(add, input=int(args["x"]))
    got = yield ctx.wait_for_external_event("go")
    return first + int(got["v"])
