"""`dataclasses.replace` for the core's own frozen, slotted value classes, at half its cost.

`replace` collects every field into keyword arguments and calls `__init__`, which parses them
again: for a workflow's state (thirty-odd fields) that was a visible part of every turn, and for
the events a turn renumbers a few percent of a fan-in's (issue 17). The classes this serves have no
`__post_init__` and their changes come from the engine itself, already of the right types, so the
fields are copied onto a new object directly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

__all__ = ["evolved"]

T = TypeVar("T")

_FIELDS: dict[type, tuple[str, ...]] = {}
_new = object.__new__
_set = object.__setattr__


def evolved(value: T, changes: Mapping[str, Any]) -> T:
    """A copy of `value` (a frozen dataclass with slots and no `__post_init__`) with `changes`."""
    cls = type(value)
    names = _FIELDS.get(cls)
    if names is None:
        assert not hasattr(cls, "__post_init__"), f"{cls.__name__} checks its fields: use dataclasses.replace"
        names = _FIELDS[cls] = tuple(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]
    new = _new(cls)
    for name in names:
        _set(new, name, changes[name] if name in changes else getattr(value, name))
    return new
