"""The Python client's ports over Kafka: a producer that sends, and a lookup over the status topic
that reads only what the client asks about.

Why not the whole status topic: every process that makes a client (every Dapr example, every web
worker that starts a workflow) would replay every instance ever kept (the topic is compacted, but
holds every finished instance until it is purged) before its first call, and keep all of them in
memory. A client only ever answers for instances it is asked about by ID, and an instance lives in
one partition (`murmur2(key) % partitions`, the Java client's and aiokafka's default partitioner).
So the client's `StatusFollower` (`engine.read.status`, made with `partitions=()` and `from_end`)
starts empty; the first time an instance is asked about, it follows the instance's partition from
its end and reads the instance's latest record back by key, and from then on keeps that instance's
state current. Other instances' records on the partition are skipped undecoded: what a long-lived
client costs grows with what it asks about, not with the system's traffic. Making a client costs
one metadata request. The REST API serves listings across all instances, so it follows the whole
topic.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer

from .. import tracing
from ..core.codec import encode
from ..core.commands import Command, StartWorkflow
from ..core.preconditions import Settled
from ..core.state import InstanceState
from ..read.status import StatusFollower
from .ports import Watch
from .sent import SentStarts
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
    does not show yet (`SentStarts`: each until the view shows that run or its refusal, or the
    client purges the instance)."""

    def __init__(self, view: StatusFollower, clock: Callable[[], datetime] | None = None) -> None:
        self.view = view
        self._watches = Watches(self.shown)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._sent = SentStarts(forget_removed=False)
        #: Instances a `watch` is looking up before its watches are registered: the view must not
        #: let them go meanwhile.
        self._claims: Counter[str] = Counter()
        # Told of the instances this client watches or sent a start of, so the view lets the others
        # go (`StatusFollower.asked_limit`), and a start is forgotten as soon as its run shows.
        view.subscribe(self._view_changed, self._interested)

    def _interested(self, instance_id: str) -> bool:
        return instance_id in self._sent or instance_id in self._claims or self._watches.watched(instance_id)

    def _view_changed(self, instance_id: str, state: InstanceState | None) -> None:
        self._watches.offer(instance_id, state)
        self._sent.viewed(instance_id, state)

    async def state(self, instance_id: str) -> InstanceState | None:
        return self._sent.shown(instance_id, await self.view.look_up(instance_id))

    async def fresh(self, instance_id: str) -> InstanceState | None:
        return await self.state(instance_id)

    def shown(self, instance_id: str) -> InstanceState | None:
        return self.view.states.get(instance_id)

    async def seen(self, instance_id: str) -> InstanceState | None:
        return await self.view.look_up(instance_id)

    def own_start(self, instance_id: str) -> str | None:
        return self._sent.own_start(instance_id)

    @contextlib.asynccontextmanager
    async def watch(self, done: Mapping[str, Settled]) -> AsyncIterator[Sequence[Watch]]:
        """Watches offered every state the view applies (`engine.client.watches`), once the view
        follows each instance's partition."""
        claims = Counter(list(done))
        self._claims += claims
        try:
            for iid in done:
                await self.view.look_up(iid)
            async with self._watches.watching(done) as watches:
                yield watches
        finally:
            self._claims -= claims  # an ID no other watch claims is dropped

    async def adopt(self, instance_id: str) -> None:
        await self.view.adopt(instance_id)

    def accepted(self, start: StartWorkflow, receipt: int) -> None:
        self._sent.accepted(start, self._clock(), self.shown(start.instance_id))

    def forget(self, instance_id: str) -> None:
        self._sent.forget(instance_id)
