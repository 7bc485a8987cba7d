"""The benchmark's workflows: `headrace engine|worker --app ops.bench.apps:runtime` loads them.

Shapes follow Dapr's perf suite (tests/perf/workflows): a chain of activities, a fan-out/fan-in, a
durable timer. Activities are plain synchronous functions, as most Dapr apps write them, so the
worker's thread-pool hop is part of what is measured.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from engine import DaprWorkflowContext, WorkflowActivityContext, WorkflowRuntime, when_all

runtime = WorkflowRuntime()


@runtime.activity(name="bench_echo")
def echo(ctx: WorkflowActivityContext, value: Any) -> Any:
    # Returning the input makes a payload travel both ways (work item and result), as Dapr's
    # payload test does with its save/get activities.
    return value


@runtime.workflow(name="bench_chain")
def chain(ctx: DaprWorkflowContext, args: dict[str, Any]) -> Any:
    value = args.get("payload", 0)
    for _ in range(int(args["steps"])):
        value = yield ctx.call_activity(echo, input=value)
    # A size, not the payload: the output lands in every status record from here on.
    return len(value) if isinstance(value, str) else value


@runtime.workflow(name="bench_fan_out")
def fan_out(ctx: DaprWorkflowContext, width: int) -> Any:
    results = yield when_all([ctx.call_activity(echo, input=i) for i in range(int(width))])
    return sum(results)


@runtime.workflow(name="bench_timer")
def sleeper(ctx: DaprWorkflowContext, delay_s: float) -> Any:
    due = ctx.current_utc_datetime + timedelta(seconds=float(delay_s))
    yield ctx.create_timer(due)
    # After the timer, current_utc_datetime is the time of the turn that handled its firing: the
    # difference is how late the engine fired it (the load generator aggregates the outputs).
    return (ctx.current_utc_datetime - due).total_seconds()
