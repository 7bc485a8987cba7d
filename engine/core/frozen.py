"""Faster `dataclasses.replace` and `__init__` for the core's own frozen, slotted value classes.

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

__all__ = ["evolved", "quick_init"]

T = TypeVar("T")

C = TypeVar("C", bound=type)

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


def quick_init(cls: C) -> C:
    """Give `cls`, a frozen, slotted, keyword-only dataclass with no `__post_init__` and no default
    factory, an `__init__` that sets each slot through its descriptor, with the same signature.

    The one `dataclass` generates calls `object.__setattr__(self, name, value)` per field (a frozen
    class refuses plain assignment), which finds the slot anew each time; the events and commands
    a turn makes (about forty per chain-5 workflow, several from compiled code) spent 6-7 % of the
    compiled engine's samples there (issue 17). Calling the slot's own `__set__` skips the lookup:
    a quarter less per construction. The class is returned, so this stacks over `@dataclass`.
    Raises `TypeError` for a class of any other shape."""
    if not dataclasses.is_dataclass(cls) or not cls.__dataclass_params__.frozen:  # type: ignore[attr-defined]
        raise TypeError(f"{cls.__name__} is not a frozen dataclass")
    if "__slots__" not in cls.__dict__ or hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} must have slots and no __post_init__")
    scope: dict[str, Any] = {}
    params: list[str] = []
    body: list[str] = []
    for number, f in enumerate(dataclasses.fields(cls)):
        if not f.init or not f.kw_only or f.default_factory is not dataclasses.MISSING:
            raise TypeError(f"{cls.__name__}.{f.name}: only keyword-only fields without a factory are supported")
        slot = next(k.__dict__[f.name] for k in cls.__mro__ if f.name in k.__dict__)
        scope[f"_set{number}"] = slot.__set__
        if f.default is dataclasses.MISSING:
            params.append(f.name)
        else:
            scope[f"_default{number}"] = f.default
            params.append(f"{f.name}=_default{number}")
        body.append(f"    _set{number}(self, {f.name})\n")
    signature = f"def __init__(self, *, {', '.join(params)}):\n" if params else "def __init__(self):\n"
    source = signature + ("".join(body) or "    pass\n")
    exec(source, scope)  # noqa: S102 - the code is built from the class's own field names, as dataclasses does
    init = scope["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    generated = cls.__dict__["__init__"]
    init.__annotations__ = dict(generated.__annotations__)
    init.__doc__ = generated.__doc__
    setattr(cls, "__init__", init)  # noqa: B010 - mypy refuses assigning a method
    return cls
