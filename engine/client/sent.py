"""The starts a front end sent that its view may not show yet: read your writes without a round trip.

A front end (a REST API replica, a Python client) that accepted a start shows the instance PENDING
until its status view shows that run, or shows the start refused (`preconditions.own_start_shown`).
It forgets a start then, when it purges the instance itself, when its view removes the instance
(a purge, from anywhere; unless made with `forget_removed=False`), and, where a `ttl_s` is given,
once the start is old enough for a slower path to answer (the REST API's read barrier). What it
remembers must never outlive the instance, or a purged instance would come back as PENDING.

At most `limit` starts are kept, the oldest let go first: a process that starts workflows and never
asks about them must not grow without bound. A start let go that way is answered from the view
alone, which shows the run once the engine has applied it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime

from ..core.commands import StartWorkflow
from ..core.preconditions import own_start_shown, pending_start, run_id, start_settled
from ..core.state import InstanceState

__all__ = ["SENT_LIMIT", "SentStarts"]

#: The most starts a front end remembers.
SENT_LIMIT = 100_000


class SentStarts:
    """This front end's own starts not yet shown by its view, by instance ID (oldest first)."""

    def __init__(self, *, ttl_s: float | None = None, limit: int = SENT_LIMIT, forget_removed: bool = True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.limit = limit
        #: Whether the view removing the instance forgets the start. The removal may be of an older
        #: run (a purge answered late, then this start): a front end with a slower path to ask (the
        #: REST API's barrier) forgets, one without (the Python client) keeps showing the start.
        self.forget_removed = forget_removed
        self._clock = clock
        #: Instance ID -> (when accepted, on `clock`; the start as the instance shows it meanwhile).
        self._starts: OrderedDict[str, tuple[float, InstanceState]] = OrderedDict()

    def __contains__(self, instance_id: object) -> bool:
        return instance_id in self._starts

    def __len__(self) -> int:
        return len(self._starts)

    def accepted(self, start: StartWorkflow, accepted_at: datetime | None,
                 shown: InstanceState | None = None) -> None:
        """Remember a start this front end sent (`accepted_at`: the time the instance shows),
        unless the view's `shown` state already shows its run or its refusal (its send was
        acknowledged after the view had read the engine's answer)."""
        if start_settled(shown, start.command_id):
            self._starts.pop(start.instance_id, None)
            return
        self._starts[start.instance_id] = (self._clock(), pending_start(start, accepted_at))
        self._starts.move_to_end(start.instance_id)
        while len(self._starts) > self.limit:
            self._starts.popitem(last=False)

    def forget(self, instance_id: str) -> None:
        """Drop the start of the instance (it is being purged). Always safe: the view answers."""
        self._starts.pop(instance_id, None)

    def own_start(self, instance_id: str) -> str | None:
        """The command ID of the start remembered for the instance, if any."""
        entry = self._starts.get(instance_id)
        return None if entry is None else run_id(entry[1])

    def viewed(self, instance_id: str, state: InstanceState | None) -> None:
        """The view applied `state` for the instance (None: removed it). Showing the run itself or
        its refusal, or gone from the view where `forget_removed`: the view answers from now on."""
        entry = self._starts.get(instance_id)
        if entry is not None and (start_settled(state, run_id(entry[1])) if state is not None
                                  else self.forget_removed):
            del self._starts[instance_id]

    def shown(self, instance_id: str, current: InstanceState | None) -> InstanceState | None:
        """The instance as this front end's own start makes it, given the view's `current` state."""
        entry = self._starts.get(instance_id)
        if entry is None:
            return current
        accepted, own = entry
        if self.ttl_s is not None and self._clock() - accepted > self.ttl_s:
            del self._starts[instance_id]  # old enough that the slower path should decide
            return current
        shown, settled = own_start_shown(current, own)
        if settled:  # the view shows its run, or its refusal
            del self._starts[instance_id]
        return shown
