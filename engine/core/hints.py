"""The field types and docstrings of the core's value classes, in the pure build and the compiled one.

The codec builds each class's decoders, and `engine.core.schema` its JSON Schema, from the class's
type hints. mypyc compiles a class of a compiled module into a native one and gives it annotations
of its own with the type arguments erased: `tuple[str, ...]` reads as `tuple`, `str | None` as
`type`, and a `ClassVar` as an instance field (https://mypyc.readthedocs.io/en/latest/native_classes.html
says what native classes keep; the erasure was seen with the mypyc of mypy 2.4, docs/performance.md,
"The compiled build"). The annotations as written are in the module's source, which a compiled package
ships beside its extension (setuptools installs both; Python imports the extension first): they
are read from there and evaluated in the module, as `typing.get_type_hints` evaluates the string
annotations `from __future__ import annotations` leaves in the pure build. A native class has no
docstring either (`__doc__` is empty): the JSON Schemas' descriptions come from the same source.
"""

from __future__ import annotations

import ast
import sys
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["docstring", "is_native", "type_hints"]

_HINTS: dict[type, dict[str, Any]] = {}


@dataclass(frozen=True, slots=True)
class _Written:
    """A class as its source has it."""

    annotations: dict[str, str]
    docstring: str | None


#: Per source file: each top-level class, by name.
_SOURCES: dict[str, dict[str, _Written]] = {}


def is_native(cls: type) -> bool:
    """Whether mypyc compiled `cls` into a native class (each one has its attribute list there)."""
    return "__mypyc_attrs__" in cls.__dict__


def type_hints(cls: type) -> dict[str, Any]:
    """`typing.get_type_hints(cls)` without the class variables: the fields' hints, of a native class too."""
    hints = _HINTS.get(cls)
    if hints is None:
        found = _native_hints(cls) if is_native(cls) else typing.get_type_hints(cls)
        hints = _HINTS[cls] = {k: v for k, v in found.items() if typing.get_origin(v) is not typing.ClassVar}
    return hints


def docstring(cls: type) -> str | None:
    """`cls.__doc__`, read from the source for a native class."""
    if not is_native(cls):
        return cls.__doc__
    return _written(cls).docstring


def _native_hints(cls: type) -> dict[str, Any]:
    hints: dict[str, Any] = {}
    for klass in reversed(cls.__mro__[:-1]):  # bases first: a subclass's annotation wins, as in Python
        if not is_native(klass):
            hints.update(typing.get_type_hints(klass))
            continue
        module = sys.modules[klass.__module__]
        for name, text in _written(klass).annotations.items():
            hints[name] = eval(text, vars(module))  # noqa: S307 - the package's own source, as get_type_hints does
    return hints


def _written(cls: type) -> _Written:
    module = sys.modules[cls.__module__]
    written = _classes_in(_source_of(module)).get(cls.__qualname__)
    if written is None:
        raise TypeError(f"{cls.__qualname__}: no class of that name in {module.__name__}'s source")
    return written


def _source_of(module: Any) -> str:
    compiled = Path(module.__file__)
    source = compiled.with_name(compiled.name.split(".", 1)[0] + ".py")
    if not source.is_file():
        raise TypeError(f"{module.__name__} is compiled and its source ({source}) is not installed beside it")
    return str(source)


def _classes_in(path: str) -> dict[str, _Written]:
    found = _SOURCES.get(path)
    if found is None:
        text = Path(path).read_text(encoding="utf-8")
        found = {}
        for node in ast.parse(text, path).body:
            if isinstance(node, ast.ClassDef):
                annotations = {
                    item.target.id: ast.unparse(item.annotation)
                    for item in node.body
                    if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)
                }
                found[node.name] = _Written(annotations, ast.get_docstring(node, clean=False))
        _SOURCES[path] = found
    return found
