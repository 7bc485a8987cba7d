"""Python values in workflow and activity code, to and from payload JSON, the way Dapr's SDK does it.

Dapr's Python SDK (durabletask's `InternalJSONEncoder`/`InternalJSONDecoder`) writes a few Python
types as JSON objects marked with `"__durabletask_autoobject__": true` and reads every marked
object back as a `types.SimpleNamespace`, so attribute access works on the receiving side:

- a dataclass: its fields (`dataclasses.asdict`, which turns nested dataclasses into plain
  objects) plus the marker;
- a `SimpleNamespace`: its attributes plus the marker;
- a namedtuple at the top of the payload: its fields plus the marker (nested ones stay arrays).

Objects with Pydantic v2's shape (`model_dump` and `model_validate`, duck-typed so pydantic is
never imported) are written as their plain `model_dump(mode="json")`, with no marker, so other
languages read them as they are. On the receiving side `call_with_input` rebuilds a workflow's
or activity's input when its parameter is annotated with such a model class (`model_validate`).
A dataclass input arrives as a SimpleNamespace, as in Dapr (whose examples print it so).
`docs/dapr-compatibility.md` records the choices.

Everything else as `engine.core.payload` writes it (exact big integers, `to_json()` and
`__dict__` objects, datetimes as ISO 8601), in Dapr's spacing up to `DAPR_FORMAT_LIMIT`.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import inspect
import json
import types
import typing
import uuid
from collections.abc import Callable
from typing import Any

import orjson

from ..errors import SerializationError
from .payload import load_payload

__all__ = ["AUTO_SERIALIZED", "InputSpec", "call_with_input", "coerce", "from_json", "input_spec", "is_model_class",
           "to_json"]

#: The marker key of Dapr's SDK: an object written with it is read back as a SimpleNamespace.
AUTO_SERIALIZED = "__durabletask_autoobject__"

_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATACLASS

#: Payloads up to this many characters (compact) are written in Dapr's format; longer ones compact.
DAPR_FORMAT_LIMIT = 16 * 1024


def is_model_class(cls: Any) -> bool:
    """Whether `cls` has Pydantic v2's shape (a model_dump method and a model_validate classmethod)."""
    return inspect.isclass(cls) and callable(getattr(cls, "model_dump", None)) \
        and callable(getattr(cls, "model_validate", None))


def _is_namedtuple(value: Any) -> bool:
    return isinstance(value, tuple) and hasattr(value, "_fields") and hasattr(value, "_asdict")


def _dump_model(value: Any) -> Any:
    try:
        return value.model_dump(mode="json")
    except TypeError:  # a model-shaped class whose model_dump takes no `mode`
        return value.model_dump()


