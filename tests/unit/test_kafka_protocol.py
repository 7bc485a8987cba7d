"""`engine.runtime.kafka_protocol`: aiokafka's messages encoded and decoded by generated code give
the bytes and the values aiokafka's own codec gives, for every class it replaces."""

from __future__ import annotations

import io
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

kafka_protocol.install()  # done by the suite's conftest already: the classes it replaced are these
_DECODED = kafka_protocol.installed()
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


def _normal(value: Any) -> Any:
    """Tuples and lists alike (a schema's item may be either going in; decoding makes tuples)."""
    if isinstance(value, (list, tuple)):
        return [_normal(v) for v in value]
    return value


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
    reference = _ORIGINAL_DECODE(cls, io.BytesIO(expected))
    assert type(fast) is cls
    assert {name: _normal(getattr(fast, name)) for name in cls.SCHEMA.names} == \
        {name: _normal(getattr(reference, name)) for name in cls.SCHEMA.names} == \
        {name: _normal(value) for name, value in zip(cls.SCHEMA.names, values, strict=True)}
    assert _normal(list(cls.decode(expected).__dict__.values())) == _normal(list(fast.__dict__.values()))
    # A frame cut short is refused with aiokafka's error type, wherever it is cut.
    cut = data.draw(st.integers(0, len(expected) - 1))
    with pytest.raises(ValueError, match=r"(?i)unpack|underrun"):
        _ORIGINAL_DECODE(cls, io.BytesIO(expected[:cut]))
    with pytest.raises(ValueError, match=r"(?i)unpack|underrun"):
        cls.decode(io.BytesIO(expected[:cut]))


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
    assert _normal(decoded.topics) == _normal(response.topics)


def test_a_subclass_with_a_schema_of_its_own_keeps_aiokafkas_codec() -> None:
    class Wider(EndTxnRequest_v0):
        SCHEMA = Schema(("transactional_id", String("utf-8")), ("extra", Int32))

    message = Wider("txn", 5)
    assert message.encode() == b"\x00\x03txn\x00\x00\x00\x05"
    decoded = Wider.decode(io.BytesIO(message.encode()))
    assert (decoded.transactional_id, decoded.extra) == ("txn", 5)
