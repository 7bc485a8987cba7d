"""A Python workflow whose activity `java_echo` is served by the Java worker in java-worker/ (not here)."""

from __future__ import annotations

from typing import Any

from engine import DaprWorkflowContext, WorkflowRuntime

runtime = WorkflowRuntime()


@runtime.workflow(name="foreign_echo")
def foreign_echo(ctx: DaprWorkflowContext, value: Any) -> Any:
    echoed = yield ctx.call_activity("java_echo", input=value)
    return {"echoed": echoed}
