"""Issue 16: a rebalance moves only what moves (`engine.runtime.membership`).

Two engines on the real broker: when the second joins, the partitions the first keeps are handed
back without a restore (its restore counter stays at one per partition), the ones that move are
restored by their new owner, and no instance is lost.
"""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest

from engine import WorkflowStatus
from engine.client.dapr import DaprWorkflowClient
from engine.runtime.host import RuntimeHost
from engine.settings import Settings
from tests.e2e.apps import runtime
from tests.helpers import eventually

pytestmark = pytest.mark.kafka

WAIT = 120


def _restores(host: RuntimeHost, partition: int) -> float:
    value = host.engine.metrics.registry.get_sample_value("headrace_engine_restores_total",
                                                          {"partition": str(partition)})
    return value or 0.0


def test_a_joining_engine_does_not_restore_the_partitions_that_stay(kafka_bootstrap: str) -> None:
    settings = Settings.from_env(bootstrap_servers=kafka_bootstrap, topic_prefix=f"rb-{uuid.uuid4().hex[:8]}.",
                                 partitions=4)
    first = RuntimeHost(runtime.registry, settings)
    first.start(timeout=90)
    second: RuntimeHost | None = None
    try:
        assert set(first.engine.owners) == {0, 1, 2, 3}
        assert all(_restores(first, p) == 1 for p in range(4))
        with DaprWorkflowClient(settings=settings) as client:
            # Activities on every task partition first, so the first worker holds state for them.
            done = [client.schedule_new_workflow("counter", input=2) for _ in range(24)]
            for iid in done:
                state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
                assert state is not None and state.runtime_status is WorkflowStatus.COMPLETED, iid
            # Running across the join: each waits on a durable timer held by its partition's owner.
            ids = [client.schedule_new_workflow("sleeper", input=3.0) for _ in range(12)]
            eventually(lambda: all((s := client._view.states.get(i)) is not None and s.pending_timers
                                   for i in ids), timeout=WAIT)
            second = RuntimeHost(runtime.registry, settings)
            second.start(timeout=90)
            eventually(lambda: len(first.engine.owners) + len(second.engine.owners) == 4
                       and not set(first.engine.owners) & set(second.engine.owners), timeout=WAIT)
            kept = set(first.engine.owners)
            moved = set(second.engine.owners)
            assert kept and moved, (kept, moved)
            # The first engine's remaining partitions were handed back, not restored again.
            assert first.engine.kept >= len(kept)
            assert all(_restores(first, p) == 1 for p in kept), {p: _restores(first, p) for p in kept}
            assert all(_restores(second, p) == 1 for p in moved)
            for iid in ids:
                state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
                assert state is not None and state.runtime_status is WorkflowStatus.COMPLETED, iid
            # Activity workers keep theirs too (their group rebalanced when the second worker joined).
            eventually(lambda: first.worker.kept >= 1, timeout=WAIT)
    finally:
        if second is not None:
            second.stop()
        first.stop()


def test_a_static_member_restarting_within_the_session_timeout_moves_nothing(kafka_bootstrap: str) -> None:
    base = Settings.from_env(bootstrap_servers=kafka_bootstrap, topic_prefix=f"rs-{uuid.uuid4().hex[:8]}.",
                             partitions=4)
    first = RuntimeHost(runtime.registry, replace(base, group_instance_id="engine-a"))
    second = RuntimeHost(runtime.registry, replace(base, group_instance_id="engine-b"))
    restarted: RuntimeHost | None = None
    first.start(timeout=90)
    try:
        second.start(timeout=90)
        eventually(lambda: len(first.engine.owners) + len(second.engine.owners) == 4
                   and not set(first.engine.owners) & set(second.engine.owners), timeout=WAIT)
        owned = set(second.engine.owners)
        kept, restores = second.engine.kept, {p: _restores(second, p) for p in owned}
        first.stop()
        # A static member leaves no group on stop (no LeaveGroup): the same ID rejoining within the
        # session timeout gets its partitions back, and the other member sees no rebalance at all.
        restarted = RuntimeHost(runtime.registry, replace(base, group_instance_id="engine-a"))
        restarted.start(timeout=90)
        eventually(lambda: len(restarted.engine.owners) + len(second.engine.owners) == 4, timeout=WAIT)
        with DaprWorkflowClient(settings=base) as client:
            ids = [client.schedule_new_workflow("counter", input=1) for _ in range(8)]
            for iid in ids:
                state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
                assert state is not None and state.runtime_status is WorkflowStatus.COMPLETED, iid
        assert set(second.engine.owners) == owned
        assert second.engine.kept == kept  # not even a rebalance that handed them back
        assert {p: _restores(second, p) for p in owned} == restores
    finally:
        if restarted is not None:
            restarted.stop()
        second.stop()
        first.stop()
