"""Dapr SDK parity in the in-memory engine: typed inputs, custom status as written, Dapr's child IDs."""

from __future__ import annotations

import dataclasses
import types
from datetime import timedelta
from typing import Any

import orjson
import pydantic

from engine import DaprWorkflowContext, WorkflowActivityContext, WorkflowRuntime, WorkflowStatus, when_any
from engine.testing import WorkflowTestEnvironment

wfr = WorkflowRuntime()
seen: list[Any] = []


@dataclasses.dataclass
class Order:
    cost: float
    product: str
    quantity: int


@dataclasses.dataclass
class JobStatus:
    job_id: str
    is_healthy: bool


class OrderRequest(pydantic.BaseModel):
    order_id: str
    amount: float


class OrderResult(pydantic.BaseModel):
    order_id: str
    approved: bool


@wfr.activity(name="send_approval")
def send_approval(ctx: WorkflowActivityContext, order: Order) -> Order:
    seen.append(("activity", order))
    return order


@wfr.workflow(name="purchase_order")
def purchase_order(ctx: DaprWorkflowContext, order: Order):
    # Dapr's human_approval example: attribute access on the input ('dict' has no attribute 'cost')
    if order.cost < 1000:
        return "Auto-approved"
    echoed = yield ctx.call_activity(send_approval, input=order)
    seen.append(("echoed", echoed))
    approval = ctx.wait_for_external_event("approval_received")
    timeout = ctx.create_timer(timedelta(hours=24))
    if (yield when_any([approval, timeout])) == timeout:
        return "Cancelled"
    return f"Approved by '{approval.get_result()['approver']}' for {order}"


@wfr.workflow(name="status_monitor")
def status_monitor(ctx: DaprWorkflowContext, job: JobStatus):
    # Dapr's monitor example: the input is changed and handed on through continue_as_new
    if not ctx.is_replaying:
        seen.append(types.SimpleNamespace(**vars(job)))
    if job.is_healthy:
        job.is_healthy = False
        yield ctx.create_timer(timedelta(seconds=5))
        ctx.continue_as_new(job)
        return None
    return job.job_id


@wfr.activity(name="approve_order")
def approve_order(ctx: WorkflowActivityContext, order: OrderRequest) -> OrderResult:
    return OrderResult(order_id=order.order_id, approved=order.amount <= 100)


@wfr.workflow(name="order_workflow")
def order_workflow(ctx: DaprWorkflowContext, order: OrderRequest):
    seen.append(order)
    raw = yield ctx.call_activity(approve_order, input=order)
    return OrderResult.model_validate(raw)


@wfr.workflow(name="with_status")
def with_status(ctx: DaprWorkflowContext):
    ctx.set_custom_status("waiting for approval")
    yield ctx.wait_for_external_event("go")
    ctx.set_custom_status("")
    return None


@wfr.workflow(name="leaf")
def leaf(ctx: DaprWorkflowContext, n: int):
    return ctx.instance_id


@wfr.workflow(name="parent")
def parent(ctx: DaprWorkflowContext):
    first = yield ctx.call_child_workflow(leaf, input=1)
    yield ctx.create_timer(timedelta(seconds=1))
    second = yield ctx.call_child_workflow(leaf, input=2)
    return [first, second]


def env() -> WorkflowTestEnvironment:
    seen.clear()
    return WorkflowTestEnvironment(wfr)


class Test_typed_inputs:
    def test_a_dataclass_input_arrives_as_a_namespace_in_the_workflow_and_the_activity(self):
        e = env()
        iid = e.schedule_new_workflow(purchase_order, input=Order(2000, "MyProduct", 1))
        e.run()
        # As in Dapr (its human_approval README prints `namespace(cost=2000, product='MyProduct', quantity=1)`).
        namespace = types.SimpleNamespace(cost=2000, product="MyProduct", quantity=1)
        assert seen[0] == ("activity", namespace)
        assert seen[1] == ("echoed", namespace)
        e.raise_workflow_event(iid, "approval_received", data={"approver": "Me"})
        state = e.wait_for_workflow_completion(iid)
        assert orjson.loads(state.serialized_output) == \
            "Approved by 'Me' for namespace(cost=2000, product='MyProduct', quantity=1)"
        # The input is stored the way Dapr's SDK writes a dataclass.
        assert orjson.loads(state.serialized_input) == {"cost": 2000, "product": "MyProduct", "quantity": 1,
                                                         "__durabletask_autoobject__": True}

    def test_a_dataclass_input_can_be_changed_and_survives_continue_as_new(self):
        e = env()
        iid = e.schedule_new_workflow(status_monitor, input=JobStatus("job1", is_healthy=True))
        state = e.wait_for_workflow_completion(iid)
        assert state.runtime_status is WorkflowStatus.COMPLETED
        assert seen == [types.SimpleNamespace(job_id="job1", is_healthy=True),
                        types.SimpleNamespace(job_id="job1", is_healthy=False)]

    def test_pydantic_models_are_rebuilt_from_annotations_and_written_as_plain_json(self):
        e = env()
        iid = e.schedule_new_workflow(order_workflow, input=OrderRequest(order_id="O-100", amount=42.0))
        state = e.wait_for_workflow_completion(iid)
        assert seen == [OrderRequest(order_id="O-100", amount=42.0)]
        assert OrderResult.model_validate_json(state.serialized_output) == OrderResult(order_id="O-100",
                                                                                       approved=True)
        assert orjson.loads(state.serialized_input) == {"order_id": "O-100", "amount": 42.0}

    def test_a_plain_dict_input_is_rebuilt_too_as_a_dapr_client_in_another_language_sends_it(self):
        e = env()
        iid = e.schedule_new_workflow("order_workflow", input={"order_id": "O-7", "amount": 500})
        e.wait_for_workflow_completion(iid)
        assert seen == [OrderRequest(order_id="O-7", amount=500)]

    def test_an_input_that_does_not_fit_the_model_fails_the_workflow(self):
        e = env()
        iid = e.schedule_new_workflow("order_workflow", input={"amount": 1})
        state = e.wait_for_workflow_completion(iid)
        assert state.runtime_status is WorkflowStatus.FAILED
        assert state.failure_details is not None and "order_id" in state.failure_details.message


class Test_custom_status:
    def test_a_string_is_stored_as_written_not_json_quoted(self):
        e = env()
        iid = e.schedule_new_workflow(with_status)
        e.run()
        assert e.get_workflow_state(iid).serialized_custom_status == "waiting for approval"
        e.raise_workflow_event(iid, "go")
        assert e.wait_for_workflow_completion(iid).serialized_custom_status == ""


class Test_child_ids:
    def test_default_child_ids_are_daprs_parent_0001_then_the_next_action_number(self):
        e = env()
        iid = e.schedule_new_workflow(parent, instance_id="p")
        state = e.wait_for_workflow_completion(iid)
        # Actions: child (1), timer (2), child (3), as durabletask numbers them.
        assert orjson.loads(state.serialized_output) == ["p:0001", "p:0003"]
