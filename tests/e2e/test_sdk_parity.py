"""Dapr Python SDK parity on the real broker (issue 13): what Dapr's own examples rely on.

Typed inputs, custom status as written, Dapr's default child IDs, the async client, a client's
reads seeing its own commands, and no warnings from a client that is never closed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
import textwrap
import types
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import orjson
import pydantic
import pytest

from engine import (
    DaprWorkflowContext,
    PropagationScope,
    WorkflowActivityContext,
    WorkflowRuntime,
    WorkflowStatus,
    when_any,
)
from engine.aio import DaprWorkflowClient as AsyncClient
from engine.client.dapr import DaprWorkflowClient
from engine.runtime.host import RuntimeHost
from engine.settings import Settings

pytestmark = pytest.mark.kafka

WAIT = 60
REPO = Path(__file__).resolve().parents[2]

wfr = WorkflowRuntime()


@dataclasses.dataclass
class Order:
    cost: float
    product: str
    quantity: int


class OrderRequest(pydantic.BaseModel):
    order_id: str
    amount: float


class OrderResult(pydantic.BaseModel):
    order_id: str
    approved: bool


@wfr.activity(name="parity_describe")
def describe(ctx: WorkflowActivityContext, order: Order) -> str:
    assert isinstance(order, types.SimpleNamespace)  # as in Dapr
    return f"{order.product} x{order.quantity} at {order.cost}"


@wfr.workflow(name="parity_purchase")
def purchase(ctx: DaprWorkflowContext, order: Order):
    if order.cost < 1000:
        return "Auto-approved"
    described = yield ctx.call_activity(describe, input=order)
    ctx.set_custom_status("waiting for approval")
    approval = ctx.wait_for_external_event("approval_received")
    timeout = ctx.create_timer(timedelta(hours=24))
    if (yield when_any([approval, timeout])) == timeout:
        return "Cancelled"
    ctx.set_custom_status("approved")
    return {"described": described, "approver": approval.get_result().approver}


@wfr.activity(name="parity_approve")
def approve(ctx: WorkflowActivityContext, order: OrderRequest) -> OrderResult:
    return OrderResult(order_id=order.order_id, approved=order.amount <= 100)


@wfr.workflow(name="parity_model")
def model_workflow(ctx: DaprWorkflowContext, order: OrderRequest):
    raw = yield ctx.call_activity(approve, input=order)
    return OrderResult.model_validate(raw)


@wfr.workflow(name="parity_leaf")
def leaf(ctx: DaprWorkflowContext):
    return ctx.instance_id


@wfr.workflow(name="parity_parent")
def parent(ctx: DaprWorkflowContext):
    first = yield ctx.call_child_workflow(leaf)
    second = yield ctx.call_child_workflow(leaf)
    return [first, second]


@wfr.workflow(name="parity_gate")
def gate(ctx: DaprWorkflowContext):
    value = yield ctx.wait_for_external_event("go")
    return value


@wfr.activity(name="parity_validate")
def validate(ctx: WorkflowActivityContext, merchant: str) -> dict[str, object]:
    return {"merchant_id": merchant, "valid": True}


@wfr.activity(name="parity_audit")
def audit(ctx: WorkflowActivityContext, _: None) -> list[str]:
    history = ctx.get_propagated_history()
    return [] if history is None else [f"{w.name}:{w.get_last_activity_by_name('parity_validate').output}"
                                       for w in history.get_workflows() if w.get_activities_by_name("parity_validate")]


@wfr.workflow(name="parity_payment")
def payment(ctx: DaprWorkflowContext, _: None):
    history = ctx.get_propagated_history()
    parent_output = history.get_last_workflow_by_name("parity_checkout").get_last_activity_by_name(
        "parity_validate").output if history is not None else None
    audited = yield ctx.call_activity(audit, propagation=PropagationScope.LINEAGE)
    return {"parent_validate": parent_output, "audit": audited}


@wfr.workflow(name="parity_checkout")
def checkout(ctx: DaprWorkflowContext, merchant: str):
    yield ctx.call_activity(validate, input=merchant)
    return (yield ctx.call_child_workflow(payment, propagation=PropagationScope.OWN_HISTORY))


@pytest.fixture(scope="module")
def host(settings: Settings) -> Iterator[RuntimeHost]:
    host = RuntimeHost(wfr.registry, settings)
    host.start(timeout=90)
    yield host
    host.stop()


def test_dataclass_inputs_events_and_custom_status_as_in_human_approval(client: DaprWorkflowClient) -> None:
    iid = client.schedule_new_workflow(purchase, input=Order(2000, "MyProduct", 1))
    state = client.wait_for_workflow_start(iid, timeout_in_seconds=WAIT)
    assert state is not None
    # The input as Dapr's SDK writes a dataclass.
    stored = client.get_workflow_state(iid)
    assert stored is not None and orjson.loads(stored.serialized_input or "") == {
        "cost": 2000, "product": "MyProduct", "quantity": 1, "__durabletask_autoobject__": True}
    # The event data is a SimpleNamespace in the workflow, as in Dapr (attribute access).
    client.raise_workflow_event(iid, "approval_received", data=types.SimpleNamespace(approver="Me"))
    done = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
    assert done is not None and done.runtime_status is WorkflowStatus.COMPLETED, done
    assert orjson.loads(done.serialized_output or "") == {"described": "MyProduct x1 at 2000", "approver": "Me"}
    assert done.serialized_custom_status == "approved"  # as written, not JSON-quoted


def test_pydantic_inputs_are_rebuilt_and_outputs_are_plain_json(client: DaprWorkflowClient) -> None:
    iid = client.schedule_new_workflow(model_workflow, input=OrderRequest(order_id="O-100", amount=42.0))
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
    assert state is not None and state.runtime_status is WorkflowStatus.COMPLETED, state
    assert OrderResult.model_validate_json(state.serialized_output or "") == OrderResult(order_id="O-100",
                                                                                         approved=True)
    assert orjson.loads(state.serialized_input or "") == {"order_id": "O-100", "amount": 42.0}


def test_default_child_ids_are_daprs(client: DaprWorkflowClient) -> None:
    iid = client.schedule_new_workflow(parent)
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
    assert state is not None and orjson.loads(state.serialized_output or "") == [f"{iid}:0001", f"{iid}:0002"]


def test_history_propagates_to_a_child_and_through_lineage_to_its_activity(client: DaprWorkflowClient) -> None:
    iid = client.schedule_new_workflow(checkout, input="merchant-42")
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
    assert state is not None and state.runtime_status is WorkflowStatus.COMPLETED, state
    validated = '{"merchant_id": "merchant-42", "valid": true}'  # the activity's result, as Dapr writes it
    assert orjson.loads(state.serialized_output or "") == {
        "parent_validate": validated, "audit": [f"parity_checkout:{validated}"]}


def test_every_command_is_seen_by_the_next_read_of_the_same_client(client: DaprWorkflowClient) -> None:
    iid = client.schedule_new_workflow(gate)
    client.wait_for_workflow_start(iid, timeout_in_seconds=WAIT)
    # No waiting between a command and the read: the read must show the command's effect.
    client.pause_workflow(iid)
    assert client.get_workflow_state(iid).runtime_status is WorkflowStatus.SUSPENDED  # type: ignore[union-attr]
    client.raise_workflow_event(iid, "go", data=7)
    assert client._view.states[iid].buffered_events == 1  # held for the resume
    client.resume_workflow(iid)
    assert client.get_workflow_state(iid).runtime_status in (  # type: ignore[union-attr]
        WorkflowStatus.RUNNING, WorkflowStatus.COMPLETED)  # the held event may complete it at once
    client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
    client.purge_workflow(iid)
    assert client.get_workflow_state(iid) is None

    other = client.schedule_new_workflow(gate)
    client.terminate_workflow(other)
    assert client.get_workflow_state(other).runtime_status is WorkflowStatus.TERMINATED  # type: ignore[union-attr]
    # Commands the engine ignores return too (nothing to wait for): pause and resume of a finished one.
    client.pause_workflow(other)
    client.resume_workflow(other)
    assert client.get_workflow_state(other).runtime_status is WorkflowStatus.TERMINATED  # type: ignore[union-attr]


def test_the_async_client_has_every_method_of_the_sync_one(host: RuntimeHost, settings: Settings) -> None:
    public = {n for n in dir(DaprWorkflowClient) if not n.startswith("_")} - {"settings", "topics"}
    assert public <= {n for n in dir(AsyncClient) if not n.startswith("_")}

    client = AsyncClient(settings=settings)

    async def main() -> list[object]:
        seen: list[object] = []
        iid = await client.schedule_new_workflow(gate, instance_id=f"aio-{uuid.uuid4().hex[:8]}")
        seen.append((await client.wait_for_workflow_start(iid, timeout_in_seconds=WAIT)).runtime_status)  # type: ignore[union-attr]
        await client.pause_workflow(iid)
        seen.append((await client.get_workflow_state(iid)).runtime_status)  # type: ignore[union-attr]
        await client.resume_workflow(iid)
        seen.append((await client.get_workflow_state(iid)).runtime_status)  # type: ignore[union-attr]
        await client.raise_workflow_event(iid, "go", data="x")
        done = await client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
        seen.append((done.runtime_status, done.serialized_output))  # type: ignore[union-attr]
        await client.purge_workflow(iid)
        seen.append(await client.get_workflow_state(iid))
        other = await client.schedule_new_workflow("parity_gate")
        await client.terminate_workflow(other, output="stop")
        seen.append((await client.get_workflow_state(other)).runtime_status)  # type: ignore[union-attr]
        return seen

    assert asyncio.run(main()) == [
        WorkflowStatus.RUNNING, WorkflowStatus.SUSPENDED, WorkflowStatus.RUNNING,
        (WorkflowStatus.COMPLETED, '"x"'), None, WorkflowStatus.TERMINATED,
    ]

    async def again() -> object:  # the same client from another event loop, then closed
        async with client:
            return await client.get_workflow_state("parity-none")

    assert asyncio.run(again()) is None


PROGRAM = """
import asyncio, gc
from engine import WorkflowRuntime, DaprWorkflowClient
from engine.aio import DaprWorkflowClient as AsyncClient

