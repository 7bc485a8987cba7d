"""What an instance waits for in time: its scheduled start, its durable timers, its next look for
its code. Apart from `state.py`, which the native build compiles: these stay interpreted, so the
test environment can subclass them and their dataclass comparisons hold."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from . import commands as cmd

__all__ = ["CodeWait", "DurableTimer", "ScheduledStart", "Timer"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Timer:
    """Something an instance waits for until `due`. Timers order by due time (then instance, then
    timer), so a heap of them fires in due order, and the same order after a restart."""

    due: datetime
    instance_id: str

    def __lt__(self, other: Timer) -> bool:
        if self.due != other.due:
            return self.due < other.due
        if self.instance_id != other.instance_id:
            return self.instance_id < other.instance_id
        # Of one instance's timers due at once, its start goes first, then its timers in creation order.
        if isinstance(other, DurableTimer):
            return not isinstance(self, DurableTimer) or self.timer_id < other.timer_id
        return False


@dataclass(frozen=True, slots=True, kw_only=True)
class DurableTimer(Timer):
    """Durable timer `timer_id` of execution `execution_id` (a `TimerCreated` event's)."""

    execution_id: str
    timer_id: int

    def message(self) -> cmd.TimerFiring:
        return cmd.TimerFiring(instance_id=self.instance_id, execution_id=self.execution_id,
                               timer_id=self.timer_id, fire_at=self.due)


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduledStart(Timer):
    """The instance's start, scheduled for `due` (Dapr's `start_at`); it is PENDING until then."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CodeWait(Timer):
    """A running instance's next look at whether its engine knows its workflow
    (`engine.core.unknown_code`); rebuilt due at once, so a new owner of the partition looks first."""

    execution_id: str
