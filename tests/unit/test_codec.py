"""The codec: every event, action and message type round-trips; malformed input fails clearly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest
from samples import ACTIONS, EVENTS, FAILURE, MESSAGES, STATES, T

from engine.core import events as ev
from engine.core.actions import ACTION_TYPES, CompleteWorkflow
from engine.core.codec import Codec, encode, field_names, to_jsonable
from engine.core.commands import MESSAGE_TYPES, ActivityWorkItem
from engine.core.events import EVENT_TYPES
from engine.core.state import InstanceState
from engine.core.values import RuntimeStatus
from engine.errors import DecodeError

EVENT_CODEC = Codec(EVENT_TYPES)
ACTION_CODEC = Codec(ACTION_TYPES)
MESSAGE_CODEC = Codec((*MESSAGE_TYPES, ActivityWorkItem))
STATE_CODEC = Codec((InstanceState,))

CASES = (
    [(EVENT_CODEC, v) for v in EVENTS]
    + [(ACTION_CODEC, v) for v in ACTIONS]
    + [(MESSAGE_CODEC, v) for v in MESSAGES]
    + [(STATE_CODEC, v) for v in STATES]
)


def test_samples_cover_every_type():
    assert {type(v) for v in EVENTS} == set(EVENT_TYPES)
    assert {type(v) for v in ACTIONS} == set(ACTION_TYPES)
    assert {type(v) for v in MESSAGES} == {*MESSAGE_TYPES, ActivityWorkItem}


@pytest.mark.parametrize(("codec", "value"), CASES, ids=lambda v: type(v).__name__)
class Test_round_trip:
    def test_bytes(self, codec, value):
        assert codec.decode(encode(value)) == value

    def test_text_and_mapping(self, codec, value):
        assert codec.decode(encode(value).decode()) == value
        assert codec.decode(orjson.loads(encode(value))) == value

    def test_wire_form_is_flat_with_type_and_version(self, codec, value):
        wire = orjson.loads(encode(value))
        assert wire["type"] == type(value).__name__
        assert wire["version"] == 1
        assert set(wire) == {"type", "version", *field_names(type(value))}

    def test_decoded_value_has_exact_types(self, codec, value):
        decoded = codec.decode(encode(value))
        for name in field_names(type(value)):
            assert type(getattr(decoded, name)) is type(getattr(value, name)), name


class Test_wire_details:
    def test_nested_failure_details_and_parent_survive(self):
        wire = orjson.loads(encode(EVENTS[2]))
        assert wire["parent"] == {
            "instance_id": "order-1",
            "name": "order_wf",
            "task_scheduled_id": 4,
            "execution_id": "exec-1",
            "app_id": None,
        }
        failed = EVENT_CODEC.decode(encode(EVENTS[3]))
        assert failed.failure == FAILURE
        assert failed.failure.inner is not None
        assert failed.failure.inner.non_retriable is True

    def test_carryover_events_survive_in_order(self):
        complete = next(a for a in ACTIONS if isinstance(a, CompleteWorkflow))
        decoded = ACTION_CODEC.decode(encode(complete))
        assert decoded.carryover_events == complete.carryover_events
        assert isinstance(decoded.carryover_events, tuple)
        assert [e.name for e in decoded.carryover_events] == ["approval", "Payment"]

    def test_datetimes_are_rfc3339_with_offset_and_microseconds(self):
        wire = orjson.loads(encode(EVENTS[0]))
        assert wire["timestamp"] == "2026-03-04T05:06:07.890123+00:00"

    def test_other_offsets_are_kept_as_the_same_instant(self):
        plus_two = timezone(timedelta(hours=2))
        event = ev.WorkflowStarted(timestamp=datetime(2026, 1, 1, 2, 0, tzinfo=plus_two))
        decoded = EVENT_CODEC.decode(encode(event))
        assert decoded.timestamp == datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
        assert decoded.timestamp.utcoffset() == timedelta(hours=2)

    def test_naive_time_is_read_as_utc(self):
        wire = to_jsonable(EVENTS[0]) | {"timestamp": "2026-01-01T00:00:00"}
        assert EVENT_CODEC.decode(wire).timestamp == datetime(2026, 1, 1, tzinfo=UTC)

    def test_no_payload_and_json_null_stay_distinct(self):
        none = ev.TaskCompleted(timestamp=T, task_scheduled_id=0, result=None)
        null = ev.TaskCompleted(timestamp=T, task_scheduled_id=0, result="null")
        assert orjson.loads(encode(none))["result"] is None
        assert orjson.loads(encode(null))["result"] == "null"
        assert EVENT_CODEC.decode(encode(none)).result is None
        assert EVENT_CODEC.decode(encode(null)).result == "null"

    def test_optional_fields_may_be_left_out(self):
        decoded = EVENT_CODEC.decode(
            {
                "type": "TaskScheduled",
                "version": 1,
                "timestamp": "2026-01-01T00:00:00Z",
                "name": "a",
            }
        )
        assert decoded == ev.TaskScheduled(timestamp=datetime(2026, 1, 1, tzinfo=UTC), name="a")

    def test_enum_is_its_dapr_string(self):
        assert orjson.loads(encode(EVENTS[3]))["status"] == "FAILED"
        assert EVENT_CODEC.decode(encode(EVENTS[3])).status is RuntimeStatus.FAILED

    def test_type_names(self):
        assert set(EVENT_CODEC.type_names) == {cls.__name__ for cls in EVENT_TYPES}


def wire_of(value, **changes):
    wire = orjson.loads(encode(value))
    wire.update(changes)
    return wire


def without(value, name):
    wire = orjson.loads(encode(value))
    del wire[name]
    return wire


SCHEDULED = next(e for e in EVENTS if isinstance(e, ev.TaskScheduled))
FAILED = next(e for e in EVENTS if isinstance(e, ev.TaskFailed))
STARTED = next(e for e in EVENTS if isinstance(e, ev.ExecutionStarted))


class Test_decode_errors:
    @pytest.mark.parametrize(
        "data", [b"{not json", b"", "{'single': 'quotes'}", b'{"type": "TaskScheduled"']
    )
    def test_malformed_json(self, data):
        with pytest.raises(DecodeError, match="not valid JSON"):
            EVENT_CODEC.decode(data)

    @pytest.mark.parametrize(
        ("data", "kind"), [(b"[1, 2]", "list"), (b'"text"', "str"), (b"3", "int")]
    )
    def test_not_an_object(self, data, kind):
        with pytest.raises(DecodeError, match=f"expected a JSON object, got {kind}"):
            EVENT_CODEC.decode(data)

    def test_unknown_type_lists_the_known_ones(self):
        with pytest.raises(DecodeError) as info:
            EVENT_CODEC.decode({"type": "TaskExploded", "version": 1})
        assert "unknown message type 'TaskExploded'" in str(info.value)
        assert "TaskScheduled" in str(info.value)
        assert "WorkflowStarted" in str(info.value)

    def test_missing_type(self):
        with pytest.raises(DecodeError, match="unknown message type None"):
            EVENT_CODEC.decode({"version": 1})

    def test_a_type_of_another_family_is_unknown(self):
        with pytest.raises(DecodeError, match="unknown message type 'ScheduleTask'"):
            EVENT_CODEC.decode(encode(ACTIONS[0]))

    @pytest.mark.parametrize("version", [2, 0, "1", None, True])
    def test_wrong_version(self, version):
        with pytest.raises(
            DecodeError, match=r"TaskScheduled: unsupported schema version .*reads version 1"
        ):
            EVENT_CODEC.decode(wire_of(SCHEDULED, version=version))

    def test_missing_version(self):
        with pytest.raises(DecodeError, match="unsupported schema version None"):
            EVENT_CODEC.decode(without(SCHEDULED, "version"))

    def test_missing_required_field(self):
        with pytest.raises(DecodeError, match=r"^TaskScheduled: missing required field\(s\) name$"):
            EVENT_CODEC.decode(without(SCHEDULED, "name"))

    def test_several_missing_fields_are_all_named(self):
        with pytest.raises(DecodeError, match=r"missing required field\(s\) instance_id, name"):
            EVENT_CODEC.decode(
                {
                    "type": "ExecutionStarted",
                    "version": 1,
                    "timestamp": "2026-01-01T00:00:00Z",
                    "execution_id": "e",
                }
            )

    def test_unknown_field(self):
        with pytest.raises(DecodeError, match=r"^TaskScheduled: unknown field\(s\) colour, size$"):
            EVENT_CODEC.decode(wire_of(SCHEDULED, colour="red", size=3))

    @pytest.mark.parametrize(
        ("field", "value", "expected"),
        [
            ("event_id", "0", "TaskScheduled.event_id: expected an integer, got string"),
            ("event_id", 1.5, "TaskScheduled.event_id: expected an integer, got number"),
            ("event_id", True, "TaskScheduled.event_id: expected an integer, got boolean"),
            ("event_id", None, "TaskScheduled.event_id: expected an integer, got null"),
            ("name", 5, "TaskScheduled.name: expected a string, got integer"),
            ("name", None, "TaskScheduled.name: expected a string, got null"),
            ("input", ["x"], "TaskScheduled.input: expected a string, got array"),
            ("input", {"a": 1}, "TaskScheduled.input: expected a string, got object"),
            (
                "timestamp",
                "yesterday",
                "TaskScheduled.timestamp: 'yesterday' is not an RFC 3339 date-time",
            ),
            (
                "timestamp",
                1700000000,
                "TaskScheduled.timestamp: expected an RFC 3339 date-time string, got integer",
            ),
        ],
    )
    def test_mistyped_field(self, field, value, expected):
        with pytest.raises(DecodeError) as info:
            EVENT_CODEC.decode(wire_of(SCHEDULED, **{field: value}))
        assert str(info.value) == expected

    def test_mistyped_boolean(self):
        terminate = next(m for m in MESSAGES if type(m).__name__ == "TerminateWorkflow")
        with pytest.raises(
            DecodeError, match=r"TerminateWorkflow.recursive: expected a boolean, got integer"
        ):
            MESSAGE_CODEC.decode(wire_of(terminate, recursive=1))

    def test_bad_enum_value_lists_the_allowed(self):
        with pytest.raises(DecodeError) as info:
            EVENT_CODEC.decode(wire_of(EVENTS[3], status="DONE"))
        assert "ExecutionCompleted.status: 'DONE' is not one of" in str(info.value)
        assert "COMPLETED" in str(info.value)
        assert "TERMINATED" in str(info.value)

    def test_nested_errors_name_the_path(self):
        wire = orjson.loads(encode(FAILED))
        wire["failure"]["inner"]["non_retriable"] = "yes"
        with pytest.raises(
            DecodeError, match=r"^TaskFailed.failure.inner.non_retriable: expected a boolean"
        ):
            EVENT_CODEC.decode(wire)
        wire = orjson.loads(encode(FAILED))
        del wire["failure"]["message"]
        with pytest.raises(
            DecodeError, match=r"^TaskFailed.failure: missing required field\(s\) message$"
        ):
            EVENT_CODEC.decode(wire)
        with pytest.raises(
            DecodeError, match=r"^TaskFailed.failure: expected an object, got string$"
        ):
            EVENT_CODEC.decode(wire_of(FAILED, failure="boom"))
        wire = orjson.loads(encode(STARTED))
        wire["parent"]["surprise"] = 1
        with pytest.raises(
            DecodeError, match=r"^ExecutionStarted.parent: unknown field\(s\) surprise$"
        ):
            EVENT_CODEC.decode(wire)

    def test_nested_array_errors_name_the_index(self):
        complete = next(a for a in ACTIONS if isinstance(a, CompleteWorkflow))
        wire = orjson.loads(encode(complete))
        wire["carryover_events"][1]["name"] = 7
        with pytest.raises(
            DecodeError, match=r"^CompleteWorkflow.carryover_events\[1\].name: expected a string"
        ):
            ACTION_CODEC.decode(wire)
        with pytest.raises(
            DecodeError, match=r"CompleteWorkflow.carryover_events: expected an array, got object"
        ):
            ACTION_CODEC.decode(wire_of(complete, carryover_events={}))

    def test_required_nested_value_cannot_be_null(self):
        with pytest.raises(DecodeError, match=r"TaskFailed.failure: expected an object, got null"):
            EVENT_CODEC.decode(wire_of(FAILED, failure=None))

    def test_decode_errors_are_headrace_errors_not_crashes(self):
        # Whatever the input, only DecodeError comes out.
        for junk in (
            b"null",
            b"true",
            b'{"type": 1}',
            b'{"type": "TaskScheduled", "version": 1, "name": {}}',
        ):
            with pytest.raises(DecodeError):
                EVENT_CODEC.decode(junk)