wfr = WorkflowRuntime()

@wfr.workflow(name="hello")
def hello(ctx, name):
    return f"Hello, {name}!"

def main():
    # As in Dapr's examples: the client lives in main() and is never closed, so it is garbage
    # when main returns (an unclosed producer then complained from the still-running loop).
    client = DaprWorkflowClient()
    iid = client.schedule_new_workflow(hello, input="Ada")
    print(client.wait_for_workflow_completion(iid, timeout_in_seconds=60).serialized_output, flush=True)

async def amain():
    aclient = AsyncClient()
    other = await aclient.schedule_new_workflow(hello, input="Bob")
    print((await aclient.wait_for_workflow_completion(other, timeout_in_seconds=60)).serialized_output, flush=True)

wfr.start()
kept = DaprWorkflowClient()  # and one alive until the interpreter exits
main()
asyncio.run(amain())
gc.collect()
print(kept.get_workflow_state("nothing-here"), flush=True)
wfr.shutdown()
"""


def test_a_program_that_never_closes_its_clients_exits_without_warnings(settings: Settings) -> None:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
           "HEADRACE_TOPIC_PREFIX": f"unclosed-{uuid.uuid4().hex[:8]}.", "HEADRACE_PARTITIONS": "2",
           "PYTHONWARNINGS": "default", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(PROGRAM)], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=WAIT * 2)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ['"Hello, Ada!"', '"Hello, Bob!"', "None"]
    for complaint in ("Unclosed", "Task was destroyed", "Task exception was never retrieved", "ResourceWarning"):
        assert complaint not in done.stderr, done.stderr


FAKE_EXAMPLE = """
import dapr.ext.workflow as wf
from dapr.clients import DaprClient

