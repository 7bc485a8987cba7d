"""The status record: written and read by the codec, readable as it was written before the codec."""

from __future__ import annotations

from dataclasses import replace

import orjson
import pytest
from samples import STATES

from engine.core.state import InstanceState
from engine.core.values import TERMINAL_STATUSES, RuntimeStatus
from engine.errors import DecodeError
from engine.wire.records import STATES as STATES_CODEC
from engine.wire.records import StateSummary, decode_partial_state, decode_state, encode_state, summarize_state

#: A status record as the hand-written encoder wrote it before the codec did (same fields, another
#: order, mapping keys written by orjson's OPT_NON_STR_KEYS): records already on the topic.
BEFORE_THE_CODEC = (
    b'{"type":"InstanceState","version":1,"instance_id":"order-1:0004","name":"order_wf","status":"RUNNING",'
    b'"execution_id":"exec-2","run_id":"exec-1","input":"{\\"id\\":1}","output":null,"custom_status":'
    b'"\\"step 2\\"","failure":{"error_type":"TaskFailedError","message":"Activity task \'charge\' #3 failed: '
    b'card declined","stack_trace":"Traceback (most recent call last):\\n  File \\"x.py\\", line 1\\nValueError: '
    b'card declined\\n","inner":{"error_type":"ValueError","message":"card declined","stack_trace":null,'
    b'"inner":null,"non_retriable":true},"non_retriable":false},"created_at":"2026-03-04T05:06:07.890123+00:00",'
    b'"last_updated_at":"2026-03-04T05:11:07.890123+00:00","completed_at":null,"parent":{"instance_id":"order-1",'
    b'"name":"order_wf","task_scheduled_id":4,"execution_id":"exec-1"},"history_length":12,"generation":1,'
    b'"pending_tasks":{"0":"charge","3":"ship"},"pending_timers":{"1":"2026-03-04T05:11:07.890123+00:00"},'
    b'"pending_children":{"2":"order-1:0004:0003"},"buffered_events":1,"children":["order-1:0004:0003"],'
    b'"recent_commands":["c-1","c-2"],"scheduled_start":"2026-03-04T05:06:07.890123+00:00",'
    b'"unfinished_children":{"5":"order-1:0004:0006"}}'
)


def test_a_record_written_before_the_codec_reads_the_same() -> None:
    assert decode_state(BEFORE_THE_CODEC) == STATES[0]
    # Fields added since are written with their defaults (`waiting_for_code`: engine.core.unknown_code;
    # `workflow_version`: Dapr 1.17 workflow versions; `early_events`, `starts_suspended`: commands
    # sent to a PENDING instance; `propagated_history`: a PENDING start's handed-on history;
    # `child_apps` and the parent's `app_id`: calls across apps, engine.core.apps).
    before = orjson.loads(BEFORE_THE_CODEC)
    assert orjson.loads(encode_state(STATES[0])) == {**before, "waiting_for_code": None,
                                                     "workflow_version": None, "early_events": [],
                                                     "starts_suspended": False, "propagated_history": None,
                                                     "child_apps": [], "parent": {**before["parent"], "app_id": None},
                                                         "remote": None}


def test_a_record_older_than_the_newest_fields_reads_with_their_defaults() -> None:
    wire = orjson.loads(BEFORE_THE_CODEC)
    for newer in ("recent_commands", "scheduled_start", "unfinished_children"):
        del wire[newer]
    state = decode_state(orjson.dumps(wire))
    assert state.recent_commands == () and state.scheduled_start is None and dict(state.unfinished_children) == {}


def test_mapping_values_are_read_only_with_integer_keys() -> None:
    state = decode_state(encode_state(STATES[0]))
    assert dict(state.pending_tasks) == {0: "charge", 3: "ship"}
    with pytest.raises(TypeError):
        state.pending_tasks[9] = "x"  # type: ignore[index]


@pytest.mark.parametrize("key", ["x", "1.5", " 1", "1\n", "", "+1"])
def test_a_mapping_key_that_is_not_an_integer_is_refused(key: str) -> None:
    wire = orjson.loads(encode_state(InstanceState(instance_id="a")))
    wire["pending_tasks"] = {key: "charge"}
    with pytest.raises(DecodeError, match="pending_tasks: key"):
        decode_state(orjson.dumps(wire))


