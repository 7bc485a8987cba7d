"""Workflows Headrace's engine runs whose activities a connected Dapr app runs (tests/grpc/sdk_app.py)."""

from __future__ import annotations

from typing import Any

from engine import DaprWorkflowContext, WorkflowRuntime

runtime = WorkflowRuntime()


@runtime.workflow(name="grpc_calls_app")
def calls_app(ctx: DaprWorkflowContext, value: Any) -> Any:
    """Calls the app's activities by name: one that answers, one that raises."""
    shouted = yield ctx.call_activity("sdk_shout", input=value)
    try:
        yield ctx.call_activity("sdk_fail", input=value)
    except Exception as exc:  # the activity's failure, as the workflow code sees it
        return {"shouted": shouted, "failure": str(exc)}
    return {"shouted": shouted, "failure": None}
