"""A partition owner's transaction goes to the broker in one produce request, not one per 16 KiB.

aiokafka sends a node one produce request at a time, with at most one batch per partition in it;
with its default batch size (16 KiB) a transaction of a few hundred KiB, an engine partition's
turns under load, went out in a dozen requests one after another inside the commit
(`engine.topics.PRODUCE_BATCH_BYTES`).
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from aiokafka.protocol.produce import ProduceRequest

from engine.core.orchestrator import Orchestrator
from engine.read.to_end import latest_by_key
from engine.runtime.partition import PartitionOwner
from engine.runtime.sink import TransactionSink
from engine.sdk.registry import Registry
from engine.settings import Settings
from engine.topics import Topics, ensure_topics

pytestmark = pytest.mark.kafka

#: Per topic: 80 records of 1 KiB, five times aiokafka's default batch size.
RECORDS, VALUE = 80, b"v" * 1024


async def test_a_large_transaction_is_one_produce_request(kafka_bootstrap: str) -> None:
    settings = Settings.from_env(bootstrap_servers=kafka_bootstrap, partitions=1,
                                 topic_prefix=f"txreq-{uuid.uuid4().hex[:8]}.")
    await ensure_topics(settings)
    topics = Topics.for_settings(settings)
    owner = PartitionOwner(0, settings, topics, Orchestrator(Registry().get_workflow), f"g-{uuid.uuid4().hex}")
    await owner.start()
    try:
        producer = owner.producer
        assert producer is not None
        requests: list[object] = []
        send = producer.client.send

        async def counting(node_id: int, request: object, *args: object, **kwargs: object) -> object:
            requests.append(request)
            return await send(node_id, request, *args, **kwargs)

        # A first transaction to the topics: the producer learns their metadata (its first send to
        # a topic waits for it, which splits that transaction's requests).
        warm = TransactionSink(owner)
        for topic in (topics.status, topics.tasks, topics.history):
            warm.add(topic, b"warm", b"w", 0)
        await owner._commit(warm, {})
        producer.client.send = counting
        pending = TransactionSink(owner)
        for topic in (topics.status, topics.tasks, topics.history):
            for n in range(RECORDS):
                pending.add(topic, f"i-{n}".encode(), VALUE, 0)
        await owner._commit(pending, {})
        produced = [r for r in requests if isinstance(r, ProduceRequest)]
        # The three partitions' ~80 KiB each in the first request (aiokafka's default batch made it
        # 18 requests, about six per partition one after another). Kafka may refuse a write that
        # follows the previous commit too closely as retriable, and aiokafka sends it again: only
        # the first request is counted on.
        assert produced, "no produce request"
        first = produced[0]._topics
        assert sorted(topic for topic, _ in first) == sorted([topics.status, topics.tasks, topics.history])
        assert all(len(partitions) == 1 for _, partitions in first)
        expected = {b"warm": b"w", **{f"i-{n}".encode(): VALUE for n in range(RECORDS)}}
        # A commit returns once the transaction is prepared; read_committed readers see it when
        # its markers are written, moments later.
        deadline = time.monotonic() + 30
        while (committed := await latest_by_key(settings, topics.status, 0)) != expected \
                and time.monotonic() < deadline:  # noqa: ASYNC110 - the broker has no event to await
            await asyncio.sleep(0.05)  # the next read, not a wait for a race to settle
        assert committed == expected
    finally:
        await owner.stop()
