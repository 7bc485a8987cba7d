"""Workflows the dashboard tests drive: the REST API tests' set, plus one with every kind of step.

`dash_tour` makes a timeline worth looking at: activities of different lengths (one clearly the
slowest), a fan-out, a durable timer, a child workflow, and an external event it waits for.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

from engine import DaprWorkflowContext, WorkflowActivityContext, WorkflowRuntime, when_all
from tests.api.workflows import runtime as api_runtime

runtime = WorkflowRuntime()
for _name, _fn in api_runtime.registry.workflows.items():
    runtime.register_workflow(_fn, name=_name)
for _name, _fn in api_runtime.registry.activities.items():
    runtime.register_activity(_fn, name=_name)


@runtime.activity(name="dash_step")
async def step(ctx: WorkflowActivityContext, spec: dict[str, Any]) -> dict[str, Any]:
    """Takes `ms` milliseconds, as a real call to some service would."""
    await asyncio.sleep(float(spec.get("ms", 0)) / 1000)
    return {"step": spec.get("step"), "ok": True}


@runtime.workflow(name="dash_shipping")
def shipping(ctx: DaprWorkflowContext, order: dict[str, Any]) -> Any:
    label = yield ctx.call_activity(step, input={"step": "label", "ms": 150})
    return {"order": order.get("id"), "label": label}


@runtime.workflow(name="dash_tour")
def tour(ctx: DaprWorkflowContext, order: dict[str, Any]) -> Any:
    ctx.set_custom_status(json.dumps({"stage": "checking"}))
    yield ctx.call_activity(step, input={"step": "validate", "ms": 120})
    prices = yield when_all(
        [ctx.call_activity(step, input={"step": f"quote-{n}", "ms": ms}) for n, ms in enumerate((200, 1200, 400))]
    )
    yield ctx.create_timer(timedelta(milliseconds=600))
    shipped = yield ctx.call_child_workflow(shipping, input=order, instance_id=f"{ctx.instance_id}-ship")
    ctx.set_custom_status(json.dumps({"stage": "waiting for approval"}))
    approval = yield ctx.wait_for_external_event("approval")
    receipt = yield ctx.call_activity(step, input={"step": "charge", "ms": 250})
    ctx.set_custom_status(json.dumps({"stage": "done"}))
    return {
        "order": order.get("id"),
        "quotes": len(prices),
        "shipped": shipped,
        "approval": approval,
        "receipt": receipt,
    }
