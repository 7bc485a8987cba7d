"""The Python client's ports over Kafka: a producer that sends, and a lookup over the status topic
that follows only the partitions of the instances the client touches.

Why not the whole status topic: every process that makes a client (every Dapr example, every web
worker that starts a workflow) would replay every instance ever kept (the topic is compacted, but
holds every finished instance until it is purged) before its first call, and keep all of them in
memory. A client only ever answers for instances it is asked about by ID, and an instance lives in
one partition (`murmur2(key) % partitions`, the Java client's and aiokafka's default partitioner).
So the client's `StatusFollower` (`engine.read.status`, made with `partitions=()`) starts empty,
and the first time an instance of partition `p` is asked about, it reads `status[p]` from its
beginning to its end (read_committed) and follows it from then on:
making a client costs one metadata request, and a first look-up reads 1/N of the topic, once.
The REST API serves listings across all instances, so it keeps following the whole topic.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer

from .. import tracing
from ..core.codec import encode
from ..core.commands import Command, StartWorkflow
from ..core.preconditions import Settled, own_start_shown, pending_start
from ..core.state import InstanceState
from ..read.status import StatusFollower
from .ports import Watch
from .watches import Watches

__all__ = ["KafkaSend", "ViewLookUp"]


class KafkaSend:
    """Produces each command to the commands topic, keyed by instance ID, and waits for the ack."""

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self.producer = producer
        self.topic = topic

    async def send(self, command: Command) -> int:
        # The caller's active span, if any (contextvars reach this loop through run_coroutine_threadsafe),
        # so the engine's spans of this command join the caller's trace.
        metadata = await self.producer.send_and_wait(self.topic, encode(command), key=command.instance_id.encode(),
                                                     headers=tracing.headers_for_current())
        return int(metadata.offset)


class ViewLookUp:
    """Read your writes for one client: the view, and the starts this client sent that the view
    does not show yet (each until the view shows that run, or the client purges the instance)."""

    def __init__(self, view: StatusFollower, clock: Callable[[], datetime] | None = None) -> None:
        self.view = view
        self._watches = Watches(self.shown)
        view.subscribe(self._watches.offer)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._sent: dict[str, InstanceState] = {}

    async def state(self, instance_id: str) -> InstanceState | None:
        seen = await self.view.look_up(instance_id)
        sent = self._sent.get(instance_id)
        if sent is None:
            return seen
        shown, settled = own_start_shown(seen, sent)
        if settled:
            self._sent.pop(instance_id, None)
        return shown

    async def fresh(self, instance_id: str) -> InstanceState | None:
        return await self.state(instance_id)

    def shown(self, instance_id: str) -> InstanceState | None:
        return self.view.states.get(instance_id)

    def own_start(self, instance_id: str) -> str | None:
        sent = self._sent.get(instance_id)
        return None if sent is None else sent.run_id

    @contextlib.asynccontextmanager
    async def watch(self, done: Mapping[str, Settled]) -> AsyncIterator[Sequence[Watch]]:
        """Watches offered every state the view applies (`engine.client.watches`), once the view
        follows each instance's partition."""
        for iid in done:
            await self.view.look_up(iid)
        async with self._watches.watching(done) as watches:
            yield watches

    def accepted(self, start: StartWorkflow, receipt: int) -> None:
        self._sent[start.instance_id] = pending_start(start, self._clock())

    def forget(self, instance_id: str) -> None:
        self._sent.pop(instance_id, None)
