"""HEADRACE_AUDIT=execution (issue 17): the history topic gets an execution's events once, when it
ends; the history endpoint still shows a running instance's events (from its history chunks on
`history-store`), and then the whole run from the history topic."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import httpx
import pytest

from engine.settings import AuditMode, Settings
from ops.audit import audit, read_history
from tests.api.conftest import new_id, wait_status
from tests.api.support import eventually

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def settings(settings: Settings) -> Settings:
    """The engine host and the API process of this module take it (`tests/api/conftest.py`)."""
    return replace(settings, audit=AuditMode.EXECUTION)


def test_a_running_instances_history_is_read_from_its_chunks(http: httpx.Client, settings: Settings) -> None:
    iid = new_id()
    http.post(f"/v1.0/workflows/dapr/api_gate/start?instanceID={iid}", content=b'"h"')
    wait_status(http, iid, "RUNNING")

    def started() -> list | None:
        events = http.get(f"/v1.0/workflows/dapr/{iid}/history").json()["events"]
        return events if any(e["type"] == "ExecutionStarted" for e in events) else None

    running = eventually(started, what="a running instance's history")
    assert [e["seq"] for e in running] == list(range(len(running)))
    # Nothing of it is on the history topic yet.
    assert not [r for r in asyncio.run(read_history(settings)) if r[0] == iid]

    http.post(f"/v1.0/workflows/dapr/{iid}/raiseEvent/go", content=b"4")
    wait_status(http, iid, "COMPLETED")

    def complete() -> list | None:
        events = http.get(f"/v1.0/workflows/dapr/{iid}/history").json()["events"]
        return events if events and events[-1]["type"] == "ExecutionCompleted" else None

    events = eventually(complete, what="history up to completion")
    assert [e["seq"] for e in events] == list(range(len(events)))
    assert events[:len(running)] == running
    assert {"EventRaised", "TaskScheduled", "TaskCompleted"} <= {e["type"] for e in events}
    # One audit record for the whole run, which `headrace audit` (ops/audit.py) finds whole.
    records = [r for r in asyncio.run(read_history(settings)) if r[0] == iid]
    assert len(records) == 1
    assert len(records[0][2]) == len(events)
    report = audit(records)
    assert report.ok, report.violations
    assert report.completed["COMPLETED"] == 1
