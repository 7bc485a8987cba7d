"""Payloads: Python values to JSON text and back, with None kept apart from null."""

from __future__ import annotations

import dataclasses

import pytest

from engine.core.payload import dump_payload, load_payload
from engine.errors import SerializationError


def test_none_is_no_payload():
    assert dump_payload(None) is None
    assert load_payload(None) is None
    assert dump_payload([None]) == "[null]"
    assert load_payload("null") is None


@pytest.mark.parametrize(
    "value", [0, -1.5, "text", "ünïcode", True, [1, "a", None], {"k": {"n": [1]}}]
)
def test_round_trip(value):
    assert load_payload(dump_payload(value)) == value


def test_non_string_keys_become_strings():
    assert load_payload(dump_payload({1: "a"})) == {"1": "a"}


def test_objects_with_to_json_or_attributes():
    class WithToJson:
        def to_json(self):
            return {"kind": "custom"}

    class Plain:
        def __init__(self):
            self.a = 1

    @dataclasses.dataclass
    class Data:
        x: int

    assert load_payload(dump_payload(WithToJson())) == {"kind": "custom"}
    assert load_payload(dump_payload(Plain())) == {"a": 1}
    assert load_payload(dump_payload(Data(3))) == {"x": 3}


def test_unencodable_value_names_its_type():
    with pytest.raises(SerializationError, match="cannot encode a set as JSON"):
        dump_payload({1, 2})
