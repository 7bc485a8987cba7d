"""JSON encoding of events, actions and messages (orjson), with strict, typed decoding.

The wire form of a value is a flat JSON object: `{"type": <class name>, "version": <int>, …fields}`.
Decoding checks every field against the class's type hints, so a malformed message from outside
fails here with a `DecodeError` that says which field is wrong, not deep inside the engine.
Decoders are built once per class from its type hints: the per-message cost is a dict walk.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from enum import Enum
from types import MappingProxyType
from typing import Any, TypeVar

import orjson

from ..errors import DecodeError
from .hints import is_native, type_hints

__all__ = ["Codec", "encode", "field_names", "to_jsonable"]

T = TypeVar("T")
_Convert = Callable[[Any, str], Any]

_FIELD_NAMES: dict[type, tuple[str, ...]] = {}
_MAPPING_FIELDS: dict[type, tuple[str, ...]] = {}

#: A JSON object key that stands for an integer (`Mapping[int, …]` fields: task and timer IDs).
#: JSON keys are strings; the schema states the same pattern (`propertyNames`).
INT_KEY_PATTERN = "^-?[0-9]+$"
_INT_KEY = re.compile(r"-?[0-9]+")  # fullmatch: `$` would also match before a final newline

#: Deepest nesting of objects a message may have (a failure's chain of inner failures).
MAX_DEPTH = 64
#: Object paths whose field paths a decoder keeps (nested paths are few; this only bounds them).
_PATHS_KEPT = 256


def field_names(cls: type) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = tuple(f.name for f in dataclasses.fields(cls))
        _FIELD_NAMES[cls] = names
    return names


def _mapping_fields(cls: type) -> tuple[str, ...]:
    names = _MAPPING_FIELDS.get(cls)
    if names is None:
        hints = type_hints(cls)
        names = tuple(f.name for f in dataclasses.fields(cls) if _is_mapping(hints[f.name]))
        _MAPPING_FIELDS[cls] = names
    return names


def _is_mapping(hint: Any) -> bool:
    return typing.get_origin(hint) in (Mapping, dict)


def to_jsonable(value: Any) -> dict[str, Any]:
    """The wire form as a dict; nested dataclasses, datetimes and enums are left to orjson.

    Mappings (read-only `MappingProxyType`s in the values) become dicts with string keys, as JSON
    has them."""
    cls = type(value)
    out: dict[str, Any] = {"type": cls.__name__, "version": cls.VERSION}
    for name in field_names(cls):
        out[name] = getattr(value, name)
    for name in _mapping_fields(cls):
        out[name] = {str(k): v for k, v in out[name].items()}
    return out


def encode(value: Any) -> bytes:
    return orjson.dumps(to_jsonable(value))


class Codec:
    """Decodes the wire form of one family of types (events, actions, commands, …)."""

    def __init__(self, classes: Iterable[type[Any]]) -> None:
        self._classes: dict[str, type[Any]] = {cls.__name__: cls for cls in classes}
        self._decoders: dict[type, _Convert] = {}
        for cls in self._classes.values():
            if is_native(cls):  # its hints come from the source: a build without it fails here, not per record
                type_hints(cls)

    @property
    def type_names(self) -> tuple[str, ...]:
        return tuple(self._classes)

    def decode(self, data: bytes | str | Mapping[str, Any]) -> Any:
        cls, found, type_name = self._envelope(data)
        body = dict(found)  # "type" and "version" are there: both were just checked
        del body["type"], body["version"]
        return self._decoder(cls)(body, type_name)

    def decode_fields(self, data: bytes | str | Mapping[str, Any], names: Iterable[str]) -> dict[str, Any]:
        """Only the fields `names` of a message, each checked and converted as `decode` would (a
        field left out gets its default): for a reader that needs a few fields of a large message
        without building it (the status index files a state by four of its thirty fields). The
        other fields are not checked, so `decode` may still refuse the message."""
        cls, body, type_name = self._envelope(data)
        converters, defaults = _field_rules(cls)
        out: dict[str, Any] = {}
        for name in names:
            if name in body:
                out[name] = converters[name](body[name], f"{type_name}.{name}")
            elif name in defaults:
                out[name] = defaults[name]()
            else:
                raise DecodeError(f"{type_name}: missing required field(s) {name}")
        return out

    def _envelope(self, data: bytes | str | Mapping[str, Any]) -> tuple[type, Mapping[str, Any], str]:
        """The class a message names and the message as an object (its "type" and "version"
        included: `decode_fields` reads only the fields it is asked for, without a copy)."""
        # What JSON gives is anything until checked: an `object`, not `data`'s type, for the
        # compiled build, which checks what is assigned to a variable against its declared type.
        found: object = data
        if isinstance(data, (bytes, bytearray, memoryview, str)):
            try:
                found = orjson.loads(data)
            except orjson.JSONDecodeError as exc:
                raise DecodeError(f"not valid JSON: {exc}") from None
        if type(found) is not dict and not isinstance(found, Mapping):
            raise DecodeError(f"expected a JSON object, got {type(found).__name__}")
        data = found
        raw_type = data.get("type")
        cls = self._classes.get(raw_type) if isinstance(raw_type, str) else None
        if cls is None:
            known = ", ".join(sorted(self._classes))
            raise DecodeError(f"unknown message type {raw_type!r}; expected one of: {known}")
        type_name = str(raw_type)
        version = data.get("version")
        # `true == 1` in Python, but not in JSON Schema's `const`: refuse it as the schema does.
        if isinstance(version, bool) or version != cls.VERSION:
            raise DecodeError(
                f"{type_name}: unsupported schema version {version!r}; this engine reads version {cls.VERSION}"
            )
        return cls, data, type_name

    def _decoder(self, cls: type) -> _Convert:
        decoder = self._decoders.get(cls)
        if decoder is None:
            decoder = _dataclass_decoder(cls)
            self._decoders[cls] = decoder
        return decoder


def _dataclass_decoder(cls: type) -> _Convert:
    hints = type_hints(cls)
    fields = [f for f in dataclasses.fields(cls)]
    required = {
        f.name for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    # Filled lazily so that recursive types (FailureDetails.inner) do not recurse forever.
    converters: dict[str, _Convert] = {}
    #: Each field's name as the class spells it: the keyword `cls(**kwargs)` matches a parameter
    #: by identity first, and a key orjson made is an equal but other string, matched by comparing
    #: it with each parameter's name in turn (twice the cost of the whole `__init__` for a state).
    own: dict[str, str] = {}
    # The fields' paths (for error messages) per path of the object: a message's paths repeat,
    # and building them per field per message was most of the cost of decoding a large one.
    paths: dict[str, dict[str, str]] = {}

    def decode(value: Any, path: str) -> Any:
        if type(value) is not dict and not isinstance(value, Mapping):
            raise DecodeError(f"{path}: expected an object, got {_json_type(value)}")
        if path.count(".") > MAX_DEPTH:
            # Recursive types (a failure's `inner`) would otherwise recurse until Python's limit,
            # and what does decode can still be too deep for orjson to encode (255 levels).
            raise DecodeError(f"{path[:120]}...: nested more than {MAX_DEPTH} levels deep")
        if not converters:
            converters.update({f.name: _converter(hints[f.name]) for f in fields})
            own.update((f.name, f.name) for f in fields)
        # Subset tests first: they allocate nothing, and almost every message passes them.
        if not value.keys() <= converters.keys():
            unknown = value.keys() - converters.keys()
            raise DecodeError(f"{path}: unknown field(s) {', '.join(sorted(unknown))}")
        if not required <= value.keys():
            missing = required - value.keys()
            raise DecodeError(f"{path}: missing required field(s) {', '.join(sorted(missing))}")
        named = paths.get(path)
        if named is None:
            named = {name: f"{path}.{name}" for name in converters}
            if len(paths) < _PATHS_KEPT:
                paths[path] = named
        kwargs = {own[name]: converters[name](item, named[name]) for name, item in value.items()}
        return cls(**kwargs)

    return decode


_FIELD_RULES: dict[type, tuple[dict[str, _Convert], dict[str, Callable[[], Any]]]] = {}


def _field_rules(cls: type) -> tuple[dict[str, _Convert], dict[str, Callable[[], Any]]]:
    """Each field's converter, and the default of each field that has one (`decode_fields`)."""
    rules = _FIELD_RULES.get(cls)
    if rules is None:
        hints = type_hints(cls)
        converters = {f.name: _converter(hints[f.name]) for f in dataclasses.fields(cls)}
        defaults: dict[str, Callable[[], Any]] = {}
        for f in dataclasses.fields(cls):
            if f.default_factory is not dataclasses.MISSING:
                defaults[f.name] = f.default_factory
            elif f.default is not dataclasses.MISSING:
                defaults[f.name] = functools.partial(_same, f.default)
        rules = _FIELD_RULES[cls] = (converters, defaults)
    return rules


