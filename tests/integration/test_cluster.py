"""The 3-node cluster: RF=3, min.insync.replicas=2, and acks=all writes that survive a crash."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from ops.kafka import LocalKafka
from ops.process import pids_mentioning

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]


PARTITIONS = 3


async def _partition_leaders(bootstrap: str, topic: str) -> dict[int, tuple[int, list[int]]]:
    """Leader and in-sync replicas of each partition, as the metadata shows them now (maybe none yet)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return {p["partition"]: (p["leader"], sorted(p["isr"])) for p in described.get("partitions", [])}


async def _wait_for_leaders(
    bootstrap: str, topic: str, accept: Callable[[int, list[int]], bool], what: str, within: float = 60
) -> dict[int, tuple[int, list[int]]]:
    """Wait until the metadata lists every partition of `topic` with a leader that `accept`s.

    Right after `create_topics` (or a broker kill) the metadata may list no partitions, some, or
    leaders of -1; a check over what is listed then would pass vacuously or fail with KeyError.
    """
    leaders: dict[int, tuple[int, list[int]]] = {}
    try:
        async with asyncio.timeout(within):
            while True:
                leaders = await _partition_leaders(bootstrap, topic)
                if sorted(leaders) == list(range(PARTITIONS)) and all(
                    leader >= 0 and accept(leader, isr) for leader, isr in leaders.values()
                ):
                    return leaders
                await asyncio.sleep(0.5)  # polling the metadata, bounded by the timeout above
    except TimeoutError:
        raise AssertionError(f"{topic}: not every partition had {what} within {within}s: {leaders}") from None


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
                [NewTopic(topic, PARTITIONS, 3, topic_configs={"min.insync.replicas": "2"})]
            )
        finally:
            await admin.close()
        assert [(name, err) for name, err, *_ in response.topic_errors] == [(topic, 0)], response
        leaders = await _wait_for_leaders(bootstrap, topic, lambda _leader, isr: isr == [1, 2, 3],
                                          "a leader and all three replicas in sync")

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
        # Every partition has a leader other than the victim, and min.insync.replicas=2 is still met
        # by the two survivors.
        after = await _wait_for_leaders(
            survivors, topic, lambda leader, isr: leader != victim and len(isr) >= 2 and victim not in isr,
            "a surviving leader and two survivors in sync")
        assert sorted(after) == list(range(PARTITIONS))

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
        rejoined = await _wait_for_leaders(bootstrap, topic, lambda _leader, isr: isr == [1, 2, 3],
                                           "all three replicas in sync again")
        assert sorted(rejoined) == list(range(PARTITIONS))
    finally:
        stopped_at = time.monotonic()
        local.down(wipe=True)
        print(f"cluster stopped in {time.monotonic() - stopped_at:.1f}s")
    assert pids_mentioning(str(state)) == []
    assert all(s.pid is None for s in local.status()) or local.status() == []
