"""In-memory ports for `WorkflowCommands`: the test environment's, and any test's.

`MemorySend` hands each command to a function that applies it at once (the test environment runs
the orchestrator on it before returning), so by the time a watch waits, the states already show
the command's effect: nothing here ever suspends, and `run_now` drives a service call to its end
without an event loop (the test environment is synchronous, and may be used inside a running
loop).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from ..core.commands import Command, StartWorkflow
from ..core.preconditions import Settled
from ..core.state import InstanceState
from .ports import Watch

__all__ = ["MemoryLookUp", "MemorySend", "run_now"]

T = TypeVar("T")


@dataclass(eq=False, slots=True)
class _MemoryWatch:
    instance_id: str
    done: Settled
    states: Mapping[str, InstanceState]
    settled: InstanceState | None = None
    hit: bool = False

    def offer(self) -> None:
        state = self.states.get(self.instance_id)
        if not self.hit and self.done(state):
            self.hit, self.settled = True, state

    async def wait(self, timeout: float | None) -> tuple[bool, InstanceState | None]:  # noqa: ASYNC109
        self.offer()  # everything sent was applied already: no later state will come
        return (True, self.settled) if self.hit else (False, None)


class MemoryLookUp:
    """Instances from a live mapping that every command updates before `send` returns: reads
    see every write at once, so there are no unapplied starts to remember."""

    def __init__(self, states: Mapping[str, InstanceState]) -> None:
        self.states = states

    async def state(self, instance_id: str) -> InstanceState | None:
        return self.states.get(instance_id)

    async def fresh(self, instance_id: str) -> InstanceState | None:
        return self.states.get(instance_id)

    def shown(self, instance_id: str) -> InstanceState | None:
        return self.states.get(instance_id)

    async def seen(self, instance_id: str) -> InstanceState | None:
        return self.states.get(instance_id)

    def own_start(self, instance_id: str) -> str | None:
        return None

    @contextlib.asynccontextmanager
    async def watch(self, done: Mapping[str, Settled]) -> AsyncIterator[Sequence[Watch]]:
        watches = [_MemoryWatch(iid, settled, self.states) for iid, settled in done.items()]
        for w in watches:
            w.offer()
        yield watches

    async def adopt(self, instance_id: str) -> None:
        return None

    def accepted(self, start: StartWorkflow, receipt: int) -> None:
        pass

    def forget(self, instance_id: str) -> None:
        pass


class MemorySend:
    """Applies each command with `deliver`; the receipt is the command's number."""

    def __init__(self, deliver: Callable[[Command], None]) -> None:
        self.deliver = deliver
        self.sent = 0

    async def send(self, command: Command) -> int:
        self.deliver(command)
        self.sent += 1
        return self.sent - 1


def run_now(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (one over in-memory ports) to its result."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    coro.close()
    raise RuntimeError("a command over in-memory ports waited for something; nothing can wake it")
