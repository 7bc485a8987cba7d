"""Issue 16: a restore reads running work only (`PartitionOwner._restore`, state snapshots).

Finished instances have no snapshot in `history-store`, so an engine that takes their partitions
reads none of them; they stay readable (the status topic is the read side), and a purge of one
still works (looked up in `status` by key).
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from engine import WorkflowStatus
from engine.client.dapr import DaprWorkflowClient
from engine.core.values import RuntimeStatus
from engine.read.to_end import latest_by_key
from engine.runtime.host import RuntimeHost
from engine.settings import Settings
from engine.topics import Topics, partition_for
from engine.wire.records import (
    SNAPSHOT_SUFFIX,
    SNAPSHOTS_MARKER,
    decode_chunk,
    decode_state,
    encode_events,
    encode_state,
    history_chunk_key,
    state_snapshot_key,
)
from tests.e2e.apps import runtime
from tests.helpers import eventually

pytestmark = pytest.mark.kafka

WAIT = 120


class _Engines:
    """Engine hosts started one after another on the same topics (a restart is a new one); each is
    stopped at the end of the block, whatever the test stopped already."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.hosts: list[RuntimeHost] = []

    def start(self) -> RuntimeHost:
        host = RuntimeHost(runtime.registry, self.settings)
        self.hosts.append(host)
        host.start(timeout=90)
        return host

    def __enter__(self) -> _Engines:
        return self

    def __exit__(self, *exc: object) -> None:
        for host in reversed(self.hosts):
            host.stop()


def _read_at_restore(host: RuntimeHost) -> int:
    return sum(owner.read_at_restore for owner in host.engine.owners.values())


def test_finished_instances_are_not_restored_and_can_still_be_purged(kafka_bootstrap: str) -> None:
    settings = Settings.from_env(bootstrap_servers=kafka_bootstrap, topic_prefix=f"rr-{uuid.uuid4().hex[:8]}.",
                                 partitions=4)
    with _Engines(settings) as engines:
        host = engines.start()
        assert _read_at_restore(host) == 0
        with DaprWorkflowClient(settings=settings) as client:
            done = [client.schedule_new_workflow("counter", input=1) for _ in range(20)]
            for iid in done:
                state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
                assert state is not None and state.runtime_status is WorkflowStatus.COMPLETED
            sleeping = [client.schedule_new_workflow("sleeper", input=600.0) for _ in range(2)]
            for iid in sleeping:
                client.wait_for_workflow_start(iid, timeout_in_seconds=WAIT)
            host.stop()
            restarted = engines.start()
            # Only the two running instances were read back, none of the 20 finished ones.
            assert _read_at_restore(restarted) == 2
            assert sum(len(owner.histories) for owner in restarted.engine.owners.values()) == 2
            # The finished ones are still there to read, and a purge still finds them.
            finished = client.get_workflow_state(done[1])
            assert finished is not None and finished.runtime_status is WorkflowStatus.COMPLETED
            client.purge_workflow(done[0])
            eventually(lambda: client.get_workflow_state(done[0]) is None, timeout=WAIT)
            # The running ones were restored with their state: they take commands.
            for iid in sleeping:
                client.terminate_workflow(iid)
            for iid in sleeping:
                state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
                assert state is not None and state.runtime_status is WorkflowStatus.TERMINATED


def test_a_write_by_an_engine_without_snapshots_makes_the_restore_read_status(kafka_bootstrap: str) -> None:
    settings = Settings.from_env(bootstrap_servers=kafka_bootstrap, topic_prefix=f"rm-{uuid.uuid4().hex[:8]}.",
                                 partitions=4)
    topics = Topics.for_settings(settings)
    with _Engines(settings) as engines:
        host = engines.start()
        with DaprWorkflowClient(settings=settings) as client:
            sleeping = [client.schedule_new_workflow("sleeper", input=600.0) for _ in range(2)]
            for iid in sleeping:
                client.wait_for_workflow_start(iid, timeout_in_seconds=WAIT)
            host.stop()
            # An engine of an earlier version (a mixed fleet mid-upgrade) ends the first one: it
            # writes its state and drops its history chunk, and knows nothing of snapshots.
            ended = sleeping[0]
            number = partition_for(ended.encode(), settings.partitions)
            value = asyncio.run(latest_by_key(settings, topics.status, number, only=ended.encode()))[ended.encode()]
            assert value is not None
            state = decode_state(value)
            done = replace(state, status=RuntimeStatus.TERMINATED, completed_at=datetime.now(UTC))
            asyncio.run(_produce(settings, [
                (topics.status, ended.encode(), encode_state(done), number),
                (topics.history_store, history_chunk_key(ended, state.execution_id, 0), None, number),
            ]))
            restarted = engines.start()
            running = {iid for owner in restarted.engine.owners.values() for iid in owner.histories}
            assert ended not in running  # its stale snapshot was not believed
            assert sleeping[1] in running
            assert restarted.engine.owners[number].states[ended].status is RuntimeStatus.TERMINATED


