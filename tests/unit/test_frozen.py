"""`engine.core.frozen.evolved`: what `dataclasses.replace` gives, for the classes it serves."""

from __future__ import annotations

import ast
import dataclasses
import sys
from datetime import datetime
from pathlib import Path
from types import MappingProxyType, ModuleType

import pytest
from support import at

from engine.core import events as ev
from engine.core.actions import ACTION_TYPES, Action
from engine.core.frozen import evolved
from engine.core.state import InstanceState, RemoteTurn
from engine.core.values import FailureDetails, RuntimeStatus


def test_a_state_and_an_event_evolve_as_replace_makes_them() -> None:
    state = InstanceState(instance_id="i", name="w", status=RuntimeStatus.RUNNING, execution_id="e",
                          pending_tasks=MappingProxyType({0: "a"}), recent_commands=("c",), created_at=at())
    changes = {"history_length": 7, "status": RuntimeStatus.COMPLETED, "output": '"done"'}
    made = evolved(state, changes)
    assert made == dataclasses.replace(state, **changes)  # type: ignore[arg-type]
    assert made is not state and state.history_length == 0  # the original is untouched
    failed = ev.TaskFailed(timestamp=at(), task_scheduled_id=3, failure=FailureDetails(error_type="E", message="m"))
    assert evolved(failed, {"seq": 4}) == dataclasses.replace(failed, seq=4)
    assert evolved(failed, {}) == failed


def test_a_class_that_checks_its_fields_is_refused() -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class Checked:
        n: int

        def __post_init__(self) -> None:
            if self.n < 0:
                raise ValueError("negative")

    with pytest.raises(TypeError, match="checks its fields"):
        evolved(Checked(1), {"n": -1})


def test_what_replace_would_do_otherwise_is_refused() -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class Derived:
        n: int
        twice: int = dataclasses.field(init=False, default=0)

    with pytest.raises(TypeError, match="init=False"):
        evolved(Derived(1), {"n": 2})
    started = ev.WorkflowStarted(timestamp=at())
    with pytest.raises(TypeError, match="no field"):
        evolved(started, {"sq": 1})  # a typo is an error, as replace makes it
    with pytest.raises(TypeError, match="not a frozen dataclass"):
        evolved(object(), {})


def test_the_fold_copies_pending_maps_of_any_kind_into_plain_dicts() -> None:
    from collections import ChainMap

    from engine.core.state import fold

    state = InstanceState(instance_id="i", name="w", status=RuntimeStatus.RUNNING, execution_id="e",
                          history_length=1, pending_tasks=MappingProxyType(ChainMap({}, {1: "a"})))
    folded = fold(state, ev.TaskCompleted(timestamp=at(), seq=1, task_scheduled_id=1, result="1"))
    assert dict(folded.pending_tasks) == {}
    assert dict(state.pending_tasks) == {1: "a"}  # the original's maps are untouched


_NO_CODE = (lambda: None).__code__  # a native class's `__init__` is compiled: it has no code object


def _quickened() -> list[type]:
    from engine.core import actions, commands, state, values
    from engine.wire import records

    found = [cls for module in (ev, commands, actions, values, records, state) for cls in vars(module).values()
             if isinstance(cls, type) and dataclasses.is_dataclass(cls) and cls.__module__ == module.__name__
             and "__quick_set0" in getattr(cls.__init__, "__code__", _NO_CODE).co_freevars]
    return found


def test_the_core_value_classes_have_the_quick_init() -> None:
    from engine.core.hints import is_native

    names = {cls.__name__ for cls in _quickened()}
    # The classes a turn makes most: if these lost the decorator the suite should say so.
    assert {"ActivityResult", "ActivityWorkItem", "StartWorkflow", "FailureDetails"} <= names
    # The events, actions and states have it in the pure build; compiled, they keep their compiled
    # constructors. A state's empty maps are a constant factory's (`frozen._default_of`).
    compiled = {"TaskScheduled", "TaskCompleted", "WorkflowStarted", "WorkflowCompleted", "ScheduleTask",
                "InstanceState", "RemoteTurn"}
    assert compiled.isdisjoint(names) if is_native(ev.TaskScheduled) else compiled <= names


