"""Faster `dataclasses.replace` and `__init__` for the core's own frozen, slotted value classes.

`replace` collects every field into keyword arguments and calls `__init__`, which parses them
again: for a workflow's state (thirty-odd fields) that was a visible part of every turn, and for
the events a turn renumbers a few percent of a fan-in's (issue 17). The classes this serves have no
`__post_init__` and their changes come from the engine itself, already of the right types, so the
fields are copied onto a new object directly.
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from .hints import is_native

__all__ = ["declared", "evolved", "quick_init"]

T = TypeVar("T")

C = TypeVar("C", bound=type)

#: Per class: its field names, as a tuple and a set, and whether mypyc compiled it (`hints.is_native`).
_FIELDS: dict[type, tuple[tuple[str, ...], frozenset[str], bool]] = {}
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
        names, every = _fields_of(cls)
        known = _FIELDS[cls] = (names, every, is_native(cls))
    names, every, native = known
    if not changes.keys() <= every:
        raise TypeError(f"{cls.__name__} has no field(s) {', '.join(sorted(changes.keys() - every))}")
    if native:
        # mypyc's `__new__` runs the class's compiled `__init__`, and `object.__new__` refuses a
        # native class: the copy is made by the constructor, which costs about what a copy does.
        return cls(**{name: changes[name] if name in changes else getattr(value, name) for name in names})
    new = _new(cls)
    for name in names:
        _set(new, name, changes[name] if name in changes else getattr(value, name))
    return new


def _fields_of(cls: type) -> tuple[tuple[str, ...], frozenset[str]]:
    """The field names of a frozen dataclass whose fields are all `__init__` parameters and whose
    `__init__` checks and derives nothing (`evolved` and `quick_init` both bypass it)."""
    if not dataclasses.is_dataclass(cls) or not cls.__dataclass_params__.frozen:  # type: ignore[attr-defined]
        raise TypeError(f"{cls.__name__} is not a frozen dataclass")
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} checks its fields in __post_init__")
    fields = dataclasses.fields(cls)
    if any(not f.init for f in fields):
        raise TypeError(f"{cls.__name__} has init=False fields (which dataclasses.replace resets)")
    names = tuple(f.name for f in fields)
    return names, frozenset(names)


def quick_init(cls: C) -> C:
    """Give `cls`, a frozen, slotted, keyword-only dataclass with no `__post_init__` and no default
    factory but a constant one, an `__init__` that sets each slot through its descriptor, with the
    same signature (a constant factory's value as the default).

    The one `dataclass` generates calls `object.__setattr__(self, name, value)` per field (a frozen
    class refuses plain assignment), which finds the slot anew each time; the events and commands
    a turn makes (about forty per chain-5 workflow, several from compiled code) spent 6-7 % of the
    compiled engine's samples there (issue 17). Calling the slot's own `__set__` skips the lookup:
    a third less per construction. As `dataclasses` does, the function is made by a factory run
    in the class's module, so its string annotations resolve there (`typing.get_type_hints`).

    The `__init__` replaced is the one `dataclass` wrote, or one the class writes out itself
    (`init=False`) with the fields as keyword-only parameters, in order, with their annotations
    and defaults: a class of a compiled module spells its constructor out so that mypyc compiles
    it, and in the pure build this one is faster (the written one stays reachable as
    `__init__.__quick_written__`, where the tests check that it only sets each field). A class
    mypyc compiled keeps its own: it is returned as it is. The class is returned, so this also
    stacks over `@dataclass`. Raises `TypeError` for a class of any other shape."""
    names, _ = _fields_of(cls)
    if is_native(cls):
        return cls
    if "__slots__" not in cls.__dict__:
        raise TypeError(f"{cls.__name__} must have slots")
    replaced = cls.__dict__.get("__init__")
    code = getattr(replaced, "__code__", None)
    if code is None:
        raise TypeError(f"{cls.__name__} has no __init__ of its own (init=False without one)")
    # `<string>`: where `dataclasses` compiles what it writes (a class that writes one is init=False).
    if (code.co_filename == "<string>") != cls.__dataclass_params__.init:  # type: ignore[attr-defined]
        raise TypeError(f"{cls.__name__}.__init__ is neither the one dataclass wrote nor one written for init=False")
    if (code.co_varnames[1:code.co_kwonlyargcount + 1] != names or code.co_argcount != 1
            or code.co_flags & (inspect.CO_VARARGS | inspect.CO_VARKEYWORDS)):
        raise TypeError(f"{cls.__name__}: __init__ takes other parameters than its keyword-only fields")
    fields = dataclasses.fields(cls)
    defaults = {f.name: _default_of(cls, f) for f in fields}
    if code.co_filename != "<string>":
        # Equal and of one type: a written `{}` is equal to a factory's empty mapping proxy, but the
        # compiled build would then share one mutable dict where the pure build has a read-only map.
        given = {name: (type(value), value) for name, value in (replaced.__kwdefaults__ or {}).items()}  # type: ignore[union-attr]
        if given != {name: (type(value), value) for name, value in defaults.items()
                    if value is not dataclasses.MISSING}:
            raise TypeError(f"{cls.__name__}.__init__'s defaults are not its fields' defaults")
        # The compiled build checks each argument against its parameter's annotation: one unlike
        # its field's would refuse there what the pure build takes.
        written = {name: hint for name, hint in replaced.__annotations__.items() if name != "return"}
        if written != {f.name: f.type for f in fields}:
            raise TypeError(f"{cls.__name__}.__init__'s annotations are not its fields' annotations")
    closure: dict[str, Any] = {}  # what the generated function refers to, by the name it uses
    signature: list[str] = []
    body: list[str] = []
    for n, f in enumerate(fields):
        default = defaults[f.name]
        if f.name == "self" or f.name.startswith("__quick_"):
            raise TypeError(f"{cls.__name__}.{f.name}: a field name the generated __init__ needs")
        slot = next(k.__dict__[f.name] for k in cls.__mro__ if f.name in k.__dict__)
        closure[f"__quick_set{n}"] = slot.__set__
        if default is dataclasses.MISSING:
            signature.append(f.name)
        else:
            closure[f"__quick_default{n}"] = default
            signature.append(f"{f.name}=__quick_default{n}")
        body.append(f"        __quick_set{n}(self, {f.name})\n")
    header = f"    def __init__(self, *, {', '.join(signature)}):\n" if signature else "    def __init__(self):\n"
    source = (f"def __quick_factory({', '.join(closure)}):\n" + header + ("".join(body) or "        pass\n")
              + "    return __init__\n")
    made: dict[str, Any] = {}
    # The class's own module as globals, so annotations resolve as they did; `made` takes the factory.
    exec(source, vars(sys.modules[cls.__module__]), made)  # noqa: S102 - built from the class's own field names
    init = made["__quick_factory"](**closure)
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__annotations__ = dict(replaced.__annotations__)
    init.__doc__ = replaced.__doc__
    if code.co_filename != "<string>":
        init.__quick_written__ = replaced  # not `__wrapped__`: inspect would take it for this one's
    setattr(cls, "__init__", init)  # noqa: B010 - mypy refuses assigning a method
    return cls


def _default_of(cls: type, f: dataclasses.Field[Any]) -> Any:
    """The value a missing keyword takes: the field's default, or what its default factory gives
    when that is one constant (the same object at every call: a workflow state's empty, read-only
    maps, which `dataclass` accepts only through a factory because a mapping proxy is unhashable).
    A factory that makes a new value per call would be shared by every instance: refused. (Two
    calls are what is checked: a factory that returns one mutable object, or reads a global
    rebound later, is the class's own mistake, as a mutable default would be.)"""
    if f.default_factory is dataclasses.MISSING:
        return f.default
    made = f.default_factory()
    if f.default_factory() is not made:
        raise TypeError(f"{cls.__name__}.{f.name}: a default factory that makes a new value per call is not supported")
    return made


def declared(base: type, *, version: int, quickened: Iterable[type] = ()) -> None:
    """What a module of value classes sets after its classes rather than in them: the schema
    `VERSION` of `base` (and so of its subclasses), and `quick_init`'s constructor on `quickened`.

    Not in the class bodies, because the native build compiles these modules: mypyc makes any class
    attribute of a dataclass an instance field (a `ClassVar`, a `Final` or a bare assignment alike),
    and a class with any decorator besides `dataclass` an interpreted class (docs/performance.md,
    "The compiled build"). A native class keeps its compiled constructor (`quick_init` returns it)."""
    setattr(base, "VERSION", version)  # noqa: B010 - an attribute mypy and mypyc do not know of
    for cls in quickened:
        quick_init(cls)
