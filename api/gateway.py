"""The workflow operations behind the REST routes: `WorkflowCommands` over the API's ports.

Commands go through `engine.client.WorkflowCommands` (the same service the Python clients and the
test environment use): its `Send` port is the link's idempotent producer (`consistency.LinkSend`,
key = instance ID, acknowledged by the broker), its `LookUp` port the API's read-your-writes
across replicas (`consistency.Consistency`). As daprd answers only once the operation is done, a
command is answered once the status view shows its effect, bounded by `apply_wait_s`:

- a start: the instance's run is this start's (`run_id` = its command ID): 202; or the engine
  refused it (its command ID among the instance's `recent_commands`, another run there): 409, with
  daprd's message (another run is active, or a child of the finished run still runs). Two starts
  of one ID at the same moment, on one replica or two, get one 202 and one 409;
- pause, resume, terminate, raise event: the command's ID among the run's `recent_commands`, or a
  state in which the engine ignores it (finished, PENDING, already suspended / not suspended), or
  the run gone or replaced;
- purge: the instance and the finished descendants the purge reaches gone from the view.

So a GET after the 202, on any replica, sees the effect. When the wait runs out (the engine is
down or far behind) the API answers 202 anyway, as before, and counts it: the command is on Kafka
and applies when the engine gets to it. What the API checks up front (the instance exists, is not
running, is finished) it checks against the freshest state it can see, and the engine checks
again when it applies the command.
"""

from __future__ import annotations

from datetime import datetime

from engine.client import WorkflowCommands
from engine.core.events import HistoryEvent
from engine.core.preconditions import run_id
from engine.core.state import InstanceState
from engine.errors import InstanceNotFoundError

from .consistency import Consistency, LinkSend
from .history import HistoryReader
from .kafka import KafkaLink
from .listing import Page, Query, list_indexed, list_instances
from .metrics import ApiMetrics

__all__ = ["Gateway"]


class Gateway:
    def __init__(self, link: KafkaLink, metrics: ApiMetrics) -> None:
        self.link = link
        self.metrics = metrics
        self.consistency = Consistency(link)
        self.histories = HistoryReader(link)
        self.commands = WorkflowCommands(
            self.consistency,
            LinkSend(link, metrics),
            apply_timeout=link.settings.apply_wait_s,
            max_payload_bytes=link.settings.engine.max_payload_bytes,
            on_late=lambda what, _: metrics.late_commands.labels(what).inc(),
        )

    async def close(self) -> None:
        await self.consistency.close()
        await self.histories.close()

    # -- reads ---------------------------------------------------------------------------------

    async def find(self, instance_id: str) -> InstanceState | None:
        return await self.commands.get(instance_id)

    async def get(self, instance_id: str) -> InstanceState:
        found = await self.find(instance_id)
        if found is None:
            raise InstanceNotFoundError(instance_id)
        return found

    def list_page(self, query: Query) -> Page:
        self.link.require()
        index = self.link.view.index
        if index is not None:
            return list_indexed(index, query)
        return list_instances(self.link.view.states.values(), query)

    async def history(self, instance_id: str) -> tuple[InstanceState, list[HistoryEvent]]:
        instance = await self.get(instance_id)
        seen = self.consistency.shown(instance_id)
        if seen is None or run_id(seen) != run_id(instance):
            return instance, []  # a start the engine has not applied yet: no history so far
        events = await self.histories.read(instance)
        return instance, events

    # -- commands --------------------------------------------------------------------------------

    async def start(
        self, name: str, instance_id: str | None, payload: str | None, start_at: datetime | None = None
    ) -> str:
        return await self.commands.start(name, input=payload, instance_id=instance_id, start_at=start_at)

    async def raise_event(self, instance_id: str, event_name: str, payload: str | None) -> None:
        await self.commands.raise_event(instance_id, event_name, payload)

    async def terminate(self, instance_id: str, output: str | None = None) -> None:
        await self.commands.terminate(instance_id, output, recursive=True)

    async def pause(self, instance_id: str) -> None:
        await self.commands.suspend(instance_id)

    async def resume(self, instance_id: str) -> None:
        await self.commands.resume(instance_id)

    async def purge(self, instance_id: str) -> None:
        await self.commands.purge(instance_id, recursive=True)