@pytest.mark.parametrize("cls", _quickened(), ids=lambda cls: cls.__name__)
def test_a_quick_init_takes_what_the_dataclass_init_took(cls: type) -> None:
    import inspect

    fields = dataclasses.fields(cls)
    parameters = list(inspect.signature(cls).parameters.values())
    assert [p.name for p in parameters] == [f.name for f in fields]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in parameters)
    assert [p.default for p in parameters] == [
        f.default_factory() if f.default_factory is not dataclasses.MISSING
        else inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default for f in fields]
    # Every field set from its keyword, distinct values so a swapped slot would show.
    given = {f.name: object() for f in fields}
    made = cls(**given)
    assert {f.name: getattr(made, f.name) for f in fields} == given
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(made, fields[0].name, 1)
    with pytest.raises(TypeError, match="unexpected keyword argument 'nope'"):
        cls(**given, nope=1)
    required = [f.name for f in fields if f.default is dataclasses.MISSING]
    if required:
        with pytest.raises(TypeError, match="missing"):
            cls(**{k: v for k, v in given.items() if k != required[0]})


def test_quick_init_refuses_the_shapes_it_does_not_copy() -> None:
    from engine.core.frozen import quick_init

    @dataclasses.dataclass(frozen=True, slots=True)
    class Positional:
        n: int

    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
    class Factory:
        items: list[int] = dataclasses.field(default_factory=list)

    @dataclasses.dataclass(slots=True, kw_only=True)
    class Mutable:
        n: int

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class NoSlots:
        n: int

    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
    class WithInitVar:
        n: int
        scale: dataclasses.InitVar[int] = 1

    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True, init=False)
    class NoInit:
        n: int

    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
    class OwnInit:
        n: int

        def __init__(self, *, n: int) -> None:  # a check the quick one would drop
            if n < 0:
                raise ValueError("negative")
            object.__setattr__(self, "n", n)

    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
    class NewEachCall:  # a factory of fresh values: a constant default would share one
        items: MappingProxyType[int, int] = dataclasses.field(default_factory=lambda: MappingProxyType({}))

    for cls in (Positional, Factory, Mutable, NoSlots, WithInitVar, NoInit, OwnInit, NewEachCall):
        with pytest.raises(TypeError):
            quick_init(cls)


def test_a_quick_init_resolves_its_annotations_in_the_class_module() -> None:
    import typing

    from engine.core.commands import StartWorkflow

    hints = typing.get_type_hints(StartWorkflow.__init__)  # a class with quick_init in either build
    assert hints["scheduled_start"] == datetime | None and hints["return"] is type(None)


def _written_in_source(module: ModuleType) -> dict[str, ast.FunctionDef]:
    """Each class's `__init__` as the module's source writes it (the same in either build)."""
    found: dict[str, ast.FunctionDef] = {}
    source = Path(module.__file__ or "").with_name(module.__name__.rpartition(".")[2] + ".py")
    for node in ast.parse(source.read_text()).body:
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                    found[node.name] = item
    return found


_WRITTEN = [ev.HistoryEvent, *ev.EVENT_TYPES, Action, *ACTION_TYPES, InstanceState, RemoteTurn]


@pytest.mark.parametrize("cls", _WRITTEN, ids=lambda cls: cls.__name__)
def test_a_compiled_value_class_writes_out_a_constructor_that_only_sets_each_field(cls: type) -> None:
    # The events, actions and states are compiled in the native build, which runs the `__init__`
    # each writes out; the pure build runs `quick_init`'s where it has one, which keeps the written
    # one as `__quick_written__`.
    # The two must do the same, so the written one may only set each field from its keyword, in order.
    from engine.core.hints import is_native

    fields = dataclasses.fields(cls)
    written = _written_in_source(sys.modules[cls.__module__])[cls.__name__]
    body = [ast.unparse(statement) for statement in written.body]
    assert body == [f"object.__setattr__(self, '{f.name}', {f.name})" for f in fields]
    if not is_native(cls):  # compiled, the written one runs: its body was just checked
        given = {f.name: object() for f in fields}
        made = object.__new__(cls)
        getattr(cls.__init__, "__quick_written__", cls.__init__)(made, **given)
        assert {f.name: getattr(made, f.name) for f in fields} == given


_NONE: MappingProxyType[int, int] = MappingProxyType({})
_ONE: MappingProxyType[int, int] = MappingProxyType({1: 1})


def test_a_constant_default_factory_is_the_quick_init_default() -> None:
    from engine.core.frozen import quick_init

    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True, init=False)
    class Constant:
        n: int
        items: MappingProxyType[int, int] = dataclasses.field(default_factory=lambda: _NONE)

        def __init__(self, *, n: int, items: MappingProxyType[int, int] = _NONE) -> None:
            object.__setattr__(self, "n", n)
            object.__setattr__(self, "items", items)

    written = Constant.__init__
    quick_init(Constant)
    assert Constant.__init__ is not written
    assert Constant(n=1).items is _NONE
    assert Constant(n=1, items=_ONE).items is _ONE
    # The workflow state's empty maps: the one read-only constant, in either build.
    state = InstanceState(instance_id="x")
    empty = next(f for f in dataclasses.fields(InstanceState) if f.name == "pending_tasks").default_factory()  # type: ignore[misc]
    assert state.pending_tasks is state.pending_timers is state.unfinished_children is empty


