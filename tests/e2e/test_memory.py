"""The engine lets finished instances go from memory, and still purges them."""

from __future__ import annotations

import uuid

import pytest

from engine import WorkflowStatus
from engine.client.dapr import DaprWorkflowClient
from engine.runtime import partition
from engine.runtime.host import RuntimeHost
from engine.settings import Settings
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
    finally:
        host.stop()