def test_one_terminal_set() -> None:
    assert {s for s in RuntimeStatus if s.is_terminal} == TERMINAL_STATUSES
    terminal = {RuntimeStatus.COMPLETED, RuntimeStatus.FAILED, RuntimeStatus.TERMINATED, RuntimeStatus.CANCELED}
    assert terminal == TERMINAL_STATUSES


@pytest.mark.parametrize("state", [
    *STATES,
    InstanceState(instance_id="a"),  # no name, no times
    InstanceState(instance_id="b", status=RuntimeStatus.RUNNING, waiting_for_code=STATES[0].created_at),
    InstanceState(instance_id="c", status=RuntimeStatus.COMPLETED, waiting_for_code=STATES[0].created_at),
], ids=lambda s: s.instance_id)
def test_the_summary_is_what_the_whole_state_shows(state: InstanceState) -> None:
    summary = summarize_state(encode_state(state))
    assert summary == StateSummary(shown_status=state.shown_status, name=state.name, created_at=state.created_at,
                                   last_updated_at=state.last_updated_at)


def test_the_summary_of_a_record_written_before_the_codec() -> None:
    assert summarize_state(BEFORE_THE_CODEC) == StateSummary(
        shown_status=RuntimeStatus.RUNNING, name="order_wf", created_at=STATES[0].created_at,
        last_updated_at=STATES[0].last_updated_at)


@pytest.mark.parametrize(("change", "error"), [
    ({"type": "StartWorkflow"}, "unknown message type"),
    ({"version": 2}, "unsupported schema version"),
    ({"status": "DONE"}, r"InstanceState.status: 'DONE' is not one of"),
    ({"name": 7}, "InstanceState.name: expected a string"),
    ({"created_at": "yesterday"}, "InstanceState.created_at: 'yesterday' is not an RFC 3339"),
    ({"waiting_for_code": 1}, "InstanceState.waiting_for_code: expected an RFC 3339"),
])
def test_the_summary_checks_the_fields_it_reads(change: dict[str, object], error: str) -> None:
    wire = {**orjson.loads(encode_state(STATES[0])), **change}
    with pytest.raises(DecodeError, match=error):
        summarize_state(orjson.dumps(wire))


def test_the_summary_does_not_read_the_other_fields() -> None:
    # What the status index relies on to read as absent a row the whole decode refuses.
    wire = orjson.loads(encode_state(STATES[0]))
    wire["pending_tasks"] = {"x": "charge"}
    assert summarize_state(orjson.dumps(wire)).name == "order_wf"
    with pytest.raises(DecodeError):
        decode_state(orjson.dumps(wire))


def test_decoding_some_fields_gives_defaults_and_needs_the_required_ones() -> None:
    wire = orjson.loads(encode_state(STATES[0]))
    del wire["status"], wire["instance_id"]
    assert STATES_CODEC.decode_fields(orjson.dumps(wire), ["status", "name"]) == {
        "status": RuntimeStatus.PENDING, "name": "order_wf"}
    with pytest.raises(DecodeError, match="missing required field"):
        STATES_CODEC.decode_fields(orjson.dumps(wire), ["instance_id"])


def test_a_partial_state_has_the_fields_asked_for_and_defaults_elsewhere() -> None:
    done = replace(STATES[0], status=RuntimeStatus.COMPLETED, output='"shipped"',
                   completed_at=STATES[0].last_updated_at)
    fields = ("status", "created_at", "completed_at", "output")
    partial = decode_partial_state(encode_state(done), fields)
    assert partial == InstanceState(instance_id=done.instance_id, status=RuntimeStatus.COMPLETED,
                                    created_at=done.created_at, completed_at=done.completed_at, output='"shipped"')
    assert partial.name == "" != done.name  # not asked for: the default


def test_a_partial_state_checks_what_it_reads_and_only_that() -> None:
    wire = orjson.loads(encode_state(STATES[0]))
    with pytest.raises(DecodeError, match=r"InstanceState\.output: expected a string"):
        decode_partial_state(orjson.dumps({**wire, "output": 3}), ("output",))
    with pytest.raises(DecodeError, match="missing required field"):
        decode_partial_state(orjson.dumps({k: v for k, v in wire.items() if k != "instance_id"}), ("status",))
    assert decode_partial_state(orjson.dumps({**wire, "pending_tasks": 1}), ("status",)).status == STATES[0].status
