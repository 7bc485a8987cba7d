"""The engine lets finished instances go from memory, and still purges them; late commands to the
recently finished ones are moot, as to any finished instance, not dead-lettered as unknown."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaProducer

from engine import WorkflowStatus
from engine.client.dapr import DaprWorkflowClient
from engine.core.codec import encode
from engine.core.commands import RaiseEvent
from engine.read.to_end import reading
from engine.runtime import partition
from engine.runtime.host import RuntimeHost
from engine.settings import Settings
from engine.topics import Topics
from tests.e2e.apps import runtime
from tests.helpers import eventually

pytestmark = pytest.mark.kafka


def test_finished_instances_leave_memory_and_can_still_be_purged(
    kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(partition, "FINISHED_KEPT", 3)
    settings = Settings.from_env(bootstrap_servers=kafka_bootstrap, topic_prefix=f"m-{uuid.uuid4().hex[:8]}.",
                                 partitions=1)
    host = RuntimeHost(runtime.registry, settings)
    host.start(timeout=90)
    try:
        with DaprWorkflowClient(settings=settings) as client:
            ids = [client.schedule_new_workflow("fan_out", input=[i]) for i in range(10)]
            for iid in ids:
                state = client.wait_for_workflow_completion(iid, timeout_in_seconds=60)
                assert state is not None and state.runtime_status is WorkflowStatus.COMPLETED
            owner = host.engine.owners[0]
            assert len(owner.states) == 3  # only the most recent finished ones stay
            assert ids[0] not in owner.states
            client.purge_workflow(ids[0])
            eventually(lambda: client.get_workflow_state(ids[0]) is None)

            # Late commands to finished instances no longer in memory; the last one, to an ID
            # nobody started, is dead-lettered, and one partition applies them in order.
            assert ids[1] not in owner.states and ids[2] not in owner.states
            client.raise_workflow_event(ids[1], "late", data=1)
            client.terminate_workflow(ids[2])
            asyncio.run(_send(settings, RaiseEvent(instance_id="never-started", command_id="c1", name="late")))
            eventually(lambda: "never-started" in _dead_lettered(settings), timeout=60)
            dead = _dead_lettered(settings)
            assert ids[1] not in dead and ids[2] not in dead
            assert client.get_workflow_state(ids[2]).runtime_status is WorkflowStatus.COMPLETED  # type: ignore[union-attr]
    finally:
        host.stop()


async def _send(settings: Settings, command: RaiseEvent) -> None:
    """Straight to the commands topic: the client refuses a command to an instance it cannot find."""
    producer = AIOKafkaProducer(**settings.client_kwargs())
    await producer.start()
    try:
        await producer.send_and_wait(Topics.for_settings(settings).commands, encode(command),
                                     key=command.instance_id.encode())
    finally:
        await producer.stop()


def _dead_lettered(settings: Settings) -> set[str]:
    """The keys of every record on the dead-letter topic."""

    async def read() -> set[str]:
        keys: set[str] = set()
        async with reading(settings, Topics.for_settings(settings).dead_letter) as batches:
            async for records in batches:
                keys.update(r.key.decode() for r in records if r.key is not None)
        return keys

    return asyncio.run(read())
