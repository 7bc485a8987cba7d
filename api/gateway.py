"""The workflow operations behind the REST routes: commands out to Kafka, instances from the view.

Every command is produced to the commands topic keyed by instance ID (so it lands on the partition
that owns the instance) with an idempotent producer, and acknowledged by the broker before the
202. The engine applies it asynchronously; what the API checks up front (the instance exists, is
not running, is finished) it checks against the freshest state it can see (`consistency.py`), and
the engine checks again when it applies the command, so a stale check refuses nothing wrongly
for long and never lets a purge remove a live instance.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from engine.core import commands as cmd
from engine.core.events import HistoryEvent
from engine.errors import (
    InstanceExistsError,
    InstanceNotFoundError,
    InstanceNotTerminalError,
    PayloadTooLargeError,
)

from .consistency import Consistency
from .history import HistoryReader
from .kafka import KafkaLink
from .listing import Page, Query, list_instances
from .metrics import ApiMetrics
from .model import Instance

__all__ = ["Gateway"]


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

        A live instance in the view is answered from memory: nothing a client did can make the
        view's picture of a running instance disappear. A missing or finished one may be a start
        the view has not shown yet: this replica's own starts answer at once, others need the
        barrier (`Consistency.fresh`).
        """
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
        offset = await self._send(start)
        self.consistency.remember(start, offset)
        return instance_id

    async def _existing(self, instance_id: str) -> Instance:
        found = self.consistency.view_state(instance_id)
        if found is None:
            found = await self.find(instance_id)
        if found is None:
            raise InstanceNotFoundError(instance_id)
        return found

    async def raise_event(self, instance_id: str, event_name: str, payload: str | None) -> None:
        payload = self._payload("event data", payload)
        await self._existing(instance_id)
        await self._send(
            cmd.RaiseEvent(
                instance_id=instance_id, command_id=uuid.uuid4().hex, name=event_name, input=payload
            )
        )

    async def terminate(self, instance_id: str, output: str | None = None) -> None:
        # Terminating a finished instance is a no-op the engine ignores (202, as in Dapr).
        await self._existing(instance_id)
        await self._send(
            cmd.TerminateWorkflow(
                instance_id=instance_id,
                command_id=uuid.uuid4().hex,
                output=self._payload("output", output),
                recursive=True,
            )
        )

    async def pause(self, instance_id: str) -> None:
        await self._existing(instance_id)
        await self._send(cmd.SuspendWorkflow(instance_id=instance_id, command_id=uuid.uuid4().hex))

    async def resume(self, instance_id: str) -> None:
        await self._existing(instance_id)
        await self._send(cmd.ResumeWorkflow(instance_id=instance_id, command_id=uuid.uuid4().hex))

    async def purge(self, instance_id: str) -> None:
        # Always the fresh state: a purge must not pass on a stale "finished" picture. The engine
        # refuses a purge of a live instance again when it applies the command.
        found = await self.consistency.fresh(instance_id)
        if found is None:
            raise InstanceNotFoundError(instance_id)
        if not found.is_terminal:
            raise InstanceNotTerminalError(instance_id, found.status.value)
        await self._send(
            cmd.PurgeWorkflow(instance_id=instance_id, command_id=uuid.uuid4().hex, recursive=True)
        )
        # The start it remembers is of the run being purged (purge passed only on a finished run).
        self.consistency.forget(instance_id)
