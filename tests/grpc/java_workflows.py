"""Headrace workflows whose activities a connected Java app runs (tests/grpc/java/, `App engine`): the
chain, fan-out and external event of the Java app's own workflows, written in Headrace's Python
authoring model, with the activities in Java (remote activity work items)."""

from __future__ import annotations

from typing import Any

from engine import DaprWorkflowContext, WorkflowRuntime, when_all

runtime = WorkflowRuntime()


@runtime.workflow(name="engine_chain")
def chain(ctx: DaprWorkflowContext, text: str) -> Any:
    text = yield ctx.call_activity("java_upper", input=text)
    text = yield ctx.call_activity("java_exclaim", input=text)
    text = yield ctx.call_activity("java_exclaim", input=text)
    return text


@runtime.workflow(name="engine_fanout")
def fanout(ctx: DaprWorkflowContext, numbers: list[int]) -> Any:
    squares = yield when_all([ctx.call_activity("java_square", input=n) for n in numbers])
    return sum(squares)


@runtime.workflow(name="engine_approval")
def approval(ctx: DaprWorkflowContext, _: Any) -> Any:
    ctx.set_custom_status("waiting")
    by = yield ctx.wait_for_external_event("approve")
    shouted = yield ctx.call_activity("java_upper", input=by)
    return f"approved by {shouted}"
