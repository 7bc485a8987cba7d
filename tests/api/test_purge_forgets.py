"""Issue 11 item 6: a purged instance must not come back as PENDING on the replica that started it
(it remembered the start), and a new start with its ID must be accepted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from engine.runtime.host import RuntimeHost
from engine.settings import Settings
from tests.api.conftest import new_id, wait_status
from tests.api.support import ApiServer, eventually

pytestmark = pytest.mark.kafka

# Far longer than any wait below: a replica that still remembers a purged start shows it as
# PENDING for this long, so the waits fail instead of passing once the memory expires.
SENT_TTL_S = "600"


@pytest.fixture(scope="module")
def clients(
    host: RuntimeHost, settings: Settings, log_dir: Path
) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    env = {"HEADRACE_API_SENT_TTL_S": SENT_TTL_S}
    a = ApiServer(settings, log_dir, "api-a", env=env).start()
    b = ApiServer(settings, log_dir, "api-b", env=env).start()
    try:
        a.wait_ready()
        b.wait_ready()
        with a.client() as ca, b.client() as cb:
            yield ca, cb
    finally:
        a.stop()
        b.stop()


def start(client: httpx.Client, iid: str, value: str) -> httpx.Response:
    return client.post(
        f"/v1.0/workflows/dapr/api_echo/start?instanceID={iid}", content=orjson.dumps(value)
    )


def gone(client: httpx.Client, iid: str) -> bool:
    response = client.get(f"/v1.0/workflows/dapr/{iid}")
    assert response.status_code in (200, 404), response.text
    if response.status_code == 200:
        # Until the engine applies the purge the finished run may show; never a PENDING one.
        assert response.json()["runtimeStatus"] == "COMPLETED", response.text
    return response.status_code == 404


def view_forgot(client: httpx.Client, iid: str) -> bool:
    """Whether the replica's status view no longer holds the instance (the engine applied the
    purge and the view read it). The list route reads only the view, never what it remembers."""
    response = client.get(
        "/v1.0/workflows/dapr", params={"workflowName": "api_echo", "pageSize": 1000}
    )
    assert response.status_code == 200, response.text
    return iid not in {row["instanceID"] for row in response.json()["instances"]}


def completed_with(client: httpx.Client, iid: str, value: str) -> None:
    done = wait_status(client, iid, "COMPLETED", "FAILED", timeout=60)
    assert done["runtimeStatus"] == "COMPLETED", done
    assert orjson.loads(done["properties"]["dapr.workflow.output"]) == {"received": value}


def test_purge_on_the_starting_replica_forgets_the_start(clients) -> None:
    a, b = clients
    iid = new_id("purge-a")
    assert start(a, iid, "one").status_code == 202
    wait_status(b, iid, "COMPLETED", timeout=60)  # polled elsewhere: A keeps its memory
    assert a.post(f"/v1.0/workflows/dapr/{iid}/purge").status_code == 202
    eventually(lambda: view_forgot(a, iid), 30, what=f"{iid} out of A's view")
    # The purge is applied and A's view shows it: A must not answer from its memory of the start.
    assert gone(a, iid)
    response = start(a, iid, "two")
    assert response.status_code == 202, response.text
    completed_with(a, iid, "two")


def test_a_new_start_right_after_the_purge_202_is_accepted(clients) -> None:
    # A guard for the fix rather than a reproduction: the start races the engine's purge.
    a, b = clients
    iid = new_id("purge-now")
    assert start(a, iid, "one").status_code == 202
    wait_status(b, iid, "COMPLETED", timeout=60)
    assert a.post(f"/v1.0/workflows/dapr/{iid}/purge").status_code == 202
    # No wait: the engine applies the purge, then this start, in the order they were produced.
    response = start(a, iid, "two")
    assert response.status_code == 202, response.text
    completed_with(b, iid, "two")


def test_purge_through_another_replica_is_seen_by_the_starting_one(clients) -> None:
    a, b = clients
    iid = new_id("purge-b")
    assert start(a, iid, "one").status_code == 202
    wait_status(b, iid, "COMPLETED", timeout=60)
    assert b.post(f"/v1.0/workflows/dapr/{iid}/purge").status_code == 202
    eventually(lambda: view_forgot(a, iid), 30, what=f"{iid} out of A's view")
    # A learns of the purge only from its view: its memory of the start must not survive it.
    assert gone(a, iid)
    response = start(a, iid, "three")
    assert response.status_code == 202, response.text
    completed_with(a, iid, "three")
