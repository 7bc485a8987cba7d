"""Headrace's workflow engine, with the authoring names of Dapr's `dapr.ext.workflow`.

A workflow module written for Dapr runs here after changing its imports to `from engine import …`.
"""

from __future__ import annotations

from .client.dapr import DaprWorkflowClient
from .core.context import DaprWorkflowContext, WorkflowContext
from .core.propagation import (
    ActivityResult,
    ChildWorkflowResult,
    PropagatedHistory,
    PropagationNotFoundError,
    PropagationScope,
    WorkflowResult,
)
from .core.retry import RetryPolicy
from .core.tasks import Task, TaskFailedError, when_all, when_any
from .core.values import FailureDetails
from .errors import HeadraceError, NonDeterminismError
from .sdk.activity import WorkflowActivityContext
from .sdk.registry import alternate_name
from .sdk.state import WorkflowState, WorkflowStatus
from .sdk.workflow_runtime import WorkflowRuntime

__all__ = [
    "ActivityResult",
    "ChildWorkflowResult",
    "DaprWorkflowClient",
    "DaprWorkflowContext",
    "FailureDetails",
    "HeadraceError",
    "NonDeterminismError",
    "PropagatedHistory",
    "PropagationNotFoundError",
    "PropagationScope",
    "RetryPolicy",
    "Task",
    "TaskFailedError",
    "WorkflowActivityContext",
    "WorkflowContext",
    "WorkflowResult",
    "WorkflowRuntime",
    "WorkflowState",
    "WorkflowStatus",
    "alternate_name",
    "when_all",
    "when_any",
]
