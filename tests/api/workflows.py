"""Workflows the REST API tests drive (examples/app.py's, plus a few that exercise every status)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from engine import DaprWorkflowContext, WorkflowActivityContext, WorkflowRuntime
from examples.app import runtime as examples

runtime = WorkflowRuntime()
for _name, _fn in examples.registry.workflows.items():
    runtime.register_workflow(_fn, name=_name)
for _name, _fn in examples.registry.activities.items():
    runtime.register_activity(_fn, name=_name)


@runtime.activity(name="api_double")
def double(ctx: WorkflowActivityContext, value: Any) -> Any:
    return value * 2 if isinstance(value, (int, float)) else value


@runtime.workflow(name="api_echo")
def echo(ctx: DaprWorkflowContext, value: Any) -> Any:
    """Returns its input unchanged: shows what the workflow received."""
    return {"received": value}


@runtime.workflow(name="api_gate")
def gate(ctx: DaprWorkflowContext, value: Any) -> Any:
    """Waits for the event `go`, then doubles the event's data in an activity."""
    ctx.set_custom_status("waiting")
    data = yield ctx.wait_for_external_event("go")
    ctx.set_custom_status("going")
    doubled = yield ctx.call_activity(double, input=data)
    return {"input": value, "doubled": doubled}


@runtime.workflow(name="api_fail")
def fail(ctx: DaprWorkflowContext, value: Any) -> Any:
    if False:  # a generator workflow that fails on its first step
        yield ctx.create_timer(timedelta(seconds=0))
    raise ValueError(f"bad input: {value}")


@runtime.workflow(name="api_parent")
def parent(ctx: DaprWorkflowContext, value: Any) -> Any:
    """Starts a child that waits for `go` (child ID `<parent>-child`)."""
    result = yield ctx.call_child_workflow(
        gate, input=value, instance_id=f"{ctx.instance_id}-child"
    )
    return result


@runtime.workflow(name="api_forgetful_parent")
def forgetful_parent(ctx: DaprWorkflowContext, value: Any) -> Any:
    """Starts a child that waits for `go` (child ID `<parent>-child`), does not wait for it, and
    completes on its next turn: the child outlives it."""
    ctx.call_child_workflow(gate, input=value, instance_id=f"{ctx.instance_id}-child")
    yield ctx.create_timer(timedelta(seconds=0))
    return "done"
