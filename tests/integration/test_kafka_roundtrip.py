"""Produce and consume through the session's real broker with aiokafka."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

pytestmark = pytest.mark.kafka


async def _create_topic(bootstrap: str, name: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()


async def test_keyed_roundtrip_keeps_per_key_order(kafka_bootstrap, unique_topic, unique_group):
    topic = unique_topic("roundtrip")
    await _create_topic(kafka_bootstrap, topic, partitions=3)
    sent = [(f"instance-{i % 7}".encode(), f"event-{i}".encode()) for i in range(200)]

    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        await asyncio.gather(*[producer.send(topic, key=k, value=v) for k, v in sent])
        await producer.flush()
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=unique_group(),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    received: list[tuple[bytes, bytes]] = []
    try:
        async with asyncio.timeout(60):
            while len(received) < len(sent):
                batch = await consumer.getmany(timeout_ms=1000)
                for records in batch.values():
                    received.extend((r.key, r.value) for r in records)
    finally:
        await consumer.stop()

    assert sorted(received) == sorted(sent)
    by_key_sent: dict[bytes, list[bytes]] = defaultdict(list)
    by_key_received: dict[bytes, list[bytes]] = defaultdict(list)
    for key, value in sent:
        by_key_sent[key].append(value)
    for key, value in received:
        by_key_received[key].append(value)
    # Same key, same partition: Kafka's ordering guarantee the engine's event sourcing relies on.
    assert by_key_received == by_key_sent


async def test_each_test_gets_fresh_topics(kafka_bootstrap, unique_topic, topic_prefix):
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        existing = await admin.list_topics()
    finally:
        await admin.close()
    assert unique_topic().startswith(topic_prefix)
    assert unique_topic("a") != unique_topic("b")
    # Nothing any other test produced can be on a topic under this test's prefix.
    assert not [t for t in existing if t.startswith(topic_prefix)]
