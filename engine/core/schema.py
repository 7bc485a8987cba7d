"""JSON Schemas of the wire format, generated from the value classes themselves.

The classes are the single definition; `schemas/` holds the generated files for people who produce
or consume messages without our code. A test fails when the files and the classes disagree:
regenerate with `python -m engine.core.schema schemas`.
"""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Any

import orjson

from .actions import ACTION_TYPES
from .codec import INT_KEY_PATTERN
from .commands import MESSAGE_TYPES, ActivityWorkItem
from .events import EVENT_TYPES
from .hints import docstring, type_hints
from .state import InstanceState

__all__ = ["FAMILIES", "main", "schema_for", "write_schemas"]

DIALECT = "https://json-schema.org/draft/2020-12/schema"
BASE_ID = "https://headrace.dev/schemas"

#: Folder under `schemas/` → the classes whose messages it describes.
FAMILIES: dict[str, tuple[type, ...]] = {
    "events": EVENT_TYPES,
    "actions": ACTION_TYPES,
    "messages": (*MESSAGE_TYPES, ActivityWorkItem),
    #: The value of a `status` topic record (engine/wire/records.py).
    "state": (InstanceState,),
}


def schema_for(cls: type[Any], family: str) -> dict[str, Any]:
    defs: dict[str, Any] = {}
    body = _object_schema(cls, defs)
    body["properties"] = {
        "type": {"const": cls.__name__, "description": "The message type."},
        "version": {"const": cls.VERSION, "description": "The schema version of this message type."},
        **body["properties"],
    }
    body["required"] = ["type", "version", *body["required"]]
    schema = {
        "$schema": DIALECT,
        "$id": f"{BASE_ID}/{family}/{cls.__name__}.json",
        "title": cls.__name__,
        "description": _description(cls),
        **body,
    }
    if defs:
        schema["$defs"] = defs
    return schema


def _description(cls: type) -> str:
    doc = docstring(cls) or ""
    if not doc or doc.startswith(f"{cls.__name__}("):  # dataclasses write the signature when there is none
        doc = f"The {cls.__name__} message."
    return " ".join(doc.split())


def _object_schema(cls: type, defs: dict[str, Any]) -> dict[str, Any]:
    hints = type_hints(cls)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for f in dataclasses.fields(cls):
        properties[f.name] = _type_schema(hints[f.name], defs)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            required.append(f.name)
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


def _type_schema(hint: Any, defs: dict[str, Any]) -> dict[str, Any]:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        (inner,) = [a for a in typing.get_args(hint) if a is not type(None)]
        return {"anyOf": [_type_schema(inner, defs), {"type": "null"}]}
    if origin is tuple:
        return {"type": "array", "items": _type_schema(typing.get_args(hint)[0], defs)}
    if origin in (Mapping, dict):
        # Only integer keys (task, timer and child IDs), written as JSON's string keys.
        value = typing.get_args(hint)[1]
        return {"type": "object", "propertyNames": {"pattern": INT_KEY_PATTERN},
                "additionalProperties": _type_schema(value, defs)}
    simple = {str: "string", int: "integer", bool: "boolean"}
    if hint in simple:
        return {"type": simple[hint]}
    if hint is typing.Any:
        return {}
    from datetime import datetime

    if hint is datetime:
        return {"type": "string", "format": "date-time"}
    if isinstance(hint, type) and issubclass(hint, Enum):
        return {"enum": [m.value for m in hint]}
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        name = hint.__name__
        if name not in defs:
            defs[name] = {}  # placeholder first: types may refer to themselves
            # Nested values, messages included (carryover events), are written as their fields
            # only, without "type" and "version": the enclosing field says what they are.
            defs[name] = _object_schema(hint, defs)
        return {"$ref": f"#/$defs/{name}"}
    raise TypeError(f"no JSON Schema for {hint!r}")


def rendered() -> dict[Path, bytes]:
    files: dict[Path, bytes] = {}
    for family, classes in FAMILIES.items():
        for cls in classes:
            text = orjson.dumps(schema_for(cls, family), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
            files[Path(family) / f"{cls.__name__}.json"] = text + b"\n"
    return files


def write_schemas(root: Path) -> list[Path]:
    written = []
    for rel, data in rendered().items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_bytes() != data:
            path.write_bytes(data)
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    root = Path(args[0] if args else "schemas")
    for path in write_schemas(root):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
