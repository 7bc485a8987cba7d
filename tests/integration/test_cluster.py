"""The 3-node cluster: RF=3, min.insync.replicas=2, and acks=all writes that survive a crash."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from ops.kafka import LocalKafka
from ops.kafka.process import pids_mentioning

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]


async def _partition_leaders(bootstrap: str, topic: str) -> dict[int, tuple[int, list[int]]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return {p["partition"]: (p["leader"], sorted(p["isr"])) for p in described["partitions"]}


async def _produce(producer: AIOKafkaProducer, topic: str, values: range) -> None:
    for i in values:
        # One at a time: each send must be acknowledged by every in-sync replica before the next.
        await producer.send_and_wait(topic, key=b"k%d" % (i % 5), value=b"%d" % i)


async def test_acks_all_producer_keeps_writing_when_a_leader_is_killed(tmp_path, java_runtime):
    state = tmp_path / "cluster"
    # Spawned from this (main) thread: die_with_parent is tied to the spawning thread's life.
    local = LocalKafka(state, die_with_parent=True)
    started = time.monotonic()
    up = local.up(nodes=3, port=None)
    print(f"3-node cluster ready in {time.monotonic() - started:.1f}s at {up.manifest.bootstrap}")
    pids = [s.pid for s in local.status()]
    assert all(pids)
    assert len(set(pids)) == 3
    try:
        bootstrap = up.manifest.bootstrap
        topic = "fault-tolerant"
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            response = await admin.create_topics(
                [NewTopic(topic, 3, 3, topic_configs={"min.insync.replicas": "2"})]
            )
        finally:
            await admin.close()
        assert all(err == 0 for _name, err, *_ in response.topic_errors), response
        leaders = await _partition_leaders(bootstrap, topic)
        assert all(isr == [1, 2, 3] for _leader, isr in leaders.values()), leaders

        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, retry_backoff_ms=200
        )
        await producer.start()
        try:
            async with asyncio.timeout(60):
                await _produce(producer, topic, range(100))
            victim = leaders[0][0]
            killed_pid = local.kill_node(victim)  # SIGKILL, one call
            killed_at = time.monotonic()
            assert pids_mentioning(str(state / f"node-{victim}")) == []
            async with asyncio.timeout(120):
                await _produce(producer, topic, range(100, 101))
                print(
                    f"first acks=all write after killing node {victim} (pid {killed_pid}) took "
                    f"{time.monotonic() - killed_at:.1f}s"
                )
                await _produce(producer, topic, range(101, 200))
        finally:
            await producer.stop()

        survivors = ",".join(n.bootstrap for n in up.manifest.nodes if n.node_id != victim)
        after = await _partition_leaders(survivors, topic)
        assert after[0][0] != victim
        # min.insync.replicas=2 is still met by the two survivors.
        assert all(len(isr) >= 2 and victim not in isr for _leader, isr in after.values()), after

        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=survivors, auto_offset_reset="earliest", group_id=None
        )
        await consumer.start()
        seen: list[bytes] = []
        try:
            async with asyncio.timeout(60):
                while len(seen) < 200:
                    for records in (await consumer.getmany(timeout_ms=1000)).values():
                        seen.extend(r.value for r in records)
        finally:
            await consumer.stop()
        # Nothing lost, nothing duplicated (idempotent producer).
        assert sorted(int(v) for v in seen) == list(range(200))

        # The killed node comes back from its own data and rejoins every partition's ISR.
        local.start_node(victim)
        async with asyncio.timeout(60):
            while True:
                rejoined = await _partition_leaders(bootstrap, topic)
                if all(isr == [1, 2, 3] for _leader, isr in rejoined.values()):
                    break
                await asyncio.sleep(0.5)  # polling the ISR, bounded by the timeout above
    finally:
        stopped_at = time.monotonic()
        local.down(wipe=True)
        print(f"cluster stopped in {time.monotonic() - stopped_at:.1f}s")
    assert pids_mentioning(str(state)) == []
    assert all(s.pid is None for s in local.status()) or local.status() == []