def test_a_partition_written_before_states_rode_in_chunks_restores(kafka_bootstrap: str) -> None:
    """Issue 17 moved a running instance's state into its open history chunk; a partition written
    before (a chunk of events only, the state as a snapshot record, the marker after each
    transaction) restores the same, and the snapshot it leaves is tombstoned when the run ends."""
    settings = Settings.from_env(bootstrap_servers=kafka_bootstrap, topic_prefix=f"ro-{uuid.uuid4().hex[:8]}.",
                                 partitions=2)
    topics = Topics.for_settings(settings)
    with _Engines(settings) as engines:
        host = engines.start()
        with DaprWorkflowClient(settings=settings) as client:
            sleeping = [client.schedule_new_workflow("sleeper", input=600.0) for _ in range(3)]
            for iid in sleeping:
                client.wait_for_workflow_start(iid, timeout_in_seconds=WAIT)
            host.stop()
            # Rewrite each one's records as the previous version wrote them.
            old: list[tuple[str, bytes, bytes | None, int]] = []
            for iid in sleeping:
                number = partition_for(iid.encode(), settings.partitions)
                store = asyncio.run(latest_by_key(settings, topics.history_store, number))
                chunks = {key: value for key, value in store.items()
                          if key.startswith(iid.encode() + b"\x00") and value is not None
                          and not key.endswith(SNAPSHOT_SUFFIX)}
                assert chunks, iid
                for key, value in chunks.items():
                    chunk = decode_chunk(value)
                    if chunk.state is not None:
                        old.append((topics.history_store, state_snapshot_key(iid),
                                    encode_state(decode_state(chunk.state)), number))
                    old.append((topics.history_store, key,
                                encode_events(iid, chunk.execution_id, chunk.events), number))
                old.append((topics.history_store, SNAPSHOTS_MARKER, b"1", number))
            asyncio.run(_produce(settings, old))
            restarted = engines.start()
            owners = restarted.engine.owners.values()
            assert sum(owner.read_at_restore for owner in owners) == 3
            assert sum(owner.restore_problems for owner in owners) == 0
            for iid in sleeping:
                owner = restarted.engine.owners[partition_for(iid.encode(), settings.partitions)]
                assert len(owner.histories[iid]) == owner.states[iid].history_length > 0
                assert iid in owner.snapshot_keys
                client.terminate_workflow(iid)
            for iid in sleeping:
                state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
                assert state is not None and state.runtime_status is WorkflowStatus.TERMINATED
            restarted.stop()
            # Their old snapshots were tombstoned with the runs: nothing is left to restore.
            restarted = engines.start()
            assert _read_at_restore(restarted) == 0


def test_running_states_ride_in_their_open_chunk(kafka_bootstrap: str) -> None:
    """Issue 17: one history-store record per turn of a running instance, which a restore reads back."""
    settings = Settings.from_env(bootstrap_servers=kafka_bootstrap, topic_prefix=f"rc-{uuid.uuid4().hex[:8]}.",
                                 partitions=2)
    topics = Topics.for_settings(settings)
    with _Engines(settings) as engines:
        host = engines.start()
        with DaprWorkflowClient(settings=settings) as client:
            iid = client.schedule_new_workflow("sleeper", input=600.0)
            client.wait_for_workflow_start(iid, timeout_in_seconds=WAIT)
            host.stop()
            number = partition_for(iid.encode(), settings.partitions)
            store = asyncio.run(latest_by_key(settings, topics.history_store, number))
            # No snapshot of its own and no per-transaction marker: its chunk holds its state.
            assert state_snapshot_key(iid) not in store
            assert SNAPSHOTS_MARKER in store  # written once, when the first owner seeded the partition
            (chunk,) = [decode_chunk(value) for key, value in store.items()
                        if key.startswith(iid.encode() + b"\x00") and value is not None]
            assert chunk.state is not None
            assert decode_state(chunk.state).status is RuntimeStatus.RUNNING
            restarted = engines.start()
            assert _read_at_restore(restarted) == 1
            owner = restarted.engine.owners[number]
            assert owner.states[iid].status is RuntimeStatus.RUNNING
            assert len(owner.histories[iid]) == owner.states[iid].history_length
            assert owner.snapshot_keys == set()