wfr = wf.WorkflowRuntime()


@wfr.workflow(name='greet')
def greet(ctx: wf.DaprWorkflowContext, name: str):
    approval = yield ctx.wait_for_external_event('ok')
    return f'Hello, {name} ({approval["by"]})!'


if __name__ == '__main__':
    wfr.start()
    client = wf.DaprWorkflowClient()
    iid = client.schedule_new_workflow(workflow=greet, input='Ada')
    with DaprClient() as d:
        d.raise_workflow_event(instance_id=iid, workflow_component='dapr', event_name='ok', event_data={'by': 'Me'})
    print(client.wait_for_workflow_completion(iid, timeout_in_seconds=60).serialized_output, flush=True)
    wfr.shutdown()
"""

FAKE_README = """
<!--STEP
name: greet
expected_stdout_lines:
  - '"Hello, Ada (Me)!"'
-->
```sh
dapr run --app-id greet -- python3 greet.py
```
<!--END_STEP-->

<!--STEP
name: wrong
expected_stdout_lines:
  - 'a line it never prints'
-->
```sh
dapr run --app-id wrong -- python3 wrong.py
```
<!--END_STEP-->
"""


def test_the_examples_script_runs_a_checkout_with_only_imports_changed(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ops.dapr_examples import main

    examples = tmp_path / "python-sdk/examples/workflow"
    examples.mkdir(parents=True)
    (examples / "README.md").write_text(FAKE_README)
    (examples / "greet.py").write_text(FAKE_EXAMPLE)
    (examples / "wrong.py").write_text("import dapr.ext.workflow as wf\nprint(wf.WorkflowStatus.COMPLETED)\n")
    code = main([str(tmp_path / "python-sdk"), "--bootstrap-servers", settings.bootstrap_servers,
                 "--scratch", str(tmp_path / "scratch"), "--timeout", str(WAIT * 2)])
    out = capsys.readouterr().out
    assert code == 1, out  # one example fails, so the run does
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in out.splitlines() if line.startswith("| ") and not line.startswith("| example")}
    assert rows["greet"] == ["1/1", "README", "0", rows["greet"][3], "pass"], out
    assert rows["wrong"][0] == "0/1" and rows["wrong"][-1] == "FAIL", out
    assert "wrong: missing 'a line it never prints'" in out
    assert (tmp_path / "scratch/examples/greet.py").read_text().startswith("\nimport engine as wf\n"
                                                                          "from engine.client.dapr_client import")
