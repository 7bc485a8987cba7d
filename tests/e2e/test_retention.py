"""Issue 16: Dapr 1.17's state retention policy on the real broker (`engine.core.retention`).

A parent terminated without its children waits for them, then is purged when its retention ends,
children included (recursively: their own status has no retention here), across an engine
restart, with a marker on the audit history.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from engine import WorkflowStatus
from engine.client.dapr import DaprWorkflowClient
from engine.read.to_end import reading
from engine.runtime.host import RuntimeHost
from engine.runtime.partition import PURGED_HEADER
from engine.settings import Settings
from engine.topics import Topics
from tests.e2e.apps import runtime
from tests.helpers import eventually

pytestmark = pytest.mark.kafka

WAIT = 120
#: Long enough that the first host is stopped before anything falls due (two events, two
#: completions and a stop, on a loaded machine): the restarted one must be the one that purges.
KEEP_S = 15.0


async def _purge_marks(settings: Settings) -> dict[str, tuple[bytes, int]]:
    """Instance ID -> (the marker's header value, its timestamp in ms), from the audit history."""
    marks: dict[str, tuple[bytes, int]] = {}
    async with reading(settings, Topics.for_settings(settings).history) as batches:
        async for batch in batches:
            for record in batch:
                found = dict(record.headers).get(PURGED_HEADER)
                if record.value is None and record.key is not None and found is not None:
                    marks[record.key.decode()] = (found, record.timestamp)
    return marks


def test_retention_purges_parent_and_children_on_time_across_a_restart(kafka_bootstrap: str) -> None:
    settings = Settings.from_env(bootstrap_servers=kafka_bootstrap, topic_prefix=f"ret-{uuid.uuid4().hex[:8]}.",
                                 partitions=4, retention_terminated=f"{KEEP_S}s")
    host = RuntimeHost(runtime.registry, settings)
    host.start(timeout=90)
    restarted: RuntimeHost | None = None
    try:
        with DaprWorkflowClient(settings=settings) as client:
            iid = client.schedule_new_workflow("tree", input=1)
            children = [f"{iid}:{n:04x}" for n in (1, 2)]  # Dapr's default child IDs
            eventually(lambda: all((s := client.get_workflow_state(c)) is not None
                                   and s.runtime_status is WorkflowStatus.RUNNING for c in children), timeout=WAIT)
            client.terminate_workflow(iid, recursive=False)
            eventually(lambda: client.get_workflow_state(iid).runtime_status is WorkflowStatus.TERMINATED,
                       timeout=WAIT)
            terminated = client.get_workflow_state(iid)
            assert terminated is not None
            due_ms = (terminated.last_updated_at.timestamp() + KEEP_S) * 1000
            # Its children still run: the parent waits for them before its clock can run out.
            for child in children:
                client.raise_workflow_event(child, "never")
            for child in children:
                state = client.wait_for_workflow_completion(child, timeout_in_seconds=WAIT)
                assert state is not None and state.runtime_status is WorkflowStatus.COMPLETED
            host.stop()  # the purge must survive the owner going away
            restarted = RuntimeHost(runtime.registry, settings)
            restarted.start(timeout=90)
            eventually(lambda: all(client.get_workflow_state(i) is None for i in (iid, *children)),
                       timeout=WAIT, message="retention did not purge the parent and its children")
        marks = asyncio.run(_purge_marks(settings))
        for purged in (iid, *children):
            assert purged in marks, (purged, marks)
            header, stamp = marks[purged]
            assert header == b"retention"
            assert stamp >= due_ms - 50, (purged, stamp, due_ms)  # never before the retention ended
        assert sum(owner.expired for owner in restarted.engine.owners.values()) >= 1
    finally:
        if restarted is not None:
            restarted.stop()
        host.stop()