def _default(value: Any) -> Any:
    if is_model_class(type(value)):
        return _dump_model(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {**dataclasses.asdict(value), AUTO_SERIALIZED: True}
    if isinstance(value, types.SimpleNamespace):
        return {**vars(value), AUTO_SERIALIZED: True}
    if _is_namedtuple(value):
        return list(value)  # below the top a namedtuple is an array, as json writes any tuple
    # What orjson writes natively, for the standard library's pass (the same text).
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if hasattr(value, "to_json") and callable(value.to_json):
        return value.to_json()
    if hasattr(value, "__dict__"):
        return vars(value)
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def _same_in_both(value: Any) -> bool:
    """Whether orjson already wrote `value` as `json.dumps` would: no separators, nothing escaped apart.

    Integers, booleans and printable ASCII strings are the common payloads (chains of small steps);
    skipping the second, slower encoding for them is most of the cost of matching Dapr's spacing.
    """
    kind = type(value)
    return kind is int or kind is bool or (kind is str and value.isascii() and value.isprintable())


def to_json(value: Any) -> str | None:
    """Payload JSON for a value from workflow or activity code; `None` stays `None` (no payload).

    Written as Dapr's SDK writes it (`json.dumps`: `", "` and `": "` separators, non-ASCII as
    `\\u` escapes), so payload text reads the same as on Dapr; past `DAPR_FORMAT_LIMIT` characters
    it is compact instead, since the standard library is ~100 times slower than orjson there.
    """
    if value is None:
        return None
    if _is_namedtuple(value):
        value = {**value._asdict(), AUTO_SERIALIZED: True}
    try:
        text = orjson.dumps(value, default=_default, option=_OPTIONS).decode()
    except TypeError as exc:
        if "64-bit" not in str(exc):
            raise SerializationError(f"cannot encode a {type(value).__name__} as JSON: {exc}") from None
        text = None  # an integer past 64 bits: only the standard library is exact (engine.core.payload)
    if text is not None and (len(text) > DAPR_FORMAT_LIMIT or _same_in_both(value)):
        return text
    try:
        return json.dumps(value, default=_default, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise SerializationError(f"cannot encode a {type(value).__name__} as JSON: {exc}") from None


def from_json(text: str | None) -> Any:
    """The value of payload JSON, with marked objects as SimpleNamespaces; `PayloadDecodeError` if not JSON."""
    value = load_payload(text)
    if text is not None and AUTO_SERIALIZED in text:
        return _revive(value)
    return value


def _revive(value: Any) -> Any:
    if isinstance(value, list):
        return [_revive(item) for item in value]
    if isinstance(value, dict):
        marked = value.pop(AUTO_SERIALIZED, False)
        for key, item in value.items():
            value[key] = _revive(item)
        return types.SimpleNamespace(**value) if marked else value
    return value


# -- rebuilding declared input types ------------------------------------------------------------


def coerce(value: Any, annotation: Any) -> Any:
    """`value` as the declared type when that is a model class (Pydantic v2's shape); else unchanged.

    `Optional[X]` / `X | None` are unwrapped (as Dapr does), and `list[X]` is rebuilt item by item
    (beyond Dapr). A value that does not fit raises (`TypeError`, or the model's validation error),
    failing the call as in Dapr. A dataclass is not rebuilt: Dapr hands it over as the
    SimpleNamespace it decoded, and its examples print that namespace.
    """
    if value is None or annotation is None or annotation is Any:
        return value
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return coerce(value, args[0]) if len(args) == 1 else value
    if origin is list and isinstance(value, list):
        (item_type,) = typing.get_args(annotation) or (None,)
        return [coerce(item, item_type) for item in value]
    if inspect.isclass(annotation) and is_model_class(annotation) and not isinstance(value, annotation):
        return annotation.model_validate(_as_mapping(value, annotation))  # type: ignore[attr-defined]
    return value


def _as_mapping(value: Any, cls: type) -> dict[str, Any]:
    if isinstance(value, types.SimpleNamespace):
        return dict(vars(value))
    if isinstance(value, dict):
        return value
    raise TypeError(f"cannot build {cls.__name__} from a {type(value).__name__}; expected a JSON object")


def _type_hints(target: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(target)
    except Exception:  # annotations naming what cannot be resolved (e.g. local classes): no rebuild
        return {}


@dataclasses.dataclass(frozen=True, slots=True)
class InputSpec:
    """How to call a workflow or activity function: with an input or not, and its declared type."""

    takes_input: bool
    annotation: Any = None


_SPECS: dict[Callable[..., Any], InputSpec] = {}


def input_spec(fn: Callable[..., Any]) -> InputSpec:
    """Whether `fn` takes a second positional argument (Dapr calls `fn(ctx)` without one), and its type."""
    spec = _SPECS.get(fn)
    if spec is None:
        spec = _inspect(fn)
        _SPECS[fn] = spec
    return spec


def _inspect(fn: Callable[..., Any]) -> InputSpec:
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return InputSpec(True)
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) < 2:
        return InputSpec(any(p.kind is p.VAR_POSITIONAL for p in params))
    param = positional[1]
    annotation = param.annotation
    if annotation is inspect.Parameter.empty:
        return InputSpec(True)
    if isinstance(annotation, str):
        annotation = _type_hints(fn).get(param.name) or _evaluate(fn, annotation)
    return InputSpec(True, annotation)


def _evaluate(fn: Callable[..., Any], text: str) -> Any:
    # get_type_hints gives up on the whole function when any one annotation names something it
    # cannot find; the input's own annotation may still resolve in the function's module.
    try:
        return eval(text, getattr(inspect.unwrap(fn), "__globals__", {}))  # noqa: S307 - the user's own annotation
    except Exception:
        return None


def call_with_input(fn: Callable[..., Any], ctx: Any, payload: str | None) -> Any:
    """Call a workflow or activity as Dapr does: with its input (as its declared type) when it takes one.

    A payload that is not JSON text raises `PayloadDecodeError` before the function runs.
    """
    spec = input_spec(fn)
    if not spec.takes_input:
        return fn(ctx)
    value = from_json(payload)
    if spec.annotation is not None:
        value = coerce(value, spec.annotation)
    return fn(ctx, value)

