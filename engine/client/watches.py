"""Watches offered every state a status follower applies: the `Watch` of the Kafka-backed ports.

A waiter that only looked at the latest state when woken could miss a transient one (a run that
starts and ends within one fetch), so each watch is offered the current state when registered and
then every state applied for its instance, and keeps the first one its predicate accepts.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass

from ..core.preconditions import Settled
from ..core.state import InstanceState
from .ports import Watch

__all__ = ["StateWatch", "Watches"]


@dataclass(eq=False, slots=True)
class StateWatch:
    """Waits for one instance to show a state `done` accepts."""

    instance_id: str
    done: Settled
    future: asyncio.Future[InstanceState | None]

    def offer(self, state: InstanceState | None) -> None:
        if not self.future.done() and self.done(state):
            self.future.set_result(state)

    async def wait(self, timeout: float | None) -> tuple[bool, InstanceState | None]:  # noqa: ASYNC109
        """(True, the state that settled it), or (False, None) when `timeout` passed first."""
        try:
            return True, await asyncio.wait_for(asyncio.shield(self.future), timeout)
        except TimeoutError:
            return False, None


class Watches:
    """The watches registered on one follower; `offer` is its observer."""

    def __init__(self, current: Callable[[str], InstanceState | None]) -> None:
        self._current = current
        self._by_instance: dict[str, list[StateWatch]] = {}

    def watched(self, instance_id: str) -> bool:
        """Whether a watch waits on the instance (`offer` does nothing for the others)."""
        return instance_id in self._by_instance

    def offer(self, instance_id: str, state: InstanceState | None) -> None:
        for w in self._by_instance.get(instance_id, ()):
            w.offer(state)

    @contextlib.asynccontextmanager
    async def watching(self, done: Mapping[str, Settled]) -> AsyncIterator[Sequence[Watch]]:
        """Watch instances (ID -> `done`) while the block runs (see the module docstring)."""
        loop = asyncio.get_running_loop()
        made = [StateWatch(iid, settled, loop.create_future()) for iid, settled in done.items()]
        for w in made:
            self._by_instance.setdefault(w.instance_id, []).append(w)
            w.offer(self._current(w.instance_id))
        try:
            yield made
        finally:
            for w in made:
                found = self._by_instance.get(w.instance_id)
                if found is not None:
                    found.remove(w)
                    if not found:
                        del self._by_instance[w.instance_id]
                if not w.future.done():
                    w.future.cancel()
