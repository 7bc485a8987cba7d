"""Beyond Dapr: listing instances with filters and cursor pagination, and instance histories."""

from __future__ import annotations

import httpx
import pytest

from tests.api.conftest import new_id, wait_status
from tests.api.support import eventually

pytestmark = pytest.mark.kafka


def listing(http: httpx.Client, **params) -> dict:
    response = http.get("/v1.0/workflows/dapr", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_list_filters_and_pages_through_instances(http: httpx.Client) -> None:
    name = "api_echo"
    done = [
        http.post(f"/v1.0/workflows/dapr/{name}/start", content=b"1").json()["instanceID"]
        for _ in range(5)
    ]
    gate = new_id("gate")
    http.post(f"/v1.0/workflows/dapr/api_gate/start?instanceID={gate}")
    for iid in done:
        wait_status(http, iid, "COMPLETED")
    wait_status(http, gate, "RUNNING")

    # Pages of two, in (createdAt, instanceID) order, with no row twice and none missing.
    seen: list[dict] = []
    token = None
    while True:
        page = listing(
            http, pageSize=2, workflowName=name, **({"continuationToken": token} if token else {})
        )
        assert set(page) <= {"instances", "continuationToken"}
        seen += page["instances"]
        token = page.get("continuationToken")
        if token is None:
            break
        assert len(page["instances"]) == 2
    ids = [row["instanceID"] for row in seen]
    assert set(done) <= set(ids)
    assert len(ids) == len(set(ids))
    assert [(r["createdAt"], r["instanceID"]) for r in seen] == sorted(
        (r["createdAt"], r["instanceID"]) for r in seen
    )
    assert set(seen[0]) == {
        "instanceID",
        "workflowName",
        "createdAt",
        "lastUpdatedAt",
        "runtimeStatus",
    }

    running = listing(http, runtimeStatus="RUNNING", workflowName="api_gate")["instances"]
    assert gate in [r["instanceID"] for r in running]
    both = listing(http, runtimeStatus="RUNNING,COMPLETED")["instances"]
    assert {gate, *done} <= {r["instanceID"] for r in both}
    repeated = http.get(
        "/v1.0/workflows/dapr", params=[("runtimeStatus", "RUNNING"), ("runtimeStatus", "FAILED")]
    )
    assert done[0] not in {r["instanceID"] for r in repeated.json()["instances"]}

    created = {r["instanceID"]: r["createdAt"] for r in seen}
    middle = sorted(created.values())[len(created) // 2]
    after = listing(http, workflowName=name, createdAfter=middle)["instances"]
    before = listing(http, workflowName=name, createdBefore=middle)["instances"]
    # Both sides of the middle hold instances, so the checks below are not vacuous.
    assert after and before, (after, before)
    assert all(r["createdAt"] > middle for r in after)
    assert all(r["createdAt"] < middle for r in before)
    http.post(f"/v1.0/workflows/dapr/{gate}/terminate")


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"runtimeStatus": "SLEEPING"}, "runtimeStatus"),
        ({"pageSize": "0"}, "pageSize"),
        ({"pageSize": "many"}, "pageSize"),
        ({"createdAfter": "yesterday"}, "createdAfter"),
        ({"continuationToken": "not-a-token"}, "continuationToken"),
    ],
)
def test_list_rejects_bad_parameters(http: httpx.Client, params: dict, fragment: str) -> None:
    response = http.get("/v1.0/workflows/dapr", params=params)
    assert response.status_code == 400
    assert response.json()["errorCode"] == "ERR_MALFORMED_REQUEST"
    assert fragment in response.json()["message"]


def test_history_returns_the_current_executions_events(http: httpx.Client) -> None:
    iid = new_id()
    http.post(f"/v1.0/workflows/dapr/api_gate/start?instanceID={iid}", content=b'"h"')
    wait_status(http, iid, "RUNNING")
    http.post(f"/v1.0/workflows/dapr/{iid}/raiseEvent/go", content=b"4")
    wait_status(http, iid, "COMPLETED")

    def complete_history() -> dict | None:
        body = http.get(f"/v1.0/workflows/dapr/{iid}/history").json()
        return (
            body if body["events"] and body["events"][-1]["type"] == "ExecutionCompleted" else None
        )

    body = eventually(complete_history, what="history up to completion")
    assert body["instanceID"] == iid
    events = body["events"]
    assert [e["seq"] for e in events] == list(range(len(events)))
    types = [e["type"] for e in events]
    assert types[:2] == ["WorkflowStarted", "ExecutionStarted"] or types[0] == "ExecutionStarted"
    assert {"EventRaised", "TaskScheduled", "TaskCompleted", "ExecutionCompleted"} <= set(types)
    raised = next(e for e in events if e["type"] == "EventRaised")
    assert raised["name"] == "go"
    assert raised["input"] == "4"
    started = next(e for e in events if e["type"] == "ExecutionStarted")
    assert started["input"] == '"h"'
    assert started["name"] == "api_gate"

    # A new run over the finished one: the history is the new run's only.
    http.post(f"/v1.0/workflows/dapr/api_echo/start?instanceID={iid}", content=b'"again"')
    wait_status(http, iid, "COMPLETED")

    def new_run() -> list | None:
        found = http.get(f"/v1.0/workflows/dapr/{iid}/history").json()["events"]
        names = {e.get("name") for e in found if e["type"] == "ExecutionStarted"}
        return (
            found if names == {"api_echo"} and found[-1]["type"] == "ExecutionCompleted" else None
        )

    assert "EventRaised" not in {
        e["type"] for e in eventually(new_run, what="history of the new run")
    }
