"""`engine.core.hints.type_hints`: the field types the codec and the schema are built from, in
either build (a compiled class's own annotations keep no type arguments)."""

from __future__ import annotations

import dataclasses
import typing
from datetime import datetime

from engine.build import compiled
from engine.core import events as ev
from engine.core.actions import ACTION_TYPES, Action, CompleteWorkflow
from engine.core.hints import is_native, type_hints
from engine.core.state import InstanceState
from engine.core.values import FailureDetails, ParentInstance, RuntimeStatus


def test_the_events_hints_keep_their_type_arguments() -> None:
    assert type_hints(ev.WorkflowStarted) == {"timestamp": datetime, "seq": int, "event_id": int,
                                              "patches": tuple[str, ...]}
    started = type_hints(ev.ExecutionStarted)
    assert started["parent"] == ParentInstance | None and started["input"] == str | None
    assert type_hints(ev.ExecutionCompleted)["status"] is RuntimeStatus
    assert type_hints(ev.TaskFailed)["failure"] is FailureDetails
    assert type_hints(CompleteWorkflow)["carryover_events"] == tuple[ev.EventRaised, ...]


def test_every_field_of_a_value_class_has_its_hint_and_no_class_variable_is_one() -> None:
    for cls in (ev.HistoryEvent, *ev.EVENT_TYPES, Action, *ACTION_TYPES, InstanceState):
        hints = type_hints(cls)
        assert list(hints) == [f.name for f in dataclasses.fields(cls)], cls
        assert "VERSION" not in hints and cls.VERSION == 1  # type: ignore[attr-defined]
        assert all(typing.get_origin(h) is not typing.ClassVar for h in hints.values())


def test_a_native_class_is_told_apart() -> None:
    assert not is_native(FailureDetails)  # interpreted in both builds
    assert is_native(ev.TaskScheduled) == compiled(ev)
