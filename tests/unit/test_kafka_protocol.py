"""`engine.runtime.kafka_protocol`: aiokafka's messages encoded and decoded by generated code give
the bytes and the values aiokafka's own codec gives, for every class it replaces."""

from __future__ import annotations

import io
import math
from typing import Any

import pytest
from aiokafka.protocol.api import RequestHeader_v1
from aiokafka.protocol.fetch import FetchRequest, FetchRequest_v11, FetchResponse_v11
from aiokafka.protocol.produce import ProduceRequest_v8, ProduceResponse_v8
from aiokafka.protocol.struct import Struct
from aiokafka.protocol.transaction import AddPartitionsToTxnRequest_v0, EndTxnRequest_v0
from aiokafka.protocol.types import Array, Boolean, Bytes, Float64, Int8, Int16, Int32, Int64, Schema, String, UInt32
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.runtime import kafka_protocol

_DECODED = kafka_protocol.installed()  # installed by the suite's conftest
_CANDIDATES = sorted(_DECODED, key=lambda cls: (cls.__module__, cls.__name__))
_ORIGINAL_DECODE = kafka_protocol._STRUCT_DECODE

_INTS = {Int8: 8, Int16: 16, Int32: 32, Int64: 64}


def _values(kind: Any) -> st.SearchStrategy[Any]:
    """Any value aiokafka's codec encodes as `kind`."""
    if kind in _INTS:
        bits = _INTS[kind]
        return st.integers(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    if kind is UInt32:
        return st.integers(0, 2**32 - 1)
    if kind is Float64:
        return st.floats(allow_nan=False)
    if kind is Boolean:
        return st.booleans()
    if kind is Bytes:
        return st.none() | st.binary(max_size=12)
    if type(kind) is String:
        return st.none() | st.text(st.characters(blacklist_categories=("Cs",)), max_size=8)
    if type(kind) is Array:
        return st.none() | st.lists(_values(kind.array_of), max_size=3)
    assert type(kind) is Schema
    return st.tuples(*(_values(field) for field in kind.fields))


def _same(a: Any, b: Any) -> bool:
    """Equal and of the same types all the way down (`True == 1`, `[1] != (1,)` to this)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _fields_of(message: Struct) -> list[Any]:
    return [getattr(message, name) for name in type(message).SCHEMA.names]


def _outcome(decode: Any, data: Any) -> tuple[str, Any]:
    try:
        return "value", _fields_of(decode(data))
    except Exception as exc:  # the type is what is compared
        return "error", type(exc)


def test_the_messages_the_engine_sends_most_are_replaced() -> None:
    replaced = kafka_protocol.installed()
    for cls in (FetchRequest_v11, FetchResponse_v11, ProduceRequest_v8, ProduceResponse_v8,
                AddPartitionsToTxnRequest_v0, EndTxnRequest_v0):
        assert cls in replaced, cls.__name__
    assert all(replaced[cls] for cls in (FetchResponse_v11, ProduceResponse_v8))
    assert replaced[RequestHeader_v1] is False  # every request's header: encoded only, it has its own `__init__`
    assert len(replaced) > 150
    # Every message class of aiokafka's but those with a flexible field or a codec of their own.
    kept = {cls for cls in kafka_protocol._struct_classes() if cls not in replaced and cls.SCHEMA.fields}
    assert not any(kafka_protocol.replaceable(cls) for cls in kept)
    assert {cls.__name__ for cls in kept} >= {"RequestHeader_v2", "DeleteRecordsRequest_v2"}
    assert kafka_protocol.install() == 0  # once per process


@pytest.mark.parametrize("cls", _CANDIDATES, ids=lambda cls: cls.__name__)
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_bytes_and_values_are_aiokafkas(cls: type[Struct], data: st.DataObject) -> None:
    values = data.draw(st.tuples(*(_values(field) for field in cls.SCHEMA.fields)))
    message = object.__new__(cls)  # as `Struct.__init__` sets them (a request header's takes others)
    message.__dict__.update(zip(cls.SCHEMA.names, values, strict=True))
    expected = Struct.encode(message)  # aiokafka's codec, which the class no longer runs
    assert message.encode() == expected
    if not _DECODED[cls]:
        return
    # Decoded from a frame whose header was read already, as the connection does, and from bytes.
    prefix = b"\x00\x00\x00\x07"
    frame = io.BytesIO(prefix + expected + b"tail")
    frame.read(len(prefix))
    fast = cls.decode(frame)
    assert frame.tell() == len(prefix) + len(expected)
    assert type(fast) is cls
    assert _same(_fields_of(fast), list(values))  # tuples for schemas, lists for arrays, as drawn
    assert _same(_fields_of(fast), _fields_of(_ORIGINAL_DECODE(cls, io.BytesIO(expected))))
    assert _same(_fields_of(cls.decode(expected)), list(values))
    # A frame cut short is refused with aiokafka's error type, wherever it is cut.
    cut = data.draw(st.integers(0, len(expected) - 1))
    with pytest.raises(ValueError, match=r"(?i)unpack|underrun"):
        _ORIGINAL_DECODE(cls, io.BytesIO(expected[:cut]))
    with pytest.raises(ValueError, match=r"(?i)unpack|underrun"):
        cls.decode(io.BytesIO(expected[:cut]))
    # A frame with bytes overwritten (lengths below -1, a Boolean byte of 2, ...) and a tail
    # decodes to what aiokafka's gives, or fails with the same error type.
    corrupt = bytearray(expected)
    for _ in range(data.draw(st.integers(1, 2))):
        at = data.draw(st.integers(0, len(corrupt) - 1))
        corrupt[at] = data.draw(st.sampled_from([0, 1, 2, 0x7F, 0x80, 0xFE, 0xFF]))
    garbled = bytes(corrupt) + data.draw(st.binary(max_size=3))
    mine, theirs = _outcome(cls.decode, io.BytesIO(garbled)), _outcome(lambda d: _ORIGINAL_DECODE(cls, d),
                                                                        io.BytesIO(garbled))
    assert mine[0] == theirs[0]
    assert mine[1] is theirs[1] if mine[0] == "error" else _same(mine[1], theirs[1])


def test_the_fields_no_replaced_class_has_yet_are_aiokafkas_too() -> None:
    # UInt32, Float64 and a String in another encoding: in no schema aiokafka sends today.
    from aiokafka.protocol.api import Response

    class Made(Response):
        API_KEY, API_VERSION = 9999, 0
        SCHEMA = Schema(("u", UInt32), ("f", Float64), ("flag", Boolean), ("name", String("latin-1")),
                        ("many", Array(Array(UInt32))), ("small", Int8), ("blob", Bytes))

    decode, encode = kafka_protocol.codec(Made)
    for values in ((2**32 - 1, float("inf"), True, "café", [[0, 7], None, []], -128, None),
                   (0, -0.0, False, None, None, 127, b"\x00"), (5, 1.5, True, "", [], 0, b"")):
        message = Made(*values)
        expected = Struct.encode(message)
        assert encode(message) == expected
        frame = io.BytesIO(expected + b"tail")
        decoded = _fields_of(decode(Made, frame))
        assert frame.tell() == len(expected)
        assert _same(decoded, list(values))
        assert _same(decoded, _fields_of(_ORIGINAL_DECODE(Made, io.BytesIO(expected))))
    nan = decode(Made, Struct.encode(Made(1, float("nan"), 1, "x", [], 0, b""))).f
    assert math.isnan(nan)
    for wrong in ((-1, 0.0, True, "", [], 0, b""), (0, 0.0, True, "ő", [], 0, b"")):  # not UInt32; not latin-1
        with pytest.raises((ValueError, UnicodeEncodeError)) as theirs:
            Struct.encode(Made(*wrong))
        with pytest.raises(theirs.type):
            encode(Made(*wrong))


def test_another_kind_of_stream_takes_aiokafkas_own_decoder() -> None:
    message = EndTxnRequest_v0("txn", 7, 1, True)
    encoded = message.encode()

    class Counting(io.BytesIO):
        reads = 0

        def read(self, size: int | None = -1) -> bytes:
            type(self).reads += 1
            return super().read(size)

    decoded = EndTxnRequest_v0.decode(Counting(encoded))
    assert _same(_fields_of(decoded), ["txn", 7, 1, True])
    assert Counting.reads > 0  # a stream of its own kind is read through its `read`, as aiokafka does


def test_a_value_out_of_range_is_refused_as_aiokafka_refuses_it() -> None:
    request = EndTxnRequest_v0("txn", 2**63, 0, True)  # producer_id is an Int64
    with pytest.raises(ValueError, match=r"too large|out of range|requires"):
        Struct.encode(request)
    with pytest.raises(ValueError, match=r"too large|out of range|requires"):
        request.encode()
    wrong_count = AddPartitionsToTxnRequest_v0("txn", 1, 0, [("topic", [0], "extra")])
    with pytest.raises(ValueError, match="field count"):
        Struct.encode(wrong_count)
    with pytest.raises(ValueError, match="field count"):
        wrong_count.encode()


def test_a_fetch_of_sixteen_partitions_round_trips() -> None:
    # The request an engine sends on every poll (two topics of eight partitions), and an answer.
    topics = [(topic, [(p, 1000 + p, 1_048_576) for p in range(8)]) for topic in ("t.results", "t.commands")]
    request = FetchRequest(100, 1, 52_428_800, 1, topics).build(FetchRequest_v11)
    assert request.encode() == Struct.encode(request)
    partitions = [(p, 0, 1000, 990, 0, [(7, 995)] if p == 3 else [], -1, b"records" if p % 2 else b"")
                  for p in range(8)]
    response = FetchResponse_v11(0, 0, 0, [("t.results", partitions), ("t.commands", partitions)])
    decoded = FetchResponse_v11.decode(io.BytesIO(response.encode()))
    assert _same(decoded.topics, [(topic, partitions) for topic in ("t.results", "t.commands")])


def test_a_subclass_with_a_schema_of_its_own_keeps_aiokafkas_codec() -> None:
    class Wider(EndTxnRequest_v0):
        SCHEMA = Schema(("transactional_id", String("utf-8")), ("extra", Int32))

    message = Wider("txn", 5)
    assert message.encode() == b"\x00\x03txn\x00\x00\x00\x05"
    decoded = Wider.decode(io.BytesIO(message.encode()))
    assert (decoded.transactional_id, decoded.extra) == ("txn", 5)


def test_requests_are_counted_by_type_once_sent() -> None:
    sent: list[object] = []

    def send(conn: object, request: object, expect_response: bool = True) -> str:
        if conn is None:
            raise ConnectionError("no connection")  # as aiokafka's send does without a socket
        sent.append(request)
        return "future"

    counted = kafka_protocol._counting(send)
    before = kafka_protocol.requests_sent()
    fetch = FetchRequest(100, 1, 1 << 20, 1, [])
    assert counted(object(), fetch) == "future"
    assert counted(object(), fetch, expect_response=False) == "future"
    assert counted(object(), EndTxnRequest_v0("t", 1, 0, True)) == "future"
    with pytest.raises(ConnectionError):
        counted(None, fetch)
    after = kafka_protocol.requests_sent()
    assert len(sent) == 3
    assert after.get("Fetch", 0) - before.get("Fetch", 0) == 2  # the builder's name, without "Request"
    assert after.get("EndTxn", 0) - before.get("EndTxn", 0) == 1  # a struct's, without "_v0"


def test_every_connection_counts_what_it_sends() -> None:
    # The suite's conftest installed the codec, and with it the count on aiokafka's connection.
    from aiokafka.conn import AIOKafkaConnection

    assert AIOKafkaConnection.send.__qualname__.startswith("_counting.")
