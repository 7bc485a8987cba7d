"""Every workflow pattern, end to end on the real broker: engine, worker and client in one process."""

from __future__ import annotations

import uuid
from datetime import UTC

import orjson
import pytest

from engine import WorkflowStatus
from engine.client.dapr import DaprWorkflowClient
from engine.errors import InstanceExistsError, InstanceNotFoundError, InstanceNotTerminalError
from tests.helpers import eventually

pytestmark = pytest.mark.kafka

WAIT = 60


def output(state: object) -> object:
    assert state is not None
    text = state.serialized_output  # type: ignore[attr-defined]
    return None if text is None else orjson.loads(text)


def test_chain(client: DaprWorkflowClient) -> None:
    iid = client.schedule_new_workflow("chain", input="Ada")
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
    assert state is not None and state.runtime_status is WorkflowStatus.COMPLETED
    assert output(state) == "Hello, Hello, Hello, Ada!!!"
    assert orjson.loads(state.serialized_input or "null") == "Ada"


def test_fan_out_fan_in(client: DaprWorkflowClient) -> None:
    iid = client.schedule_new_workflow("fan_out", input=list(range(10)))
    assert output(client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)) == sum(n * n for n in range(10))


def test_parent_with_children(client: DaprWorkflowClient) -> None:
    iid = client.schedule_new_workflow("parent", input=["a", "b", "c"])
    result = output(client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT))
    assert result == [f"Hello, Hello, Hello, {n}!!!" for n in "abc"]
    # Children get Dapr's default IDs: parent ID, a colon, the action's number (from 1) in 4 hex digits.
    child = client.get_workflow_state(f"{iid}:0001")
    assert child is not None and child.runtime_status is WorkflowStatus.COMPLETED


def test_approval_event_and_timeout(client: DaprWorkflowClient) -> None:
    approved = client.schedule_new_workflow("order_approval", input={"id": 1, "amount": 5, "timeout_s": 60})
    client.wait_for_workflow_start(approved, timeout_in_seconds=WAIT)
    eventually(lambda: (s := client.get_workflow_state(approved)) is not None
               and s.serialized_custom_status == "waiting for approval")
    client.raise_workflow_event(approved, "approval", data=True)
    assert output(client.wait_for_workflow_completion(approved, timeout_in_seconds=WAIT))["status"] == "approved"  # type: ignore[index]

    timed_out = client.schedule_new_workflow("order_approval", input={"id": 2, "timeout_s": 0.5})
    result = output(client.wait_for_workflow_completion(timed_out, timeout_in_seconds=WAIT))
    assert result == {"order": 2, "status": "cancelled: no approval in time"}


def test_monitor_continues_as_new(client: DaprWorkflowClient) -> None:
    iid = client.schedule_new_workflow("monitor", input={"max_checks": 3, "interval_s": 0.2})
    assert output(client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)) == {"checks": 3, "healthy": True}


def test_retries_with_backoff(client: DaprWorkflowClient) -> None:
    recovered = client.schedule_new_workflow("retrying", input=2)
    assert output(client.wait_for_workflow_completion(recovered, timeout_in_seconds=WAIT)) == "ok after 3"
    exhausted = client.schedule_new_workflow("retrying", input=5)
    assert output(client.wait_for_workflow_completion(exhausted, timeout_in_seconds=WAIT)) == "gave up: attempt 3 fails"


def test_durable_timer_fires_on_time(client: DaprWorkflowClient) -> None:
    iid = client.schedule_new_workflow("sleeper", input=1.0)
    elapsed = output(client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT))
    # Never early. How late is the machine's scheduling (the turn's clock is the engine's when it
    # ran it), which a loaded CI machine stretches: the ceiling only rules out a lost firing.
    assert isinstance(elapsed, float) and 1.0 <= elapsed < WAIT


def test_events_before_and_after_the_wait(client: DaprWorkflowClient) -> None:
    iid = client.schedule_new_workflow("waiter", input=["first", "second"])
    client.wait_for_workflow_start(iid, timeout_in_seconds=WAIT)
    # "second" arrives before anyone waits for it and is kept; names compare case-insensitively.
    client.raise_workflow_event(iid, "SECOND", data=2)
    client.raise_workflow_event(iid, "first", data=1)
    assert output(client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)) == [1, 2]


def test_pause_buffers_events_until_resume(client: DaprWorkflowClient) -> None:
    iid = client.schedule_new_workflow("waiter", input=["go"])
    client.wait_for_workflow_start(iid, timeout_in_seconds=WAIT)
    client.pause_workflow(iid)
    eventually(lambda: client.get_workflow_state(iid).runtime_status is WorkflowStatus.SUSPENDED)  # type: ignore[union-attr]
    client.raise_workflow_event(iid, "go", data="held")
    # Wait until the engine has recorded the event (its state moves), then check it was held.
    eventually(lambda: client._view.states[iid].buffered_events == 1)
    assert client.get_workflow_state(iid).runtime_status is WorkflowStatus.SUSPENDED  # type: ignore[union-attr]
    client.resume_workflow(iid)
    assert output(client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)) == ["held"]