def _same(value: Any) -> Any:
    return value


def _converter(hint: Any) -> _Convert:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"unsupported union {hint!r}")
        inner = _converter(args[0])
        return lambda v, p: None if v is None else inner(v, p)
    if origin in (Mapping, dict):
        key_hint, value_hint = typing.get_args(hint)
        if key_hint is not int:
            raise TypeError(f"unsupported mapping {hint!r}: only integer keys")
        return _int_mapping(_converter(value_hint))
    if origin is tuple:
        item = _converter(typing.get_args(hint)[0])

        def convert_tuple(v: Any, p: str) -> tuple[Any, ...]:
            if not isinstance(v, (list, tuple)):  # a tuple: `to_jsonable`'s form, before JSON
                raise DecodeError(f"{p}: expected an array, got {_json_type(v)}")
            return tuple(item(x, f"{p}[{i}]") for i, x in enumerate(v))

        return convert_tuple
    if hint is datetime:
        return _to_datetime
    if hint is bool:
        return _exact(bool, "a boolean")
    if hint is int:
        return _to_int
    if hint is str:
        return _exact(str, "a string")
    if isinstance(hint, type) and issubclass(hint, Enum):
        return _enum_converter(hint)
    if dataclasses.is_dataclass(hint):
        return _dataclass_decoder(hint)  # type: ignore[arg-type]
    raise TypeError(f"no JSON converter for {hint!r}")


