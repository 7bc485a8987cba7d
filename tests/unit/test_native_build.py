"""The native build's module list (`[tool.headrace] native-modules`, `ops.native`)."""

from __future__ import annotations

import dataclasses
import importlib
import typing
from pathlib import Path

import pytest

from engine.build import native
from engine.core.actions import ACTION_TYPES
from engine.core.commands import MESSAGE_TYPES
from engine.core.events import EVENT_TYPES
from engine.core.hints import is_native, type_hints
from engine.core.remote import WorkflowAnswer
from engine.core.state import InstanceState, RemoteTurn
from ops.native import ROOT, NativeBuildError, build, compiled, listed_modules


def _reachable_dataclasses(roots: tuple[type, ...]) -> set[type]:
    """The classes, and every dataclass their fields' values can be, by walking the type hints."""
    seen: set[type] = set()
    todo = list(roots)
    while todo:
        cls = todo.pop()
        if cls in seen or not dataclasses.is_dataclass(cls):
            continue
        seen.add(cls)
        for hint in type_hints(cls).values():
            stack = [hint]
            while stack:
                item = stack.pop()
                stack.extend(typing.get_args(item))
                if isinstance(item, type):
                    todo.append(item)
    return seen


def test_every_listed_module_exists() -> None:
    modules = listed_modules()
    assert "engine.core.orchestrator" in modules
    for name in modules:
        assert (ROOT / (name.replace(".", "/") + ".py")).is_file(), name
        importlib.import_module(name)


def test_the_wire_classes_compiled_are_the_events_and_actions_and_write_out_their_constructors() -> None:
    # mypyc makes a compiled module's classes native. The codec and the schema then read their
    # field types from the source (`engine.core.hints`), `core.frozen.evolved` copies them through
    # their constructor, and that constructor must be written in the class (`init=False`) for mypyc
    # to compile it: the one `dataclass` writes stays interpreted. The commands and the state stay
    # interpreted (the worker, the REST API and the fold read them from interpreted code).
    wire = _reachable_dataclasses((*EVENT_TYPES, *MESSAGE_TYPES, *ACTION_TYPES, InstanceState, WorkflowAnswer))
    assert InstanceState in wire and len(wire) > 20
    listed = set(listed_modules())
    compiled_wire = {cls for cls in wire if cls.__module__ in listed}
    assert compiled_wire == {*EVENT_TYPES, *ACTION_TYPES, InstanceState, RemoteTurn}
    for cls in compiled_wire:
        assert not cls.__dataclass_params__.init, cls  # type: ignore[attr-defined]
        assert is_native(cls) == native(), cls  # native exactly when this is the compiled build


def test_compiled_says_where_each_module_was_loaded_from() -> None:
    found = compiled(["engine.core.timers", "orjson.orjson"])
    assert found == {"engine.core.timers": False, "orjson.orjson": True}  # orjson's core is an extension


def test_a_copy_goes_to_a_new_directory(tmp_path: Path) -> None:
    with pytest.raises(NativeBuildError, match="exists already"):
        build(tmp_path)
