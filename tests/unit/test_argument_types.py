"""Wrong types from workflow code or in the engine's own records fail the same way in the pure and
the native build (`ops.native`): the checks are made in Python, before the compiled modules' typed
parameters would raise mypyc's TypeError of their own (run on both builds by `ops/dev test`)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from engine import WorkflowRuntime, WorkflowStatus
from engine.errors import DecodeError
from engine.testing import WorkflowTestEnvironment
from engine.wire.records import decode_chunk, decode_events, decode_positions, decode_workflow_item

wfr = WorkflowRuntime()


@wfr.activity
def echo(ctx: Any, value: Any) -> Any:
    return value


@wfr.workflow
def misuse(ctx: Any, how: str) -> Any:
    if how == "retry_policy":
        return (yield ctx.call_activity(echo, input=1, retry_policy="three times"))
    if how == "activity app_id":
        return (yield ctx.call_activity(echo, input=1, app_id=5))
    if how == "child app_id":
        return (yield ctx.call_child_workflow(misuse, input="x", app_id=b"billing"))
    if how == "child instance_id":
        return (yield ctx.call_child_workflow(misuse, input="x", instance_id=123))
    if how == "event name":
        return (yield ctx.wait_for_external_event(123))
    if how == "patch name":
        return ctx.is_patched(None)
    raise AssertionError(how)


@wfr.workflow
def again(ctx: Any, n: int) -> Any:
    if n < 2:
        ctx.continue_as_new(n + 1, save_events=1)  # truthy, as Dapr's SDK (a Python bool check) allows
        return None
    return n


@pytest.mark.parametrize(("how", "error"), [
    ("retry_policy", "TypeError: retry_policy must be a RetryPolicy, got str"),
    ("activity app_id", "TypeError: app_id must be a str, got int"),
    ("child app_id", "TypeError: app_id must be a str, got bytes"),
    ("child instance_id", "child instance ID must be a string, got int"),
    ("event name", "TypeError: the event name must be a str, got int"),
    ("patch name", "TypeError: the patch name must be a str, got NoneType"),
])
def test_a_wrong_argument_type_fails_the_workflow_with_its_own_message(how: str, error: str) -> None:
    env = WorkflowTestEnvironment(wfr)
    iid = env.schedule_new_workflow(misuse, input=how)
    state = env.wait_for_workflow_completion(iid)
    assert state is not None and state.runtime_status is WorkflowStatus.FAILED
    details = state.failure_details
    assert details is not None
    assert error in f"{details.error_type}: {details.message}"


def test_continue_as_new_takes_any_truthy_save_events() -> None:
    env = WorkflowTestEnvironment(wfr)
    iid = env.schedule_new_workflow(again, input=0)
    state = env.wait_for_workflow_completion(iid)
    assert state is not None and state.runtime_status is WorkflowStatus.COMPLETED
    assert state.serialized_output == "2"


@pytest.mark.parametrize("decode", [decode_chunk, decode_events])
@pytest.mark.parametrize("field", ["instance_id", "execution_id"])
def test_a_history_record_with_a_non_string_id_is_refused(decode: Any, field: str) -> None:
    record = {"instance_id": "i", "execution_id": "e", "events": [], field: None}
    with pytest.raises(DecodeError, match=f"{field} is a NoneType, not a string"):
        decode(orjson.dumps(record))


@pytest.mark.parametrize("field", ["instance_id", "name", "turn", "workflow_version"])
def test_a_workflow_item_with_a_field_of_the_wrong_type_is_refused(field: str) -> None:
    item = {"type": "WorkflowWorkItem", "instance_id": "i", "execution_id": "e", "name": "w", "turn": 1,
            "new_from": 0, "workflow_version": None, "events": [], field: [1]}
    with pytest.raises(DecodeError, match="WorkflowWorkItem: a field has the wrong type"):
        decode_workflow_item(orjson.dumps(item))


def test_a_positions_header_without_a_value_is_refused() -> None:
    # Kafka headers may have no value (aiokafka gives None): a restore must read that as a broken
    # record (DecodeError, which it skips), not crash on it.
    with pytest.raises(DecodeError, match="without a value"):
        decode_positions(None)


@wfr.workflow
def waits(ctx: Any, _: Any) -> Any:
    return (yield ctx.wait_for_external_event("go"))


def test_a_client_raising_an_event_by_a_name_of_another_type_is_told_at_once() -> None:
    env = WorkflowTestEnvironment(wfr)
    iid = env.schedule_new_workflow(waits)
    env.run()
    with pytest.raises(TypeError, match="the event name must be a str, got int"):
        env.raise_workflow_event(iid, 123)  # type: ignore[arg-type]
    env.raise_workflow_event(iid, "go", data=1)
    state = env.wait_for_workflow_completion(iid)
    assert state.serialized_output == "1"


def test_terminate_takes_any_truthy_recursive() -> None:
    env = WorkflowTestEnvironment(wfr)
    iid = env.schedule_new_workflow(waits)
    env.run()
    env.terminate_workflow(iid, recursive=None)  # type: ignore[arg-type]
    state = env.get_workflow_state(iid)
    assert state is not None and state.runtime_status is WorkflowStatus.TERMINATED
