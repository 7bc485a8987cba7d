"""History propagation (Dapr 1.16+ `PropagationScope`): a workflow hands its history to a callee.

A workflow that calls an activity or a child workflow with `propagation=PropagationScope.X` sends
along its own history (`OWN_HISTORY`), or its own plus the history it received itself
(`LINEAGE`). The callee reads it with `ctx.get_propagated_history()`: a `PropagatedHistory` of
chunks, oldest ancestor first, immediate caller last, with the query helpers of Dapr's SDK.

On the wire it is JSON text: `{"scope": "OWN_HISTORY", "chunks": [{"app_id", "instance_id",
"workflow_name", "events": [history events in the codec's wire form]}]}`. The engine builds it
when it turns the call into work (`build_propagated_history`); a child keeps it in its
`ExecutionStarted` event, so every replay reads the same history.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

import orjson

from . import events as ev
from .codec import Codec, to_jsonable
from .values import FailureDetails

__all__ = [
    "DEFAULT_APP_ID",
    "ActivityResult",
    "ChildWorkflowResult",
    "PropagatedHistory",
    "PropagationNotFoundError",
    "PropagationScope",
    "WorkflowResult",
    "build_propagated_history",
]

#: The app ID chunks carry: Headrace runs every workflow as one app.
DEFAULT_APP_ID = "headrace"

_EVENTS = Codec(ev.EVENT_TYPES)


class PropagationScope(Enum):
    """What a call hands on (Dapr's values: NONE=0, OWN_HISTORY=1, LINEAGE=2)."""

    NONE = 0
    OWN_HISTORY = 1
    LINEAGE = 2


class PropagationNotFoundError(Exception):
    """A query on propagated history found nothing of that name."""


@dataclass(frozen=True)
class ActivityResult:
    """One activity call in a propagated chunk; `input`/`output` are JSON text or None."""

    name: str
    started: bool
    completed: bool
    failed: bool
    input: str | None
    output: str | None
    error: FailureDetails | None


@dataclass(frozen=True)
class ChildWorkflowResult:
    name: str
    started: bool
    completed: bool
    failed: bool
    output: str | None
    error: FailureDetails | None


@dataclass(frozen=True)
class WorkflowResult:
    """One workflow's chunk; the `get_*` helpers return calls in execution order, `get_last_*` the last."""

    instance_id: str
    app_id: str
    name: str
    _events: list[ev.HistoryEvent] = field(repr=False)

    def get_activities_by_name(self, name: str) -> list[ActivityResult]:
        return [self._activity(e) for e in self._events if isinstance(e, ev.TaskScheduled) and e.name == name]

    def get_last_activity_by_name(self, name: str) -> ActivityResult:
        found = self.get_activities_by_name(name)
        if not found:
            raise PropagationNotFoundError(f"no activity named {name!r} in propagated history for workflow "
                                           f"{self.name!r}")
        return found[-1]

    def get_child_workflows_by_name(self, name: str) -> list[ChildWorkflowResult]:
        return [self._child(e) for e in self._events if isinstance(e, ev.ChildWorkflowCreated) and e.name == name]

    def get_last_child_workflow_by_name(self, name: str) -> ChildWorkflowResult:
        found = self.get_child_workflows_by_name(name)
        if not found:
            raise PropagationNotFoundError(f"no child workflow named {name!r} in propagated history for workflow "
                                           f"{self.name!r}")
        return found[-1]

    def _activity(self, scheduled: ev.TaskScheduled) -> ActivityResult:
        output, error, completed, failed = None, None, False, False
        for e in self._events:
            if isinstance(e, ev.TaskCompleted) and e.task_scheduled_id == scheduled.event_id:
                completed, output = True, e.result
            elif isinstance(e, ev.TaskFailed) and e.task_scheduled_id == scheduled.event_id:
                failed, error = True, e.failure
        return ActivityResult(scheduled.name, True, completed, failed, scheduled.input, output, error)

    def _child(self, created: ev.ChildWorkflowCreated) -> ChildWorkflowResult:
        output, error, completed, failed = None, None, False, False
        for e in self._events:
            if isinstance(e, ev.ChildWorkflowCompleted) and e.task_scheduled_id == created.event_id:
                completed, output = True, e.result
            elif isinstance(e, ev.ChildWorkflowFailed) and e.task_scheduled_id == created.event_id:
                failed, error = True, e.failure
        return ChildWorkflowResult(created.name, True, completed, failed, output, error)


@dataclass(frozen=True)
class _Chunk:
    app_id: str
    instance_id: str
    workflow_name: str
    events: list[ev.HistoryEvent]


class PropagatedHistory:
    """History a caller handed on: chunks in execution order (oldest ancestor first, caller last).

    `events` are Headrace's history events (`engine.core.events`), where Dapr's SDK has protobufs.
    """

    def __init__(self, chunks: Sequence[_Chunk], scope: PropagationScope) -> None:
        self._chunks = list(chunks)
        self.scope = scope
        self.events: list[ev.HistoryEvent] = [e for c in self._chunks for e in c.events]

    def get_app_ids(self) -> list[str]:
        return list(dict.fromkeys(c.app_id for c in self._chunks))

    def get_events_by_app_id(self, app_id: str) -> list[ev.HistoryEvent]:
        return [e for c in self._chunks if c.app_id == app_id for e in c.events]

    def get_events_by_instance_id(self, instance_id: str) -> list[ev.HistoryEvent]:
        return [e for c in self._chunks if c.instance_id == instance_id for e in c.events]

    def get_events_by_workflow_name(self, workflow_name: str) -> list[ev.HistoryEvent]:
        return [e for c in self._chunks if c.workflow_name == workflow_name for e in c.events]

    def get_workflows(self) -> list[WorkflowResult]:
        return [_result(c) for c in self._chunks]

    def get_workflows_by_name(self, name: str) -> list[WorkflowResult]:
        return [_result(c) for c in self._chunks if c.workflow_name == name]

    def get_last_workflow_by_name(self, name: str) -> WorkflowResult:
        found = self.get_workflows_by_name(name)
        if not found:
            raise PropagationNotFoundError(f"no workflow named {name!r} in propagated history")
        return found[-1]

    @classmethod
    def from_json(cls, text: str | None) -> PropagatedHistory | None:
        """Parse the wire form; None stays None. A malformed one raises `ValueError`, as in Dapr."""
        if text is None:
            return None
        try:
            raw = orjson.loads(text)
            chunks = [_Chunk(c["app_id"], c.get("instance_id", ""), c.get("workflow_name", ""),
                             [_EVENTS.decode(e) for e in c["events"]]) for c in raw["chunks"]]
            return cls(chunks, PropagationScope[raw["scope"]])
        except Exception as exc:
            raise ValueError(f"propagated history is malformed: {exc}") from exc


def _result(chunk: _Chunk) -> WorkflowResult:
    return WorkflowResult(chunk.instance_id, chunk.app_id, chunk.workflow_name, chunk.events)


def build_propagated_history(scope: str, instance_id: str, workflow_name: str,
                             history: Sequence[ev.HistoryEvent]) -> str | None:
    """The wire form a call with `scope` (a `PropagationScope` name) hands on, from the caller's history."""
    if scope in ("", PropagationScope.NONE.name):
        return None
    chunks: list[Any] = []
    received = next((e.propagated_history for e in history if isinstance(e, ev.ExecutionStarted)), None)
    if scope == PropagationScope.LINEAGE.name and received is not None:
        chunks.extend(orjson.loads(received)["chunks"])
    own = [replace(e, propagated_history=None) if isinstance(e, ev.ExecutionStarted) else e for e in history]
    chunks.append({"app_id": DEFAULT_APP_ID, "instance_id": instance_id, "workflow_name": workflow_name,
                   "events": [to_jsonable(e) for e in own]})
    return orjson.dumps({"scope": scope, "chunks": chunks}).decode()
