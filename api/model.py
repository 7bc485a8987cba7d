"""What the API knows of one instance: a frozen snapshot, from the view or from a pending start."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from engine.core.commands import StartWorkflow
from engine.core.state import InstanceState
from engine.core.values import FailureDetails, RuntimeStatus

__all__ = ["Instance", "run_id"]


def run_id(state: InstanceState) -> str:
    """The ID of the start that began this run: the StartWorkflow's `command_id`.

    Newer engines keep it in `run_id` (stable across continue-as-new); older ones only have the
    first generation's `execution_id`, which is the same value until the first continue-as-new.
    """
    return str(getattr(state, "run_id", "") or state.execution_id)


@dataclass(frozen=True, slots=True, kw_only=True)
class Instance:
    instance_id: str
    name: str
    status: RuntimeStatus
    #: The command ID of the start that began this run (see `run_id`).
    run_id: str
    execution_id: str
    created_at: datetime | None
    last_updated_at: datetime | None
    input: str | None = None
    output: str | None = None
    custom_status: str | None = None
    failure: FailureDetails | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    @classmethod
    def from_state(cls, state: InstanceState) -> Instance:
        return cls(
            instance_id=state.instance_id,
            name=state.name,
            status=state.status,
            run_id=run_id(state),
            execution_id=state.execution_id,
            created_at=state.created_at,
            last_updated_at=state.last_updated_at,
            input=state.input,
            output=state.output,
            custom_status=state.custom_status,
            failure=state.failure,
        )

    @classmethod
    def pending(cls, start: StartWorkflow, accepted_at: datetime) -> Instance:
        """An accepted start the engine has not applied yet: Dapr shows such an instance PENDING."""
        return cls(
            instance_id=start.instance_id,
            name=start.name,
            status=RuntimeStatus.PENDING,
            run_id=start.command_id,
            execution_id=start.command_id,
            created_at=accepted_at,
            last_updated_at=accepted_at,
            input=start.input,
        )