async def _produce(settings: Settings, records: list[tuple[str, bytes, bytes | None, int]]) -> None:
    producer = AIOKafkaProducer(**settings.client_kwargs())
    await producer.start()
    try:
        for topic, key, value, partition in records:
            await producer.send_and_wait(topic, value, key=key, partition=partition)
    finally:
        await producer.stop()


def test_an_engine_reads_on_from_the_positions_its_state_carries(kafka_bootstrap: str) -> None:
    """Issue 17: the input positions ride in `history-store` with the state, not in the group's
    offsets. With the group's offsets rewound to 0 behind its back, a restarted engine still reads
    on from where its state ends (nothing applied twice) and brings the group's offsets back up."""
    settings = Settings.from_env(bootstrap_servers=kafka_bootstrap, topic_prefix=f"rp-{uuid.uuid4().hex[:8]}.",
                                 partitions=4)
    topics = Topics.for_settings(settings)
    group = settings.topic("engine")
    tps = [TopicPartition(topic, n) for topic in topics.inputs for n in range(settings.partitions)]
    with _Engines(settings) as engines:
        host = engines.start()
        with DaprWorkflowClient(settings=settings) as client:
            for iid in [client.schedule_new_workflow("counter", input=2) for _ in range(20)]:
                state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
                assert state is not None and state.runtime_status is WorkflowStatus.COMPLETED
            host.stop()
            before = asyncio.run(_end_offsets(settings, tps))
            assert sum(before.values()) >= 60  # 20 starts and 40 activity results were consumed
            asyncio.run(_commit_offsets(settings, group, {tp: 0 for tp in tps}))
            restarted = engines.start()
            for number, owner in restarted.engine.owners.items():
                for topic in topics.inputs:
                    assert owner.positions.get(topic, 0) == before[TopicPartition(topic, number)]
            # One new workflow on each partition: any old input read again would be applied first.
            ids: dict[int, str] = {}
            while len(ids) < settings.partitions:
                iid = uuid.uuid4().hex
                ids.setdefault(partition_for(iid.encode(), settings.partitions), iid)
            new = [client.schedule_new_workflow("counter", input=2, instance_id=iid) for iid in ids.values()]
            for iid in new:
                state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
                assert state is not None and state.runtime_status is WorkflowStatus.COMPLETED
            after = asyncio.run(_end_offsets(settings, tps))
            consumed = sum(after.values()) - sum(before.values())
            processed = sum(owner.processed for owner in restarted.engine.owners.values())
            assert 0 < processed <= consumed  # the 20 old workflows' inputs were not applied again

            def caught_up() -> bool:
                committed = asyncio.run(_committed(settings, group, tps))
                return all(committed.get(tp, 0) >= before[tp] for tp in tps)

            eventually(caught_up, timeout=WAIT)


async def _end_offsets(settings: Settings, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(**settings.client_kwargs())
    await consumer.start()
    try:
        return dict(await consumer.end_offsets(tps))
    finally:
        await consumer.stop()


async def _commit_offsets(settings: Settings, group: str, offsets: dict[TopicPartition, int]) -> None:
    consumer = AIOKafkaConsumer(**settings.client_kwargs(), group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        await consumer.commit(offsets)
    finally:
        await consumer.stop()


async def _committed(settings: Settings, group: str, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(**settings.client_kwargs(), group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        return {tp: offset for tp in tps if (offset := await consumer.committed(tp)) is not None}
    finally:
        await consumer.stop()
