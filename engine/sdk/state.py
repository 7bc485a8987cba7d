"""What a client sees of an instance: `WorkflowState` and `WorkflowStatus`, with Dapr's names."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

import orjson

from ..core.state import InstanceState
from ..core.values import FailureDetails, RuntimeStatus

__all__ = ["WorkflowFailedError", "WorkflowState", "WorkflowStatus"]


class WorkflowStatus(Enum):
    """Dapr's Python enum (not the proto's order)."""

    UNKNOWN = 0
    RUNNING = 1
    COMPLETED = 2
    FAILED = 3
    TERMINATED = 4
    PENDING = 5
    SUSPENDED = 6
    STALLED = 7

    @classmethod
    def from_runtime(cls, status: RuntimeStatus) -> WorkflowStatus:
        return _FROM_RUNTIME.get(status, cls.UNKNOWN)


_FROM_RUNTIME = {
    RuntimeStatus.RUNNING: WorkflowStatus.RUNNING,
    RuntimeStatus.COMPLETED: WorkflowStatus.COMPLETED,
    RuntimeStatus.FAILED: WorkflowStatus.FAILED,
    RuntimeStatus.TERMINATED: WorkflowStatus.TERMINATED,
    RuntimeStatus.CANCELED: WorkflowStatus.TERMINATED,
    RuntimeStatus.PENDING: WorkflowStatus.PENDING,
    RuntimeStatus.SUSPENDED: WorkflowStatus.SUSPENDED,
    RuntimeStatus.STALLED: WorkflowStatus.STALLED,
    # Between generations an instance is running as far as a client can tell.
    RuntimeStatus.CONTINUED_AS_NEW: WorkflowStatus.RUNNING,
}


class WorkflowFailedError(Exception):
    def __init__(self, message: str, details: FailureDetails) -> None:
        super().__init__(message)
        self.details = details


@dataclass(frozen=True, slots=True)
class WorkflowState:
    instance_id: str
    name: str
    runtime_status: WorkflowStatus
    created_at: datetime | None
    last_updated_at: datetime | None
    serialized_input: str | None
    serialized_output: str | None
    serialized_custom_status: str | None
    failure_details: FailureDetails | None

    @classmethod
    def from_instance(cls, state: InstanceState, *, fetch_payloads: bool = True) -> WorkflowState:
        return cls(
            instance_id=state.instance_id,
            name=state.name,
            runtime_status=WorkflowStatus.from_runtime(state.shown_status),
            created_at=state.created_at,
            last_updated_at=state.last_updated_at,
            serialized_input=state.input if fetch_payloads else None,
            serialized_output=state.output if fetch_payloads else None,
            serialized_custom_status=state.custom_status if fetch_payloads else None,
            failure_details=state.failure,
        )

    def raise_if_failed(self) -> None:
        if self.failure_details is not None:
            raise WorkflowFailedError(
                f"workflow '{self.instance_id}' failed: {self.failure_details.message}", self.failure_details
            )

    def to_json(self) -> dict[str, Any]:
        return {
            "instance_id": self.instance_id,
            "name": self.name,
            "runtime_status": self.runtime_status.name,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "last_updated_at": self.last_updated_at.isoformat() if self.last_updated_at else None,
            "serialized_input": self.serialized_input,
            "serialized_output": self.serialized_output,
            "serialized_custom_status": self.serialized_custom_status,
            "failure_details": orjson.loads(orjson.dumps(self.failure_details)) if self.failure_details else None,
        }