def test_quick_init_refuses_a_written_init_unlike_the_fields() -> None:
    from engine.core.frozen import quick_init

    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True, init=False)
    class OtherDefault:
        n: int = 1

        def __init__(self, *, n: int = 2) -> None:
            object.__setattr__(self, "n", n)

    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True, init=False)
    class OtherOrder:
        a: int
        b: int

        def __init__(self, *, b: int, a: int) -> None:
            object.__setattr__(self, "a", a)
            object.__setattr__(self, "b", b)

    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True, init=False)
    class OtherType:
        n: int

        def __init__(self, *, n: int | None) -> None:  # the compiled build would take None, the pure not
            object.__setattr__(self, "n", n)

    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True, init=False)
    class MoreKeywords:
        n: int

        def __init__(self, *, n: int, **more: int) -> None:
            object.__setattr__(self, "n", n)

    with pytest.raises(TypeError, match="defaults"):
        quick_init(OtherDefault)

    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True, init=False)
    class OtherConstant:  # the factory's constant is not the written default
        items: MappingProxyType[int, int] = dataclasses.field(default_factory=lambda: _ONE)

        def __init__(self, *, items: MappingProxyType[int, int] = _NONE) -> None:
            object.__setattr__(self, "items", items)

    with pytest.raises(TypeError, match="defaults"):
        quick_init(OtherConstant)

    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True, init=False)
    class MutableWritten:  # `{} == MappingProxyType({})`, but the compiled build would share the dict
        items: MappingProxyType[int, int] = dataclasses.field(default_factory=lambda: _NONE)

        def __init__(self, *, items: MappingProxyType[int, int] = {}) -> None:  # type: ignore[assignment]  # noqa: B006
            object.__setattr__(self, "items", items)

    with pytest.raises(TypeError, match="defaults"):
        quick_init(MutableWritten)
    with pytest.raises(TypeError, match="other parameters"):
        quick_init(OtherOrder)
    with pytest.raises(TypeError, match="annotations"):
        quick_init(OtherType)
    with pytest.raises(TypeError, match="other parameters"):
        quick_init(MoreKeywords)


def test_a_state_evolves_as_replace_makes_it_and_its_copy_names_every_field() -> None:
    # `InstanceState.evolved` is written out (the compiled build's copy): every field, in order,
    # each the change or else the state's own.
    method = next(item for item in _written_class(InstanceState).body
                  if isinstance(item, ast.FunctionDef) and item.name == "evolved")
    returned = method.body[-1]
    assert isinstance(returned, ast.Return) and isinstance(returned.value, ast.Call)
    assert [ast.unparse(k) for k in returned.value.keywords] == [
        f"{f.name}=get('{f.name}', self.{f.name})" for f in dataclasses.fields(InstanceState)]
    state = InstanceState(instance_id="i", name="w", status=RuntimeStatus.RUNNING, execution_id="e",
                          pending_tasks=MappingProxyType({0: "a"}), recent_commands=("c",), created_at=at(),
                          remote=RemoteTurn(seen=2))
    for changes in ({}, {"history_length": 7, "status": RuntimeStatus.COMPLETED, "output": '"done"'},
                    {"pending_tasks": MappingProxyType({}), "remote": None, "children": ("x",)}):
        made = state.evolved(dict(changes))
        assert made == dataclasses.replace(state, **changes)  # type: ignore[arg-type]
        assert made is not state
    assert state.history_length == 0 and state.status is RuntimeStatus.RUNNING  # the original is untouched


def _written_class(cls: type) -> ast.ClassDef:
    module = sys.modules[cls.__module__]
    source = Path(module.__file__ or "").with_name(module.__name__.rpartition(".")[2] + ".py")
    return next(node for node in ast.parse(source.read_text()).body
                if isinstance(node, ast.ClassDef) and node.name == cls.__name__)


def test_declared_sets_the_version_and_quickens_what_it_is_given() -> None:
    from engine.core.frozen import declared

    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
    class Base:
        n: int

    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
    class Kind(Base):
        m: int = 0

    written = Kind.__init__
    declared(Base, version=3, quickened=(Kind,))
    assert Base.VERSION == 3 and Kind.VERSION == 3  # type: ignore[attr-defined]
    assert Kind.__init__ is not written and "__quick_set0" in Kind.__init__.__code__.co_freevars
    assert "__quick_set0" not in Base.__init__.__code__.co_freevars  # only what it was given
