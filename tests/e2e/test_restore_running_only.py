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
from aiokafka import AIOKafkaProducer

from engine import WorkflowStatus
from engine.client.dapr import DaprWorkflowClient
from engine.core.values import RuntimeStatus
from engine.read.to_end import latest_by_key
from engine.runtime.host import RuntimeHost
from engine.runtime.partition import partition_for
from engine.settings import Settings
from engine.topics import Topics
from engine.wire.records import decode_state, encode_state, history_chunk_key
from tests.e2e.apps import runtime
from tests.helpers import eventually

pytestmark = pytest.mark.kafka

WAIT = 120


def _read_at_restore(host: RuntimeHost) -> int:
    return sum(owner.read_at_restore for owner in host.engine.owners.values())


def test_finished_instances_are_not_restored_and_can_still_be_purged(kafka_bootstrap: str) -> None:
    settings = Settings.from_env(bootstrap_servers=kafka_bootstrap, topic_prefix=f"rr-{uuid.uuid4().hex[:8]}.",
                                 partitions=4)
    host = RuntimeHost(runtime.registry, settings)
    host.start(timeout=90)
    restarted: RuntimeHost | None = None
    try:
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
            restarted = RuntimeHost(runtime.registry, settings)
            restarted.start(timeout=90)
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
    finally:
        if restarted is not None:
            restarted.stop()
        host.stop()


def test_a_write_by_an_engine_without_snapshots_makes_the_restore_read_status(kafka_bootstrap: str) -> None:
    settings = Settings.from_env(bootstrap_servers=kafka_bootstrap, topic_prefix=f"rm-{uuid.uuid4().hex[:8]}.",
                                 partitions=4)
    topics = Topics.for_settings(settings)
    host = RuntimeHost(runtime.registry, settings)
    host.start(timeout=90)
    restarted: RuntimeHost | None = None
    try:
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
            restarted = RuntimeHost(runtime.registry, settings)
            restarted.start(timeout=90)
            running = {iid for owner in restarted.engine.owners.values() for iid in owner.histories}
            assert ended not in running  # its stale snapshot was not believed
            assert sleeping[1] in running
            assert restarted.engine.owners[number].states[ended].status is RuntimeStatus.TERMINATED
    finally:
        if restarted is not None:
            restarted.stop()
        host.stop()


async def _produce(settings: Settings, records: list[tuple[str, bytes, bytes | None, int]]) -> None:
    producer = AIOKafkaProducer(**settings.client_kwargs())
    await producer.start()
    try:
        for topic, key, value, partition in records:
            await producer.send_and_wait(topic, value, key=key, partition=partition)
    finally:
        await producer.stop()
