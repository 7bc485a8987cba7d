"""Follows the status topic while the load runs: which instances finished, and which wait.

Only for pacing and draining (how many acknowledged starts are unfinished, whether the
non-determinism scenario's instances are all waiting for their event). The verdict never rests on
it: the checker reads every topic again from the start once the run is over.

The reading is the engine's status follower (`engine.read.status`), which also reconnects at the
positions reached when a whole-cluster restart breaks its consumer.
"""

from __future__ import annotations

from collections.abc import Callable

from engine.core.state import InstanceState
from engine.core.values import RuntimeStatus
from engine.read.status import StatusFollower as EngineFollower
from engine.settings import Settings

__all__ = ["StatusFollower"]


class StatusFollower:
    def __init__(self, settings: Settings) -> None:
        self.follower = EngineFollower(settings, observer=self._applied)
        self.done: set[str] = set()
        self.on_done: list[Callable[[str], None]] = []

    async def start(self) -> None:
        await self.follower.start()

    async def stop(self) -> None:
        await self.follower.stop()

    def is_done(self, instance_id: str) -> bool:
        return instance_id in self.done

    def waiting_for_event(self, instance_id: str) -> bool:
        """Running with no activity, timer or child pending: only an external event can move it."""
        state = self.follower.states.get(instance_id)
        return (state is not None and state.status is RuntimeStatus.RUNNING
                and not (state.pending_tasks or state.pending_timers or state.pending_children))

    async def changed(self) -> None:
        await self.follower.changed()

    def _applied(self, instance_id: str, state: InstanceState | None) -> None:
        if state is not None and state.is_terminal and instance_id not in self.done:
            self.done.add(instance_id)
            for callback in self.on_done:
                callback(instance_id)
