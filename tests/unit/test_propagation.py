"""History propagation (Dapr's PropagationScope), in the in-memory engine: what a callee sees."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from engine import (
    DaprWorkflowContext,
    PropagationNotFoundError,
    PropagationScope,
    WorkflowActivityContext,
    WorkflowRuntime,
    WorkflowStatus,
)
from engine.core import events as ev
from engine.testing import WorkflowTestEnvironment

wfr = WorkflowRuntime()
seen: dict[str, Any] = {}


@wfr.activity(name="validate")
def validate(ctx: WorkflowActivityContext, merchant: str) -> dict[str, Any]:
    return {"merchant_id": merchant, "valid": True}


@wfr.activity(name="audit")
def audit(ctx: WorkflowActivityContext, _: None) -> list[str]:
    history = ctx.get_propagated_history()
    assert history is not None
    seen["audit"] = history
    return [w.name for w in history.get_workflows()]


@wfr.activity(name="plain")
def plain(ctx: WorkflowActivityContext, _: None) -> bool:
    return ctx.get_propagated_history() is None


@wfr.workflow(name="payment")
def payment(ctx: DaprWorkflowContext, _: None):
    history = ctx.get_propagated_history()
    assert history is not None
    seen["payment"] = history
    parent = history.get_workflows()[-1]
    merchant = orjson.loads(parent.get_last_activity_by_name("validate").output or "{}")["merchant_id"]
    chain = yield ctx.call_activity(audit, propagation=PropagationScope.LINEAGE)
    own_only = yield ctx.call_activity(audit, propagation=PropagationScope.OWN_HISTORY)
    return {"merchant": merchant, "lineage": chain, "own": own_only}


@wfr.workflow(name="checkout")
def checkout(ctx: DaprWorkflowContext, merchant: str):
    yield ctx.call_activity(validate, input=merchant)
    paid = yield ctx.call_child_workflow(payment, propagation=PropagationScope.OWN_HISTORY)
    untouched = yield ctx.call_activity(plain)
    return {"paid": paid, "plain_has_none": untouched, "mine": ctx.get_propagated_history() is None}


@pytest.fixture(params=[1000, 0], ids=["sticky", "replay-every-turn"])
def env(request: pytest.FixtureRequest) -> WorkflowTestEnvironment:
    seen.clear()
    return WorkflowTestEnvironment(wfr, cache_size=request.param)


def test_a_child_and_its_activity_see_the_history_their_callers_handed_on(env: WorkflowTestEnvironment) -> None:
    iid = env.schedule_new_workflow(checkout, input="merchant-42")
    state = env.wait_for_workflow_completion(iid)
    assert state.runtime_status is WorkflowStatus.COMPLETED, state.failure_details
    assert orjson.loads(state.serialized_output or "") == {
        # The child read the parent's validate result; LINEAGE gave its activity both chunks (ancestor
        # first), OWN_HISTORY only the child's own; a call without propagation got none.
        "paid": {"merchant": "merchant-42", "lineage": ["checkout", "payment"], "own": ["payment"]},
        "plain_has_none": True, "mine": True,
    }
    child = seen["payment"]
    assert child.scope is PropagationScope.OWN_HISTORY
    assert child.get_app_ids() == ["headrace"]
    parent = child.get_last_workflow_by_name("checkout")
    assert parent.instance_id == iid
    validated = parent.get_last_activity_by_name("validate")
    assert (validated.started, validated.completed, validated.failed) == (True, True, False)
    assert validated.input == '"merchant-42"'
    assert orjson.loads(validated.output or "") == {"merchant_id": "merchant-42", "valid": True}
    assert child.get_events_by_instance_id(iid) == child.events
    assert any(isinstance(e, ev.TaskCompleted) for e in child.get_events_by_workflow_name("checkout"))
    with pytest.raises(PropagationNotFoundError):
        parent.get_last_activity_by_name("never_called")
    with pytest.raises(PropagationNotFoundError):
        child.get_last_workflow_by_name("nobody")


def test_the_child_keeps_what_it_received_in_its_history(env: WorkflowTestEnvironment) -> None:
    iid = env.schedule_new_workflow(checkout, input="m-1")
    env.wait_for_workflow_completion(iid)
    started = next(e for e in env.history(f"{iid}:0002") if isinstance(e, ev.ExecutionStarted))
    assert started.propagated_history is not None  # so a replay after a restart reads the same history
    # A handed-on chunk holds the caller's events only: not what the caller itself received.
    lineage = seen["audit"]
    assert [w.name for w in lineage.get_workflows()] == ["payment"]  # the last audit call was OWN_HISTORY
    child_chunk_start = next(e for e in lineage.events if isinstance(e, ev.ExecutionStarted))
    assert child_chunk_start.propagated_history is None
