"""The two ports `WorkflowCommands` runs over: looking instances up, and sending commands.

Each front end supplies both: over Kafka (`engine.client.kafka` for the Python clients,
`api.consistency` for the REST API's replicas) or in memory (`engine.testing`). What differs
between them is only *how* a lookup sees the process's own writes; the rules (what to check, what
to send, what to wait for) are the service's, once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from ..core.commands import Command, StartWorkflow
from ..core.preconditions import Settled
from ..core.state import InstanceState

__all__ = ["LookUp", "Send", "Watch"]


class Watch(Protocol):
    """One instance watched for a state its `Settled` predicate accepts."""

    async def wait(self, timeout: float | None) -> tuple[bool, InstanceState | None]:  # noqa: ASYNC109
        """(True, the state that settled it), or (False, None) once `timeout` seconds passed
        first (None: no bound)."""
        ...


class LookUp(Protocol):
    """Instances as this process may answer them: its own accepted writes included."""

    async def state(self, instance_id: str) -> InstanceState | None:
        """The instance after every command this process (and, where the port promises it, any
        replica) had acknowledged before the call, a start not applied yet shown PENDING."""
        ...

    async def fresh(self, instance_id: str) -> InstanceState | None:
        """As `state`, for a decision that must not pass on a stale picture (a purge)."""
        ...

    def shown(self, instance_id: str) -> InstanceState | None:
        """What the status shows now, without this process's unapplied starts (no I/O)."""
        ...

    async def seen(self, instance_id: str) -> InstanceState | None:
        """As `shown`, read in first if this process's view does not hold the instance (the
        Python client's holds only those it was asked about)."""
        ...

    def own_start(self, instance_id: str) -> str | None:
        """The run ID of a start this process accepted that the status does not show yet."""
        ...

    def watch(self, done: Mapping[str, Settled]) -> AbstractAsyncContextManager[Sequence[Watch]]:
        """Watch instances (ID -> predicate) while the block runs, one `Watch` each, in order.
        Every state the status applies from entering the block on is offered, so no transient
        state is missed. Enter before sending."""
        ...

    async def adopt(self, instance_id: str) -> None:
        """An ID this process just made up (a generated one): nothing of it exists to look up."""
        ...

    def accepted(self, start: StartWorkflow, receipt: int) -> None:
        """A start was sent (`receipt` from `Send.send`): show it until the status does."""
        ...

    def forget(self, instance_id: str) -> None:
        """Drop what `accepted` remembers of the instance (refused, or being purged)."""
        ...


class Send(Protocol):
    async def send(self, command: Command) -> int:
        """Deliver `command` to its instance's partition (acknowledged); returns its offset."""
        ...
