"""Payloads the way Dapr's SDK writes and reads them, and inputs rebuilt from their annotations."""

from __future__ import annotations

import dataclasses
import types
from collections import namedtuple
from typing import NamedTuple

import orjson
import pydantic
import pytest

from engine.core.serializer import AUTO_SERIALIZED, call_with_input, coerce, from_json, to_json
from engine.errors import SerializationError


@dataclasses.dataclass
class Item:
    sku: str
    count: int = 1


@dataclasses.dataclass
class Order:
    cost: float
    product: str
    items: list[Item] = dataclasses.field(default_factory=list)


class Point(NamedTuple):
    x: int
    y: int


class Money(pydantic.BaseModel):
    amount: float
    currency: str = "EUR"


class Invoice(pydantic.BaseModel):
    number: str
    total: Money


class Test_encoding_as_daprs_sdk:
    def test_a_dataclass_is_its_fields_plus_the_marker_and_nested_ones_are_plain_objects(self):
        text = to_json(Order(2000, "MyProduct", [Item("a")]))
        assert orjson.loads(text) == {"cost": 2000, "product": "MyProduct", "items": [{"sku": "a", "count": 1}],
                                      AUTO_SERIALIZED: True}

    def test_a_namedtuple_is_marked_at_the_top_and_an_array_below(self):
        assert orjson.loads(to_json(Point(1, 2))) == {"x": 1, "y": 2, AUTO_SERIALIZED: True}
        assert orjson.loads(to_json({"p": Point(1, 2)})) == {"p": [1, 2]}
        untyped = namedtuple("untyped", "a b")  # the collections kind as well
        assert orjson.loads(to_json(untyped(3, 4))) == {"a": 3, "b": 4, AUTO_SERIALIZED: True}

    def test_a_simple_namespace_is_marked_at_every_level_and_left_unchanged(self):
        ns = types.SimpleNamespace(a=1, inner=types.SimpleNamespace(b=2))
        assert orjson.loads(to_json(ns)) == {"a": 1, "inner": {"b": 2, AUTO_SERIALIZED: True}, AUTO_SERIALIZED: True}
        assert vars(ns) == {"a": 1, "inner": types.SimpleNamespace(b=2)}  # Dapr's encoder adds the key to it

    def test_a_pydantic_model_is_plain_json_without_the_marker(self):
        assert orjson.loads(to_json(Invoice(number="7", total=Money(amount=1.5)))) == {
            "number": "7", "total": {"amount": 1.5, "currency": "EUR"}}

    def test_big_integers_stay_exact_and_none_is_no_payload(self):
        assert to_json(None) is None
        decoded = from_json(to_json({"n": 2**70, "d": Item("x", 2**65)}))
        assert decoded["n"] == 2**70 and decoded["d"].count == 2**65

    def test_what_cannot_be_encoded_is_a_serialization_error(self):
        with pytest.raises(SerializationError, match="set"):
            to_json({1, 2})


class Test_decoding_as_daprs_sdk:
    def test_marked_objects_come_back_as_namespaces_at_any_depth(self):
        value = from_json('[{"a": 1, "__durabletask_autoobject__": true, "b": {"c": [{"d": 1, '
                          '"__durabletask_autoobject__": true}]}}]')
        assert value == [types.SimpleNamespace(a=1, b={"c": [types.SimpleNamespace(d=1)]})]

    def test_a_false_marker_is_dropped_and_unmarked_objects_stay_dicts(self):
        assert from_json('{"a": 1, "__durabletask_autoobject__": false}') == {"a": 1}
        assert from_json('{"a": {"b": 1}}') == {"a": {"b": 1}}

    def test_a_marker_inside_a_string_changes_nothing(self):
        assert from_json('"__durabletask_autoobject__"') == "__durabletask_autoobject__"


class Test_inputs_rebuilt_from_annotations:
    def test_a_dataclass_parameter_gets_a_namespace_as_in_dapr(self):
        def activity(ctx, order: Order):
            return order

        got = call_with_input(activity, None, to_json(Order(10, "p", [Item("a", 2)])))
        # Dapr does not rebuild dataclasses: attribute access works, and its examples print this.
        assert got == types.SimpleNamespace(cost=10, product="p", items=[{"sku": "a", "count": 2}])
        assert repr(got) == "namespace(cost=10, product='p', items=[{'sku': 'a', 'count': 2}])"

    def test_a_pydantic_parameter_gets_the_model_from_a_plain_object(self):
        def workflow(ctx, invoice: Invoice | None):
            return invoice

        got = call_with_input(workflow, None, '{"number": "1", "total": {"amount": 2}}')
        assert got == Invoice(number="1", total=Money(amount=2))
        assert call_with_input(workflow, None, None) is None  # None is passed through, as in Dapr

    def test_a_payload_that_does_not_fit_a_model_fails_the_call(self):
        def workflow(ctx, money: Money):
            return money

        with pytest.raises(pydantic.ValidationError):
            call_with_input(workflow, None, '{"currency": "EUR"}')
        with pytest.raises(TypeError, match="Money"):
            call_with_input(workflow, None, "[1]")

    def test_lists_optionals_and_unannotated_parameters(self):
        def typed(ctx, moneys: list[Money]):
            return moneys

        def untyped(ctx, value):
            return value

        assert call_with_input(typed, None, '[{"amount": 1}]') == [Money(amount=1)]
        assert call_with_input(untyped, None, to_json(Item("a"))) == types.SimpleNamespace(sku="a", count=1)
        assert coerce({"amount": 3}, Money | None) == Money(amount=3)

    def test_string_annotations_resolve_and_unresolvable_ones_pass_the_value_on(self):
        def resolvable(ctx, money: Money):  # a string under `from __future__ import annotations`
            return money

        def unresolvable(ctx, item: NotDefinedAnywhere):  # type: ignore[name-defined]  # noqa: F821
            return item

        def partly(ctx, money: Money, extra: NotDefinedAnywhere = None):  # type: ignore[name-defined]  # noqa: F821
            return money

        assert call_with_input(resolvable, None, '{"amount": 1}') == Money(amount=1)
        assert call_with_input(partly, None, '{"amount": 2}') == Money(amount=2)
        assert call_with_input(unresolvable, None, '{"sku": "z"}') == {"sku": "z"}

    def test_a_function_without_an_input_parameter_is_called_with_the_context_only(self):
        assert call_with_input(lambda ctx: ctx, "c", '{"a": 1}') == "c"
