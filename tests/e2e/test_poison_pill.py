"""An input that breaks its turn in a way nobody foresaw is set aside; a stuck partition is visible.

Faults are injected into the engine's own code (the orchestrator raising, a partition's commit
failing) of an in-process runtime on the real broker, standing in for engine bugs nobody has found
yet: the class of failure, not one instance of it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from engine import WorkflowStatus
from engine.client.dapr import DaprWorkflowClient
from engine.core import commands as cmd
from engine.runtime.host import RuntimeHost
from engine.runtime.partition import PartitionOwner
from engine.runtime.telemetry import Problem as PartitionProblem
from engine.settings import Settings
from engine.topics import partition_for
from tests.e2e.apps import runtime
from tests.e2e.test_hostile import _read_dead_letters
from tests.helpers import eventually

pytestmark = pytest.mark.kafka

WAIT = 120


@pytest.fixture
def settings(kafka_bootstrap: str) -> Settings:
    return Settings.from_env(bootstrap_servers=kafka_bootstrap, topic_prefix=f"pp-{uuid.uuid4().hex[:8]}.",
                             partitions=4, stall_seconds=1.0)


@pytest.fixture
def host(settings: Settings) -> Iterator[RuntimeHost]:
    host = RuntimeHost(runtime.registry, settings)
    host.start(timeout=90)
    try:
        yield host
    finally:
        host.stop()


def _problems(host: RuntimeHost) -> list[PartitionProblem]:
    assert host._loop is not None

    async def read() -> list[PartitionProblem]:
        return host.engine.problems()

    return asyncio.run_coroutine_threadsafe(read(), host._loop).result(10)


@pytest.mark.pure_python
def test_input_that_breaks_its_turn_is_dead_lettered_and_fails_only_its_instance(
    host: RuntimeHost, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    handle = host.engine.orchestrator.handle

    def exploding(state: Any, message: cmd.InstanceMessage, *args: Any) -> Any:
        if isinstance(message, cmd.RaiseEvent) and message.name == "explode":
            raise RuntimeError("boom")
        return handle(state, message, *args)

    monkeypatch.setattr(host.engine.orchestrator, "handle", exploding)
    with DaprWorkflowClient(settings=settings) as client:
        victim = client.schedule_new_workflow("waiter", input=["go"], instance_id=f"v-{uuid.uuid4().hex[:6]}")
        client.wait_for_workflow_start(victim, timeout_in_seconds=WAIT)
        client.raise_workflow_event(victim, "explode")
        state = client.wait_for_workflow_completion(victim, timeout_in_seconds=WAIT)
        assert state is not None and state.runtime_status is WorkflowStatus.FAILED
        assert state.failure_details is not None and state.failure_details.error_type == "EngineError"
        assert "RuntimeError: boom" in state.failure_details.message
        letters = asyncio.run(_read_dead_letters(settings))
        assert [d["key"] for d in letters if "RuntimeError: boom" in d["reason"]] == [victim]
        other = client.schedule_new_workflow("waiter", input=["go"])
        client.wait_for_workflow_start(other, timeout_in_seconds=WAIT)
        client.raise_workflow_event(other, "go", data=1)
        done = client.wait_for_workflow_completion(other, timeout_in_seconds=WAIT)
        assert done is not None and orjson.loads(done.serialized_output or "null") == [1]


@pytest.mark.pure_python  # patches `PartitionOwner._commit`, a method of a native class in that build
def test_partition_that_makes_no_progress_is_reported_and_recovers(
    host: RuntimeHost, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    iid = f"stuck-{uuid.uuid4().hex[:6]}"
    stuck = partition_for(iid.encode(), settings.partitions)
    broken = {"on": True}
    commit = PartitionOwner._commit

    async def failing_commit(self: PartitionOwner, pending: Any, offsets: Any) -> None:
        if broken["on"] and self.number == stuck and offsets:
            raise RuntimeError("simulated: transactions on this partition keep failing")
        await commit(self, pending, offsets)

    monkeypatch.setattr(PartitionOwner, "_commit", failing_commit)
    assert _problems(host) == []
    with DaprWorkflowClient(settings=settings) as client:
        client.schedule_new_workflow("counter", input=1, instance_id=iid)
        eventually(lambda: [p.partition for p in _problems(host)] == [stuck], timeout=WAIT,
                   message="the stuck partition was never reported")
        assert "no progress" in _problems(host)[0].reason
        assert host.engine.ready.is_set()
        broken["on"] = False
        state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
        assert state is not None and state.runtime_status is WorkflowStatus.COMPLETED
        eventually(lambda: _problems(host) == [], timeout=WAIT)
