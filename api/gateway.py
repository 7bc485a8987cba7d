"""The workflow operations behind the REST routes: commands out to Kafka, instances from the view.

Every command is produced to the commands topic keyed by instance ID (so it lands on the partition
that owns the instance) with an idempotent producer, and acknowledged by the broker. Then, as daprd
answers only once the operation is done, the API waits (bounded by `apply_wait_s`) until its status
view shows the command's effect:

- a start: the instance's run is this start's (`run_id` = its command ID): 202; or the engine
  refused it (its command ID among the instance's `recent_commands`, another run there): 409, with
  daprd's message (another run is active, or a child of the finished run still runs). Two starts
  of one ID at the same moment, on one replica or two, get one 202 and one 409;
- pause, resume, terminate, raise event: the command's ID among the run's `recent_commands`, or a
  state in which the engine ignores it (finished, PENDING, already suspended / not suspended), or
  the run gone or replaced;
- purge: the instance and the finished descendants the purge reaches gone from the view.

So a GET after the 202, on any replica (`find` syncs the view first), sees the effect. When the
wait runs out (the engine is down or far behind) the API answers 202 anyway, as before: the
command is on Kafka and applies when the engine gets to it. What the API checks up front (the
instance exists, is not running, is finished) it checks against the freshest state it can see
(`consistency.py`), and the engine checks again when it applies the command.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime

from engine.core import commands as cmd
from engine.core.events import HistoryEvent
from engine.core.state import InstanceState
from engine.core.values import RuntimeStatus
from engine.errors import (
    InstanceExistsError,
    InstanceNotFoundError,
    InstanceNotTerminalError,
    PayloadTooLargeError,
)
from engine.runtime.client import start_refusal, start_settled

from .consistency import Consistency, Settled
from .history import HistoryReader
from .kafka import KafkaLink
from .listing import Page, Query, list_instances
from .metrics import ApiMetrics
from .model import Instance, run_id

__all__ = ["Gateway"]

log = logging.getLogger(__name__)

#: At most this many descendants of a purged instance are waited for (the purge reaches them all).
_PURGE_TREE_LIMIT = 1000


class Gateway:
    def __init__(self, link: KafkaLink, metrics: ApiMetrics) -> None:
        self.link = link
        self.metrics = metrics
        self.consistency = Consistency(link)
        self.histories = HistoryReader(link)

    async def close(self) -> None:
        await self.histories.close()

    # -- reads ---------------------------------------------------------------------------------

    async def find(self, instance_id: str) -> Instance | None:
        """The instance as a client that just got a 202 from any replica expects to see it.

        A live instance in the view is answered once the view has caught up with its status
        partition (`Consistency.sync`, one request): another replica may have answered a command
        (a pause, a terminate) this view has not read yet. A missing or finished one may be a
        start the view has not shown yet: the full barrier (`Consistency.fresh`) decides.
        """
        current = self.consistency.local(instance_id, self.consistency.view_state(instance_id))
        if current is not None and not current.is_terminal:
            # Live, but maybe older than what another replica already answered (a pause, ...).
            await self.consistency.sync(instance_id)
            current = self.consistency.local(instance_id, self.consistency.view_state(instance_id))
            if current is not None and not current.is_terminal:
                return current
        return await self.consistency.fresh(instance_id)

    async def get(self, instance_id: str) -> Instance:
        found = await self.find(instance_id)
        if found is None:
            raise InstanceNotFoundError(instance_id)
        return found

    def list_page(self, query: Query) -> Page:
        self.link.require()
        return list_instances(self.link.view.states.values(), query)

    async def history(self, instance_id: str) -> tuple[Instance, list[HistoryEvent]]:
        instance = await self.get(instance_id)
        seen = self.consistency.view_state(instance_id)
        if seen is None or seen.run_id != instance.run_id:
            return instance, []  # a start the engine has not applied yet: no history so far
        events = await self.histories.read(instance)
        return instance, events

    # -- commands --------------------------------------------------------------------------------

    def _payload(self, what: str, text: str | None) -> str | None:
        limit = self.link.settings.engine.max_payload_bytes
        if text is not None and len(text.encode()) > limit:
            raise PayloadTooLargeError(what, len(text.encode()), limit)
        return text

    async def _send(self, command: cmd.Command) -> int:
        metadata = await self.link.send(command)
        self.metrics.commands.labels(type(command).__name__).inc()
        return int(metadata.offset)

    async def start(
        self,
        name: str,
        instance_id: str | None,
        payload: str | None,
        start_at: datetime | None = None,
    ) -> str:
        payload = self._payload("workflow input", payload)
        if instance_id is None:
            instance_id = str(uuid.uuid4())  # new and random: nothing to check
        else:
            current = await self.find(instance_id)
            if current is not None and not current.is_terminal:
                raise InstanceExistsError(instance_id)
        start = cmd.StartWorkflow(
            instance_id=instance_id,
            command_id=uuid.uuid4().hex,
            name=name,
            input=payload,
            scheduled_start=start_at,
        )
        command_id = start.command_id
        async with self.consistency.watch(
            {instance_id: lambda state: start_settled(state, command_id)}
        ) as (watch,):
            offset = await self._send(start)
            self.consistency.remember(start, offset)
            settled, state = await watch.wait(self.link.settings.apply_wait_s)
        if not settled:
            self._late(type(start).__name__, instance_id)
            return instance_id
        refused = start_refusal(state, command_id)
        if refused is not None:
            self.consistency.forget(instance_id)  # nothing of this start will ever show
            raise refused
        return instance_id

    def _late(self, what: str, instance_id: str) -> None:
        log.warning(
            "%s for '%s': the status view did not show its effect within %gs; answered 202 (it "
            "applies when the engine gets to it)",
            what,
            instance_id,
            self.link.settings.apply_wait_s,
        )
        self.metrics.late_commands.labels(what).inc()

    async def _command(self, command: cmd.Command, ignored: Callable[[InstanceState], bool]) -> None:
        """Send a command to an instance and wait until the view shows it applied or moot.

        `ignored(state)` says the engine will not apply it in that state (e.g. a pause when the
        instance is suspended: someone's pause got there first), so there is nothing to wait for.
        """
        iid = command.instance_id
        before = await self.find(iid)
        if before is None:
            raise InstanceNotFoundError(iid)
        run = before.run_id
        shown = self.link.view.states.get(iid)
        # The run the view shows now; `run` may be a start it does not show yet (applied later,
        # before this command: they share a partition).
        shown_run = None if shown is None else run_id(shown)
        seen = shown_run == run

        def done(state: InstanceState | None) -> bool:
            nonlocal seen
            if state is None:
                return seen  # gone after showing the run: purged, nothing more to see
            if run_id(state) != run:
                return run_id(state) != shown_run  # replaced by a newer run
            seen = True
            return (
                command.command_id in state.recent_commands
                or state.is_terminal
                or state.status is RuntimeStatus.PENDING
                or ignored(state)
            )

        async with self.consistency.watch({iid: done}) as (watch,):
            await self._send(command)
            settled, _ = await watch.wait(self.link.settings.apply_wait_s)
        if not settled:
            self._late(type(command).__name__, iid)

    async def raise_event(self, instance_id: str, event_name: str, payload: str | None) -> None:
        payload = self._payload("event data", payload)
        await self._command(
            cmd.RaiseEvent(
                instance_id=instance_id, command_id=uuid.uuid4().hex, name=event_name, input=payload
            ),
            _never,
        )

    async def terminate(self, instance_id: str, output: str | None = None) -> None:
        # Terminating a finished instance is a no-op the engine ignores (202, as in Dapr).
        await self._command(
            cmd.TerminateWorkflow(
                instance_id=instance_id,
                command_id=uuid.uuid4().hex,
                output=self._payload("output", output),
                recursive=True,
            ),
            _never,
        )

    async def pause(self, instance_id: str) -> None:
        await self._command(
            cmd.SuspendWorkflow(instance_id=instance_id, command_id=uuid.uuid4().hex),
            lambda state: state.status is RuntimeStatus.SUSPENDED,
        )

    async def resume(self, instance_id: str) -> None:
        await self._command(
            cmd.ResumeWorkflow(instance_id=instance_id, command_id=uuid.uuid4().hex),
            lambda state: state.status is not RuntimeStatus.SUSPENDED,
        )

    async def purge(self, instance_id: str) -> None:
        # Always the fresh state: a purge must not pass on a stale "finished" picture. The engine
        # refuses a purge of a live instance again when it applies the command.
        found = await self.consistency.fresh(instance_id)
        if found is None:
            raise InstanceNotFoundError(instance_id)
        if not found.is_terminal:
            raise InstanceNotTerminalError(instance_id, found.status.value)
        # daprd's purge is done when it answers, children included: wait for the instance and the
        # finished descendants the recursive purge reaches (a running child refuses it) to go.
        watched: dict[str, Settled] = {instance_id: _gone_or_replaced(found.run_id)}
        for child, child_run in self._purged_descendants(instance_id):
            watched[child] = _gone_or_replaced(child_run)
        async with self.consistency.watch(watched) as watches:
            await self._send(
                cmd.PurgeWorkflow(
                    instance_id=instance_id, command_id=uuid.uuid4().hex, recursive=True
                )
            )
            # The start it remembers is of the run being purged (purge passed only on a finished
            # run).
            self.consistency.forget(instance_id)
            settled = await self.consistency.wait_all(watches, self.link.settings.apply_wait_s)
        if not settled:
            self._late("PurgeWorkflow", instance_id)

    def _purged_descendants(self, instance_id: str) -> list[tuple[str, str]]:
        """(ID, run) of the finished descendants a recursive purge of the instance removes, as the
        view shows them now (a running child refuses the purge, and its subtree is not reached)."""
        states = self.link.view.states
        found: dict[str, str] = {}
        todo = [instance_id]
        while todo and len(found) < _PURGE_TREE_LIMIT:
            state = states.get(todo.pop())
            for child in () if state is None else state.children:
                seen = states.get(child)
                if seen is not None and seen.is_terminal and child not in found and child != instance_id:
                    found[child] = run_id(seen)
                    todo.append(child)
        return list(found.items())[:_PURGE_TREE_LIMIT]


def _never(state: InstanceState) -> bool:
    return False


def _gone_or_replaced(run: str) -> Settled:
    def done(state: InstanceState | None) -> bool:
        return state is None or run_id(state) != run

    return done
