"""The ceiling: a raw aiokafka produce -> consume round trip through the same broker.

Same client settings as the engine (security, idempotent producer with acks=all, read_committed
consumer), same partition count, records about the size of an engine record, in one Python process
as the engine's processes are. What an engine cannot beat is what this reaches; each scenario's
Kafka records/s is printed as a fraction of it, which compares across machines of unequal speed.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
import uuid
from dataclasses import asdict, dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from engine.read.consumer import committed_reader
from engine.runtime.partition import PRODUCER_RETRY_BACKOFF_MS, retry_concurrent_transactions_sooner
from engine.settings import Settings
from engine.topics import producer_options

from .stats import percentiles

__all__ = ["Ceiling", "measure_ceiling"]

_STAMP = struct.Struct("<dq")

log = logging.getLogger(__name__)

#: Transactions per second for the transaction figures: spaced like a lightly loaded partition's
#: turns, so no transaction waits for the previous one's markers (CONCURRENT_TRANSACTIONS).
TRANSACTION_RATE = 50.0


@dataclass(frozen=True)
class Ceiling:
    records: int
    record_bytes: int
    partitions: int
    records_per_s: float
    mb_per_s: float
    #: Send -> consume latency while saturated (queueing included).
    saturated_latency_ms: dict[str, float]
    #: Send -> consume latency at a low fixed rate: the broker round trip itself.
    idle_rate: float
    idle_latency_ms: dict[str, float]
    #: One transaction of a record on each of three partitions, as an engine turn writes (status,
    #: history store, audit), at `transaction_rate`: what a step's commit cannot beat.
    transaction_ms: dict[str, float]
    #: The same with the consumed offsets committed in it (`send_offsets_to_transaction`), as the
    #: engine did before issue 17: the price of those two round trips.
    transaction_with_offsets_ms: dict[str, float]
    transaction_rate: float = TRANSACTION_RATE

    def to_json(self) -> dict[str, object]:
        return asdict(self)


async def measure_ceiling(
    settings: Settings,
    *,
    records: int = 50_000,
    record_bytes: int = 512,
    idle_rate: float = 200.0,
    idle_s: float = 5.0,
    in_flight: int = 2000,
    transactions: int = 200,
) -> Ceiling:
    topic = f"{settings.topic_prefix}ceiling.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(**settings.client_kwargs())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, settings.partitions, settings.replication_factor)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(**settings.client_kwargs(), enable_idempotence=True, linger_ms=2)
    # The engine's readers' consumer: read_committed, with their fetch wait.
    consumer = committed_reader(settings)
    await producer.start()
    await consumer.start()
    try:
        # Until the new topic is in the brokers' metadata (the producer's public wait for it);
        # the consumer fetches its own metadata for the partitions `assign` gives it.
        await producer.partitions_for(topic)
        tps = [TopicPartition(topic, p) for p in range(settings.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        padding = b"x" * max(0, record_bytes - _STAMP.size)
        # Warm the connections and metadata so the first timed record pays no setup.
        await _round(producer, consumer, topic, padding, 200, in_flight, None)
        t0 = time.monotonic()
        saturated = await _round(producer, consumer, topic, padding, records, in_flight, None)
        elapsed = time.monotonic() - t0
        idle = await _round(
            producer,
            consumer,
            topic,
            padding,
            max(1, int(idle_rate * idle_s)),
            in_flight,
            idle_rate,
        )
        plain = await _transactions(settings, topic, padding, transactions, offsets=False)
        with_offsets = await _transactions(settings, topic, padding, transactions, offsets=True)
    finally:
        await producer.stop()
        await consumer.stop()
        admin = AIOKafkaAdminClient(**settings.client_kwargs())
        await admin.start()
        try:
            await admin.delete_topics([topic])
        except KafkaError as exc:
            # A leftover measurement topic is harmless; say so rather than fail the run.
            log.warning("could not delete %s: %s", topic, exc)
        finally:
            await admin.close()
    return Ceiling(
        records=records,
        record_bytes=record_bytes,
        partitions=settings.partitions,
        records_per_s=records / elapsed,
        mb_per_s=records * record_bytes / elapsed / 1e6,
        saturated_latency_ms=percentiles([x * 1000 for x in saturated]),
        idle_rate=idle_rate,
        idle_latency_ms=percentiles([x * 1000 for x in idle]),
        transaction_ms=percentiles([x * 1000 for x in plain]),
        transaction_with_offsets_ms=percentiles([x * 1000 for x in with_offsets]),
    )


async def _transactions(settings: Settings, topic: str, padding: bytes, count: int, *, offsets: bool) -> list[float]:
    """Durations of `count` transactions (after a few to warm up), each a record on partitions
    0-2 of `topic`, and with `offsets` an offset commit for a consumer group of its own."""
    tag = "offsets" if offsets else "plain"
    # As the engine's transactional producers are made, their retry back-offs included. With
    # aiokafka's own 20 ms wait after CONCURRENT_TRANSACTIONS, one transaction slower than the
    # spacing (a broker still warming up) made the next begin before the previous one's markers
    # were written, wait 20 ms, and so on: a run on a fresh broker reported 25 ms per transaction
    # where the engine's commits took 2-3.
    retry_concurrent_transactions_sooner()
    producer = AIOKafkaProducer(**producer_options(settings, transactional_id=f"{topic}-{tag}",
                                                   retry_backoff_ms=PRODUCER_RETRY_BACKOFF_MS))
    await producer.start()
    try:
        partitions = range(min(3, settings.partitions))
        durations: list[float] = []
        warm = 10
        t0 = time.monotonic()
        for n in range(warm + count):
            await asyncio.sleep(max(0.0, t0 + n / TRANSACTION_RATE - time.monotonic()))
            began = time.monotonic()
            async with producer.transaction():
                for partition in partitions:
                    await producer.send(topic, padding, key=b"t", partition=partition)
                if offsets:
                    await producer.send_offsets_to_transaction({TopicPartition(topic, 0): n}, f"{topic}-group")
            if n >= warm:
                durations.append(time.monotonic() - began)
        return durations
    finally:
        await producer.stop()


async def _round(
    producer: AIOKafkaProducer,
    consumer: AIOKafkaConsumer,
    topic: str,
    padding: bytes,
    count: int,
    in_flight: int,
    rate: float | None,
) -> list[float]:
    """Send `count` records (as fast as `in_flight` allows, or at `rate`) and read them all back."""
    latencies: list[float] = []
    run = time.monotonic_ns()  # tells this round's records from an earlier round's stragglers

    async def consume() -> None:
        while len(latencies) < count:
            batches = await consumer.getmany(timeout_ms=100, max_records=10_000)
            now = time.monotonic()
            for records in batches.values():
                for record in records:
                    sent, tag = _STAMP.unpack_from(record.value or b"")
                    if tag == run:
                        latencies.append(now - sent)

    reader = asyncio.create_task(consume())
    window = asyncio.Semaphore(in_flight)
    t0 = time.monotonic()
    for n in range(count):
        if rate is not None:
            await asyncio.sleep(max(0.0, t0 + n / rate - time.monotonic()))
        await window.acquire()
        value = _STAMP.pack(time.monotonic(), run) + padding
        future = await producer.send(topic, value, key=str(n).encode())
        future.add_done_callback(lambda _f: window.release())
    await asyncio.wait_for(reader, timeout=120)
    return latencies
