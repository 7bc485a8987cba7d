"""The API's Kafka clients: connected in the background, probed, failing fast while Kafka is away.

The API process starts (and answers health checks) even when Kafka is down; it connects in the
background and keeps retrying. Once connected, a probe asks a broker for the cluster's brokers
every `probe_interval_s`. While the probe fails, requests that need Kafka fail at once with a 500 rather
than queueing a command that the producer would deliver minutes later, after the client was told
it failed. aiokafka's clients reconnect by themselves when the broker is back; the probe notices and
requests flow again, with no restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
import time
from collections.abc import Awaitable, Collection
from pathlib import Path
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.structs import RecordMetadata

from engine import tracing
from engine.core.codec import encode
from engine.core.commands import Command
from engine.read.consumer import committed_reader
from engine.read.index import StatusIndex
from engine.read.status import Interest, Observer, StatusFollower
from engine.topics import Topics, ensure_topics, partition_for, producer_options

from .errors import BackendError
from .settings import ApiSettings

__all__ = ["KafkaLink", "engine_group_id"]

log = logging.getLogger(__name__)

T = TypeVar("T")


def engine_group_id(settings: ApiSettings) -> str:
    """The engine group (`Engine.group_id`): its committed offsets say what it applied."""
    return settings.engine.topic("engine")


#: Tries to read the engine group's offsets across a coordinator move or a fresh cluster's first
#: lookup (backing off 0.1 s, 0.2 s, …: about 1.5 s in all).
_COORDINATOR_ATTEMPTS = 6


class KafkaLink:
    """Producer, admin client, status view and a scanning consumer, as one connection."""

    def __init__(self, settings: ApiSettings) -> None:
        self.settings = settings
        self.topics = Topics.for_settings(settings.engine)
        self.group_id = engine_group_id(settings)
        #: See `observe_view`.
        self.view_observer: Observer | None = None
        self.view_interest: Interest | None = None
        #: The on-disk status index (HEADRACE_API_INDEX_DIR, else a temporary directory), opened
        #: by `start` (a link never started leaves nothing on disk), kept across view rebuilds.
        self.index: StatusIndex | None = None
        self._index_tmp: Path | None = None
        #: Every partition: listings and barriers need them all (the engine's own status view).
        #: Replaced by `start` with one on the index.
        self.view = StatusFollower(settings.engine)
        self.producer: AIOKafkaProducer | None = None
        self.admin: AIOKafkaAdminClient | None = None
        #: read_uncommitted: sees an API's start as soon as it is acked (see consistency.py).
        self.scanner: AIOKafkaConsumer | None = None
        #: read_committed and never assigned: asks for last stable offsets. Not the view's own
        #: consumer: a broker answers one connection's requests in order, so an offsets request
        #: would wait behind the view's long-polling fetch (up to `fetch_max_wait_ms`).
        self.offsets: AIOKafkaConsumer | None = None
        self.partitions = 0
        self.connected = asyncio.Event()
        self.reachable = False
        self.last_error = "not connected to Kafka yet"
        self._coordinator: int | None = None
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def observe_view(self, observer: Observer, interest: Interest | None = None) -> None:
        """Tell `observer` of every change of this link's views, the current one and rebuilt ones
        (of the instances `interest` names, see `StatusFollower.subscribe`)."""
        self.view_observer = observer
        self.view_interest = interest
        self.view.subscribe(observer, interest)

    def start(self) -> None:
        if self.settings.index_dir:
            index_dir = Path(self.settings.index_dir)
        else:
            # mkdtemp, removed by `stop`: a TemporaryDirectory left to the collector warns.
            index_dir = self._index_tmp = Path(tempfile.mkdtemp(prefix="headrace-index-"))
        self.index = StatusIndex(index_dir / f"{self.topics.status}.sqlite", self.topics.status)
        self.view = self._follower()
        self._task = asyncio.create_task(self._run(), name="headrace-api-kafka")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.view.stop()
        await self._close_clients(10)
        if self.index is not None:
            self.index.close()
        if self._index_tmp is not None:
            shutil.rmtree(self._index_tmp, ignore_errors=True)

    async def _close_clients(self, timeout: float) -> None:  # noqa: ASYNC109
        for client in (self.scanner, self.offsets, self.producer):
            if client is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.stop(), timeout)
        if self.admin is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.admin.close(), timeout)

    async def _run(self) -> None:
        backoff = 0.2
        while not self.connected.is_set():
            try:
                await self._connect()
            except (TimeoutError, KafkaError, OSError, RuntimeError) as exc:
                self.last_error = (
                    f"cannot connect to Kafka at {self.settings.engine.bootstrap_servers}: {exc}"
                )
                log.warning("%s; retrying in %.1fs", self.last_error, backoff)
                await self._close_partial()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
        while True:
            await self._probe()
            if self.reachable and not self.view.following:
                await self._restart_view()
            await asyncio.sleep(self.settings.probe_interval_s)

    async def _connect(self) -> None:
        engine = self.settings.engine
        timeout_ms = int(self.settings.kafka_timeout_s * 1000)
        kwargs = engine.client_kwargs()
        await asyncio.wait_for(ensure_topics(engine), self.settings.kafka_timeout_s * 4)
        self.admin = AIOKafkaAdminClient(**kwargs, request_timeout_ms=timeout_ms)
        await self.admin.start()
        self.producer = AIOKafkaProducer(**producer_options(
            engine,
            request_timeout_ms=timeout_ms,
            # Room for a payload at the configured limit plus the command's envelope.
            max_request_size=max(1024 * 1024, engine.max_payload_bytes + 64 * 1024),
        ))
        await self.producer.start()
        self.scanner = committed_reader(
            engine,
            committed=False,
            request_timeout_ms=timeout_ms,
            # A scan reads what is there and stops; it never waits for more.
            fetch_max_wait_ms=10,
        )
        await self.scanner.start()
        self.offsets = committed_reader(engine, request_timeout_ms=timeout_ms)
        await self.offsets.start()
        self.partitions = len(await self.producer.partitions_for(self.topics.commands))
        await self.view.start()
        await asyncio.wait_for(self.view.caught_up.wait(), 60)
        self.reachable = True
        self.connected.set()
        log.info(
            "connected to Kafka at %s (%d partitions)", engine.bootstrap_servers, self.partitions
        )

    def _follower(self) -> StatusFollower:
        """A status view on the index, with the observer `observe_view` set."""
        return StatusFollower(self.settings.engine, observer=self.view_observer, interest=self.view_interest,
                              index=self.index)

    async def _close_partial(self) -> None:
        await self.view.stop()
        self.view = self._follower()
        await self._close_clients(5)
        self.scanner = self.offsets = self.producer = None
        self.admin = None

    async def _restart_view(self) -> None:
        """A view whose follower died (an error aiokafka does not retry) is rebuilt from scratch."""
        log.error("the status view stopped (%r); rebuilding it", self.view.failure)
        old = self.view
        fresh = self._follower()
        try:
            await asyncio.wait_for(fresh.start(), self.settings.kafka_timeout_s * 4)
            await asyncio.wait_for(fresh.caught_up.wait(), 60)
        except (KafkaError, OSError, RuntimeError, TimeoutError) as exc:
            log.warning("rebuilding the status view failed: %s; trying again", exc)
            await fresh.stop()
            return
        self.view = fresh
        await old.stop()

    async def _probe(self) -> None:
        admin = self.admin
        assert admin is not None
        try:
            # Metadata naming no topic: the brokers only. `describe_cluster()` asks for every topic
            # of the cluster, which on a shared cluster of a few thousand topics is tens of CPU
            # milliseconds a second for the broker and for this process (1,118 topics: 35 ms of
            # this process's CPU per probe, against 0.2 ms).
            await asyncio.wait_for(admin.describe_topics([]), self.settings.kafka_timeout_s)
        except (TimeoutError, KafkaError, OSError) as exc:
            if self.reachable:
                log.warning(
                    "Kafka at %s is unreachable: %s", self.settings.engine.bootstrap_servers, exc
                )
            self.reachable = False
            servers = self.settings.engine.bootstrap_servers
            self.last_error = f"Kafka at {servers} is unreachable ({exc or type(exc).__name__})"
            return
        if not self.reachable:
            log.info("Kafka at %s is reachable again", self.settings.engine.bootstrap_servers)
        self.reachable = True

    # -- use -----------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self.connected.is_set() and self.reachable and self.view.following

    def require(self) -> None:
        """Fail fast (a 500 with the operation's code) while Kafka is known to be away."""
        if not self.connected.is_set() or not self.reachable:
            raise BackendError(self.last_error)
        if not self.view.following:
            raise BackendError("the status view stopped following Kafka; see the API's log")

    async def call(self, what: str, awaitable: Awaitable[T]) -> T:
        """Await a Kafka call with the request deadline; failures become a `BackendError`."""
        limit = self.settings.kafka_timeout_s
        try:
            # A deadline on this task, not `wait_for`'s extra task per call: every start makes
            # several of these calls.
            async with asyncio.timeout(limit):
                return await awaitable
        except TimeoutError:
            raise BackendError(
                f"{what}: Kafka at {self.settings.engine.bootstrap_servers} did not answer within "
                f"{limit:g}s"
            ) from None
        except KafkaError as exc:
            raise BackendError(f"{what}: {type(exc).__name__}: {exc}") from exc

    def partition(self, instance_id: str) -> int:
        """The instance's partition in every co-partitioned topic (Kafka's murmur2 partitioner)."""
        return partition_for(instance_id.encode(), self.partitions)

    async def send(self, command: Command) -> RecordMetadata:
        self.require()
        producer = self.producer
        assert producer is not None
        started = time.monotonic()
        metadata = await self.call(
            f"producing {type(command).__name__} for '{command.instance_id}' (it may still be "
            "delivered when Kafka is back)",
            producer.send_and_wait(
                self.topics.commands,
                encode(command),
                key=command.instance_id.encode(),
                # The request's span, so the engine's spans of this command join its trace.
                headers=tracing.headers_for_current(),
            ),
        )
        log.debug(
            "%s produced in %.1f ms", type(command).__name__, (time.monotonic() - started) * 1000
        )
        return metadata

    async def status_end(self, partition: int) -> int:
        """The last stable offset of one status partition: everything the engine committed."""
        return (await self.status_ends([partition]))[partition]

    async def status_ends(self, partitions: Collection[int], *, written: bool = False) -> dict[int, int]:
        """`status_end` of several partitions in one request; `written`: each one's high watermark
        instead, the end of every record written to it, committed or not (read_uncommitted)."""
        consumer = self.scanner if written else self.offsets
        assert consumer is not None
        tps = {p: TopicPartition(self.topics.status, p) for p in partitions}
        found = await self.call("reading the status topic's end", consumer.end_offsets(list(tps.values())))
        return {p: int(found[tp]) for p, tp in tps.items()}

    async def engine_committed_many(self, partitions: Collection[int]) -> dict[int, int | None]:
        """The engine group's committed offset on each of these commands partitions, in one request
        (None: never committed)."""
        admin = self.admin
        assert admin is not None
        tps = {p: TopicPartition(self.topics.commands, p) for p in partitions}
        for attempt in range(1, _COORDINATOR_ATTEMPTS + 1):
            try:
                offsets = await self.call(
                    "reading the engine's committed offsets",
                    admin.list_consumer_group_offsets(self.group_id, self._coordinator, list(tps.values())),
                )
                break
            except BackendError:
                # A moved or restarted coordinator: look it up again. On a fresh cluster the first
                # lookup creates __consumer_offsets and answers COORDINATOR_NOT_AVAILABLE until it
                # has leaders, which takes a moment: back off briefly rather than fail the request.
                self._coordinator = None
                if attempt == _COORDINATOR_ATTEMPTS:
                    raise
                await asyncio.sleep(0.1 * attempt)
        if self._coordinator is None:
            with contextlib.suppress(KafkaError, asyncio.TimeoutError):
                self._coordinator = await asyncio.wait_for(admin.find_coordinator(self.group_id), 1)
        committed: dict[int, int | None] = {}
        for p, tp in tps.items():
            found = offsets.get(tp)
            committed[p] = None if found is None or found.offset < 0 else int(found.offset)
        return committed
