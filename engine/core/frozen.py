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

_FIELDS: dict[type, tuple[tuple[str, ...], frozenset[str]]] = {}
_new = object.__new__
_set = object.__setattr__


def evolved(value: T, changes: Mapping[str, Any]) -> T:
    """A copy of `value` (a frozen dataclass with slots and no `__post_init__`) with `changes`.

    Raises `TypeError` where `replace` would differ: a class whose `__post_init__` checks or
    derives fields, one with `init=False` fields (which `replace` resets), or a change that names
    no field."""
    cls = type(value)
    known = _FIELDS.get(cls)
    if known is None:
        known = _FIELDS[cls] = _fields_of(cls)
    names, every = known
    if not changes.keys() <= every:
        raise TypeError(f"{cls.__name__} has no field(s) {', '.join(sorted(changes.keys() - every))}")
    new = _new(cls)
    for name in names:
        _set(new, name, changes[name] if name in changes else getattr(value, name))
    return new


def _fields_of(cls: type) -> tuple[tuple[str, ...], frozenset[str]]:
    if not dataclasses.is_dataclass(cls) or not cls.__dataclass_params__.frozen:  # type: ignore[attr-defined]
        raise TypeError(f"{cls.__name__} is not a frozen dataclass")
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} checks its fields in __post_init__: use dataclasses.replace")
    fields = dataclasses.fields(cls)
    if any(not f.init for f in fields):
        raise TypeError(f"{cls.__name__} has init=False fields, which replace resets: use dataclasses.replace")
    names = tuple(f.name for f in fields)
    return names, frozenset(names)
