"""The API on the on-disk status index (HEADRACE_API_INDEX_DIR): GET, list, filters and counts from
the index, and a restart that resumes from the index's checkpoint instead of the topic's beginning."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from engine.read.index import StatusIndex
from engine.runtime.host import RuntimeHost
from engine.settings import Settings
from engine.topics import Topics
from tests.api.conftest import new_id, wait_status
from tests.api.support import ApiServer

pytestmark = pytest.mark.kafka


def _instances(http: httpx.Client, **params: str) -> list[str]:
    """Every instance ID the listing returns, following its continuation tokens."""
    ids: list[str] = []
    token: str | None = None
    while True:
        query = dict(params, pageSize="3") | ({"continuationToken": token} if token else {})
        response = http.get("/v1.0/workflows/dapr", params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        ids += [row["instanceID"] for row in body["instances"]]
        token = body.get("continuationToken")
        if not token:
            return ids


def test_api_serves_from_the_index_and_resumes_from_its_checkpoint(
    host: RuntimeHost, settings: Settings, log_dir: Path, tmp_path: Path
) -> None:
    env = {"HEADRACE_API_INDEX_DIR": str(tmp_path / "index")}
    first = ApiServer(settings, log_dir, name="api-index-1", env=env).start()
    try:
        first.wait_ready()
        with first.client() as http:
            done = [new_id("idx") for _ in range(7)]
            for iid in done:
                response = http.post(f"/v1.0/workflows/dapr/api_echo/start?instanceID={iid}", content=b"1")
                assert response.status_code == 202, response.text
            gate = new_id("idx-gate")
            assert http.post(f"/v1.0/workflows/dapr/api_gate/start?instanceID={gate}",
                             content=b'"g"').status_code == 202
            for iid in done:
                wait_status(http, iid, "COMPLETED")
            wait_status(http, gate, "RUNNING")
            completed = _instances(http, workflowName="api_echo", runtimeStatus="COMPLETED")
            assert set(done) <= set(completed)
            assert gate in _instances(http, runtimeStatus="RUNNING")
            assert gate not in completed
            counts = http.get("/v1.0/headrace/counts", params={"workflowName": "api_echo"}).json()
            assert counts["counts"]["COMPLETED"] >= len(done)
            assert counts["counts"]["RUNNING"] == 0
    finally:
        first.stop()

    topic = Topics.for_settings(settings).status
    index = StatusIndex(tmp_path / "index" / f"{topic}.sqlite", topic)
    try:
        saved = index.positions()
        assert saved and sum(saved.values()) > 0
        assert all(index.get(iid) is not None for iid in [*done, gate])
    finally:
        index.close()

    second = ApiServer(settings, log_dir, name="api-index-2", env=env).start()
    try:
        second.wait_ready()
        assert "(the index's checkpoint)" in second.log_path.read_text()
        with second.client() as http:
            for iid in done:
                assert http.get(f"/v1.0/workflows/dapr/{iid}").json()["runtimeStatus"] == "COMPLETED"
            # A change after the restart reaches the index: read-your-writes through the barrier.
            assert http.post(f"/v1.0/workflows/dapr/{gate}/terminate").status_code == 202
            wait_status(http, gate, "TERMINATED")
            assert gate in _instances(http, runtimeStatus="TERMINATED")
            # Purge removes the row.
            assert http.post(f"/v1.0/workflows/dapr/{gate}/purge").status_code in (200, 202)
            assert http.get(f"/v1.0/workflows/dapr/{gate}").status_code == 404
            assert gate not in _instances(http)
    finally:
        second.stop()
