"""A partition owner's transaction goes to the broker in one produce request, not one per 16 KiB.

aiokafka sends a node one produce request at a time, with at most one batch per partition in it;
with its default batch size (16 KiB) a transaction of a few hundred KiB, an engine partition's
turns under load, went out in a dozen requests one after another inside the commit
(`engine.topics.PRODUCE_BATCH_BYTES`).
"""

from __future__ import annotations

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
        # The three partitions' ~80 KiB each in one request (aiokafka's default made it 6).
        assert len(produced) == 1, f"{len(produced)} produce requests for one transaction"
        committed = await latest_by_key(settings, topics.status, 0)
        assert committed == {b"warm": b"w", **{f"i-{n}".encode(): VALUE for n in range(RECORDS)}}
    finally:
        await owner.stop()