def _int_mapping(item: _Convert) -> _Convert:
    def convert_mapping(v: Any, p: str) -> Mapping[int, Any]:
        if type(v) is not dict and not isinstance(v, Mapping):
            raise DecodeError(f"{p}: expected an object, got {_json_type(v)}")
        out: dict[int, Any] = {}
        for key, x in v.items():
            if not isinstance(key, str) or not _INT_KEY.fullmatch(key):
                raise DecodeError(f"{p}: key {key!r} is not an integer")
            out[_to_int(int(key), f"{p} key")] = item(x, f"{p}.{key}")
        return MappingProxyType(out)

    return convert_mapping


def _exact(kind: type, label: str) -> _Convert:
    def convert(v: Any, p: str) -> Any:
        if type(v) is not kind:
            raise DecodeError(f"{p}: expected {label}, got {_json_type(v)}")
        return v

    return convert


#: Integers on the wire are signed 64-bit, as in the JSON Schemas and in every consumer's language.
_INT_RANGE = range(-(2**63), 2**63)


def _to_int(v: Any, p: str) -> int:
    if type(v) is not int:
        raise DecodeError(f"{p}: expected an integer, got {_json_type(v)}")
    if v not in _INT_RANGE:
        raise DecodeError(f"{p}: {v} is outside the signed 64-bit range")
    return v


def _to_datetime(v: Any, p: str) -> datetime:
    if not isinstance(v, str):
        raise DecodeError(f"{p}: expected an RFC 3339 date-time string, got {_json_type(v)}")
    try:
        parsed = datetime.fromisoformat(v)
    except ValueError:
        raise DecodeError(f"{p}: {v!r} is not an RFC 3339 date-time") from None
    # A time without an offset is read as UTC: the engine's clock is UTC everywhere.
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _enum_converter(enum: type[Enum]) -> _Convert:
    by_value = {member.value: member for member in enum}

    def convert(v: Any, p: str) -> Enum:
        try:
            return by_value[v]
        except (KeyError, TypeError):
            allowed = ", ".join(str(x) for x in by_value)
            raise DecodeError(f"{p}: {v!r} is not one of {allowed}") from None

    return convert


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}.get(
        type(v), type(v).__name__
    )