def test_terminate_is_recursive(client: DaprWorkflowClient) -> None:
    iid = client.schedule_new_workflow("tree", input=2)
    leaves = [f"{iid}:0001:0001", f"{iid}:0001:0002", f"{iid}:0002:0001", f"{iid}:0002:0002"]
    eventually(lambda: all((s := client.get_workflow_state(leaf)) is not None
                           and s.runtime_status is WorkflowStatus.RUNNING for leaf in leaves))
    client.terminate_workflow(iid)
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
    assert state is not None and state.runtime_status is WorkflowStatus.TERMINATED
    for leaf in leaves:
        leaf_state = client.wait_for_workflow_completion(leaf, timeout_in_seconds=WAIT)
        assert leaf_state is not None and leaf_state.runtime_status is WorkflowStatus.TERMINATED
    # Terminating a finished instance changes nothing.
    client.terminate_workflow(iid)
    assert client.get_workflow_state(iid).runtime_status is WorkflowStatus.TERMINATED  # type: ignore[union-attr]


def test_purge_is_recursive_and_refused_while_running(client: DaprWorkflowClient) -> None:
    running = client.schedule_new_workflow("waiter", input=["never"])
    client.wait_for_workflow_start(running, timeout_in_seconds=WAIT)
    with pytest.raises(InstanceNotTerminalError):
        client.purge_workflow(running)

    iid = client.schedule_new_workflow("parent", input=["x"])
    client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
    client.purge_workflow(iid)
    eventually(lambda: client.get_workflow_state(iid) is None and client.get_workflow_state(f"{iid}:0001") is None)
    with pytest.raises(InstanceNotFoundError):
        client.raise_workflow_event(iid, "x")


def test_start_over_running_refused_over_finished_replaces(client: DaprWorkflowClient) -> None:
    iid = f"reuse-{uuid.uuid4().hex[:8]}"
    client.schedule_new_workflow("waiter", input=["go"], instance_id=iid)
    client.wait_for_workflow_start(iid, timeout_in_seconds=WAIT)
    with pytest.raises(InstanceExistsError):
        client.schedule_new_workflow("chain", input="x", instance_id=iid)
    client.raise_workflow_event(iid, "go", data=1)
    client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
    client.schedule_new_workflow("chain", input="again", instance_id=iid)
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
    assert state is not None and state.name == "chain" and output(state) == "Hello, Hello, Hello, again!!!"


def test_unknown_workflow_fails_naming_it(client: DaprWorkflowClient) -> None:
    iid = client.schedule_new_workflow("no_such_workflow")
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
    assert state is not None and state.runtime_status is WorkflowStatus.FAILED
    assert state.failure_details is not None and "no_such_workflow" in state.failure_details.message
    assert state.serialized_output is None


def test_unknown_activity_fails_the_task_naming_it(client: DaprWorkflowClient) -> None:
    iid = client.schedule_new_workflow("missing_activity")
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
    assert state is not None and state.runtime_status is WorkflowStatus.FAILED
    assert state.failure_details is not None and "no_such_activity" in state.failure_details.message


def test_start_at_schedules_the_start(client: DaprWorkflowClient) -> None:
    from datetime import datetime, timedelta

    # PENDING lasts until `due`: long enough that the start call returns (it waits for the engine to
    # apply it) and the check below sees it, on a loaded machine too.
    due = datetime.now(UTC) + timedelta(seconds=6)
    iid = client.schedule_new_workflow("chain", input="later", start_at=due)
    eventually(lambda: client._view.states[iid].status.value == "PENDING")
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
    assert state is not None and output(state) == "Hello, Hello, Hello, later!!!"
    started = client._view.states[iid].created_at
    assert started is not None and started >= due


def test_the_same_command_twice_applies_once(client: DaprWorkflowClient, settings: object) -> None:
    import asyncio

    from aiokafka import AIOKafkaProducer

    from engine.core.codec import encode
    from engine.core.commands import RaiseEvent
    from engine.topics import Topics

    iid = client.schedule_new_workflow("waiter", input=["a", "a"])
    client.wait_for_workflow_start(iid, timeout_in_seconds=WAIT)
    twice = RaiseEvent(instance_id=iid, command_id="same-id", name="a", input="1")

    async def send() -> None:
        producer = AIOKafkaProducer(**settings.client_kwargs())  # type: ignore[attr-defined]
        await producer.start()
        try:
            for _ in range(2):
                await producer.send_and_wait(Topics.for_settings(settings).commands, encode(twice),  # type: ignore[arg-type]
                                             key=iid.encode())
        finally:
            await producer.stop()

    asyncio.run(send())
    client.raise_workflow_event(iid, "a", data=2)
    # Had the duplicate applied, the second wait would have received 1 again.
    assert output(client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)) == [1, 2]


def test_payloads_near_the_limit_flow_through(client: DaprWorkflowClient) -> None:
    big = "x" * 900_000  # under the 1 MiB default limit; input and output together pass 1 MB
    iid = client.schedule_new_workflow("chain", input=big)
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
    assert state is not None and state.runtime_status is WorkflowStatus.COMPLETED
    assert output(state) == f"Hello, Hello, Hello, {big}!!!"
