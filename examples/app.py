"""Five example workflows, written as for Dapr: only the imports differ.

- `chain`: three activities in a row.
- `fan_out`: one activity per item of a list, in parallel, then a sum.
- `order_approval`: waits for an external event `approval`, with a timeout.
- `monitor`: checks something on a timer and continues as new, so its history stays small.
- `parent`: starts child workflows and combines their results.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from engine import DaprWorkflowContext, RetryPolicy, WorkflowActivityContext, WorkflowRuntime, when_all, when_any

runtime = WorkflowRuntime()

_retry = RetryPolicy(first_retry_interval=timedelta(seconds=1), max_number_of_attempts=3, backoff_coefficient=2)


@runtime.activity(name="greet")
def greet(ctx: WorkflowActivityContext, name: str) -> str:
    return f"Hello, {name}!"


@runtime.activity(name="square")
def square(ctx: WorkflowActivityContext, n: int) -> int:
    return n * n


@runtime.activity(name="charge")
async def charge(ctx: WorkflowActivityContext, order: dict[str, Any]) -> dict[str, Any]:
    return {"order": order.get("id"), "charged": order.get("amount", 0)}


@runtime.activity(name="check_health")
def check_health(ctx: WorkflowActivityContext, target: str) -> bool:
    return True


@runtime.workflow(name="chain")
def chain(ctx: DaprWorkflowContext, name: str) -> Any:
    first = yield ctx.call_activity(greet, input=name, retry_policy=_retry)
    second = yield ctx.call_activity(greet, input=first)
    third = yield ctx.call_activity(greet, input=second)
    return third


@runtime.workflow(name="fan_out")
def fan_out(ctx: DaprWorkflowContext, numbers: list[int]) -> Any:
    squares = yield when_all([ctx.call_activity(square, input=n) for n in numbers])
    return sum(squares)


@runtime.workflow(name="order_approval")
def order_approval(ctx: DaprWorkflowContext, order: dict[str, Any]) -> Any:
    ctx.set_custom_status("waiting for approval")
    approval = ctx.wait_for_external_event("approval")
    timeout = ctx.create_timer(timedelta(seconds=float(order.get("timeout_s", 3600))))
    winner = yield when_any([approval, timeout])
    if winner == timeout:
        ctx.set_custom_status("timed out")
        return {"order": order.get("id"), "status": "cancelled: no approval in time"}
    if not approval.get_result():
        ctx.set_custom_status("rejected")
        return {"order": order.get("id"), "status": "rejected"}
    ctx.set_custom_status("approved")
    receipt = yield ctx.call_activity(charge, input=order)
    return {"order": order.get("id"), "status": "approved", "receipt": receipt}


@runtime.workflow(name="monitor")
def monitor(ctx: DaprWorkflowContext, job: dict[str, Any]) -> Any:
    healthy = yield ctx.call_activity(check_health, input=job.get("target", "service"))
    checks = int(job.get("checks", 0)) + 1
    if checks >= int(job.get("max_checks", 3)):
        return {"checks": checks, "healthy": healthy}
    yield ctx.create_timer(timedelta(seconds=float(job.get("interval_s", 1))))
    ctx.continue_as_new({**job, "checks": checks})
    return None


@runtime.workflow(name="parent")
def parent(ctx: DaprWorkflowContext, names: list[str]) -> Any:
    results = yield when_all([ctx.call_child_workflow(chain, input=n) for n in names])
    return results
