"""What the engine accepts from outside: IDs, payloads, integers, stored keys (issue 11, no broker)."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from engine.core import commands as cmd
from engine.core import events as ev
from engine.core.cache import ExecutionCache
from engine.core.ids import IdError, check_id, check_new_instance_id
from engine.core.orchestrator import Disposition, Orchestrator
from engine.core.payload import dump_payload, load_payload
from engine.core.state import InstanceState, fold_all
from engine.core.values import FailureDetails, ParentInstance, RuntimeStatus
from engine.errors import DecodeError, PayloadDecodeError
from engine.wire.records import MESSAGES, history_chunk_key, parse_history_chunk_key

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("bad", ["", "a\x00b", "tab\there", "new\nline", "sp ace", "\ud800", "x" * 1025, "\u200b"])
def test_engine_ids_refuse_what_breaks_keys_and_logs(bad: str) -> None:
    with pytest.raises(IdError):
        check_id(bad)


@pytest.mark.parametrize("good", ["order-1", "parent:0001:0002", "ünïcode", "a.b/c", "x" * 1024])
def test_engine_ids_accept_child_ids_and_unicode(good: str) -> None:
    assert check_id(good) == good


@pytest.mark.parametrize("bad", ["parent:0001", "a.b", "x" * 65, "é" * 33])
def test_new_instance_ids_follow_daprd(bad: str) -> None:
    with pytest.raises(IdError):
        check_new_instance_id(bad)
    assert check_new_instance_id("Order_1-é") == "Order_1-é"


def test_id_errors_show_the_id_escaped() -> None:
    with pytest.raises(IdError, match=r"\\x00"):
        check_id("a\x00b")


def test_history_store_keys_survive_any_instance_id() -> None:
    for iid in ["plain", "with\x00nul", "\x00\x00", "ends\x00"]:
        assert parse_history_chunk_key(history_chunk_key(iid, "exec-1", 7)) == (iid, "exec-1", 7)
    with pytest.raises(DecodeError):
        parse_history_chunk_key(b"no-separators")
    with pytest.raises(DecodeError):
        parse_history_chunk_key(b"\xff\xfe\x00e\x00x")


def test_payloads_keep_integers_beyond_64_bits_exact() -> None:
    big = 2**64 + 1
    text = dump_payload({"n": big, "m": [-(2**70)]})
    assert text == '{"n":18446744073709551617,"m":[-1180591620717411303424]}'
    assert load_payload(text) == {"n": big, "m": [-(2**70)]}
    assert load_payload('"a 12345678901234567890 string"') == "a 12345678901234567890 string"


def test_payload_that_is_not_json_text_raises_the_engines_error() -> None:
    with pytest.raises(PayloadDecodeError, match="not JSON text"):
        load_payload("approved")


def _decode(**fields: object) -> cmd.InstanceMessage:
    return cmd.check_message(MESSAGES.decode(orjson.dumps(fields)))


def test_commands_with_bad_ids_or_payloads_are_refused() -> None:
    base = {"type": "RaiseEvent", "version": 1, "command_id": "c", "name": "go"}
    with pytest.raises(DecodeError, match="instance_id"):
        _decode(**base, instance_id="a\x00b")
    with pytest.raises(DecodeError, match="command_id"):
        _decode(**{**base, "command_id": "c\x07"}, instance_id="i")
    with pytest.raises(DecodeError, match=r"RaiseEvent\.input is not JSON text"):
        _decode(**base, instance_id="i", input="approved")
    with pytest.raises(DecodeError, match=r"StartWorkflow\.input"):
        _decode(type="StartWorkflow", version=1, instance_id="i", command_id="c", name="w", input="{")
    with pytest.raises(DecodeError, match=r"parent\.instance_id"):
        _decode(type="StartWorkflow", version=1, instance_id="i", command_id="c", name="w",
                parent={"instance_id": "p\x00", "name": "p", "task_scheduled_id": 1, "execution_id": "e"})
    assert isinstance(_decode(**base, instance_id="i", input='"approved"'), cmd.RaiseEvent)


def test_result_that_is_not_json_text_becomes_a_failed_result() -> None:
    message = _decode(type="ActivityResult", version=1, instance_id="i", execution_id="e", task_id=1,
                      result="hello")
    assert isinstance(message, cmd.ActivityResult)
    assert message.result is None and message.failure is not None
    assert message.failure.error_type == "PayloadDecodeError" and message.failure.non_retriable


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 2**64])
def test_integers_on_the_wire_are_64_bit(value: int) -> None:
    data = orjson.dumps({"type": "ActivityResult", "version": 1, "instance_id": "i", "execution_id": "e"})
    text = data[:-1] + b',"task_id":' + str(value).encode() + b"}"
    with pytest.raises(DecodeError):
        MESSAGES.decode(text)


def _running(parent: ParentInstance | None = None) -> InstanceState:
    started = ev.ExecutionStarted(timestamp=NOW, seq=1, name="w", instance_id="i", execution_id="e", parent=parent)
    return fold_all(InstanceState(instance_id="i"), [ev.WorkflowStarted(timestamp=NOW, seq=0), started,
                                                     ev.WorkflowCompleted(timestamp=NOW, seq=2)])


def test_engine_can_fail_a_running_instance_without_running_its_code() -> None:
    parent = ParentInstance(instance_id="p", name="pw", task_scheduled_id=3, execution_id="pe")
    orchestrator = Orchestrator(lambda name: None, ExecutionCache(10))
    failure = FailureDetails(error_type="EngineError", message="too big")
    outcome = orchestrator.fail(_running(parent), failure, NOW)
    assert outcome.state is not None and outcome.state.status is RuntimeStatus.FAILED
    assert outcome.state.failure == failure
    assert [e.seq for e in outcome.events] == [3, 4, 5]
    [message] = outcome.messages
    assert isinstance(message, cmd.ChildResult) and message.failure == failure and message.task_id == 3


def test_engine_can_fail_a_start_it_cannot_apply() -> None:
    orchestrator = Orchestrator(lambda name: None, ExecutionCache(10))
    start = cmd.StartWorkflow(instance_id="i", command_id="c", name="w", input='"x"')
    outcome = orchestrator.fail(None, FailureDetails(error_type="EngineError", message="no"), NOW, start)
    assert outcome.state is not None and outcome.state.status is RuntimeStatus.FAILED
    assert outcome.state.input == '"x"' and outcome.history_reset
    assert [e.seq for e in outcome.events] == [0, 1, 2, 3]
    finished = orchestrator.fail(outcome.state, FailureDetails(error_type="E", message="m"), NOW)
    assert finished.events == [] and finished.unapplied is not None
    assert finished.unapplied.disposition is Disposition.MOOT


def _nested_failure(depth: int) -> dict[str, object]:
    failure: dict[str, object] = {"error_type": "E", "message": "m"}
    for _ in range(depth):
        failure = {"error_type": "E", "message": "m", "inner": failure}
    return failure


def test_deeply_nested_failures_are_refused_not_recursed_into() -> None:
    # Found by the poison fuzzer: 600 nested `inner` failures raised RecursionError in the codec,
    # which escaped decoding and crash-looped the partition.
    body = {"type": "ActivityResult", "version": 1, "instance_id": "i", "execution_id": "e", "task_id": 0}
    assert MESSAGES.decode(orjson.dumps({**body, "failure": _nested_failure(30)})).failure is not None
    deep = orjson.dumps({**body, "failure": _nested_failure(200)})
    with pytest.raises(DecodeError, match="nested more than"):
        MESSAGES.decode(deep)


def test_dead_letters_hold_a_bounded_copy() -> None:
    from engine.wire.records import encode_dead_letter

    letter = orjson.loads(encode_dead_letter("why", "t", 0, 1, b"k" * 5000, b"v" * 100_000, value_limit=1000))
    assert len(letter["value"]) == 1000 and letter["value_bytes"] == 100_000
    assert len(letter["key"]) == 1024
