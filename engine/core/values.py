"""Small value types shared by events, actions, commands and state."""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from enum import StrEnum

from .frozen import quick_init

__all__ = ["TERMINAL_STATUSES", "FailureDetails", "ParentInstance", "RuntimeStatus"]


class RuntimeStatus(StrEnum):
    """Runtime status with the exact strings Dapr's HTTP API returns (`statusMap` in daprd)."""

    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    CONTINUED_AS_NEW = "CONTINUED_AS_NEW"
    FAILED = "FAILED"
    CANCELED = "CANCELED"
    TERMINATED = "TERMINATED"
    PENDING = "PENDING"
    SUSPENDED = "SUSPENDED"
    #: Shown, never stored: a running instance whose history needs code (a workflow, a named
    #: version) the engine holding it lacks; it resumes when an engine with that code takes it.
    #: Dapr 1.17's status for this (`ORCHESTRATION_STATUS_STALLED` in durabletask's protos,
    #: `WorkflowStatus.STALLED` in dapr/python-sdk); see `InstanceState.shown_status`.
    STALLED = "STALLED"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


#: The statuses of a finished run: the one terminal set (`RuntimeStatus.is_terminal`) every reader
#: uses. Dapr's terminal statuses are COMPLETED, FAILED and TERMINATED; CANCELED is durabletask's
#: ("The orchestration canceled gracefully", obsolete and unused in microsoft/durabletask-dotnet's
#: `OrchestrationRuntimeStatus`) and this engine never writes it. It is terminal all the same: a
#: canceled run does not run any more, and the SDK reports it as TERMINATED (`engine/sdk/state.py`),
#: which a waiter for completion must see as the end.
TERMINAL_STATUSES = frozenset(
    {RuntimeStatus.COMPLETED, RuntimeStatus.FAILED, RuntimeStatus.TERMINATED, RuntimeStatus.CANCELED}
)


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class FailureDetails:
    """Why a workflow, activity or child failed; shaped like durabletask's `TaskFailureDetails`."""

    error_type: str
    message: str
    stack_trace: str | None = None
    inner: FailureDetails | None = None
    non_retriable: bool = False

    @classmethod
    def from_exception(cls, exc: BaseException, *, non_retriable: bool = False) -> FailureDetails:
        inner = getattr(exc, "details", None)
        return cls(
            error_type=type(exc).__name__,
            message=str(exc),
            stack_trace="".join(traceback.format_exception(exc)),
            inner=inner if isinstance(inner, FailureDetails) else None,
            non_retriable=non_retriable,
        )


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class ParentInstance:
    """Which workflow started a child, and which of its tasks waits for the child's result."""

    instance_id: str
    name: str
    task_scheduled_id: int
    #: The parent's execution when it started the child: a result for another execution is stale.
    execution_id: str
    #: The parent's app when it is not the child's (a call across apps, `engine.core.apps`): the
    #: child's end goes to that app's commands. None: the child's own app.
    app_id: str | None = None
