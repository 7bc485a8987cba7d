"""Kafka going away and coming back, on a broker of this test's own (the session's is shared).

While Kafka is away every route that needs it answers 500 with its operation's `ERR_*` code and a
message that says Kafka is unreachable, at once (no request waits out a timeout, and no command is
queued to be delivered later); readiness fails; health stays up. When Kafka is back the same API
process recovers by itself.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import orjson
import pytest

from engine.runtime.host import RuntimeHost
from engine.settings import Settings
from ops.kafka import LocalKafka
from tests.api.conftest import new_id, wait_status
from tests.api.support import ApiServer, eventually
from tests.api.workflows import runtime

pytestmark = pytest.mark.kafka

#: The API's deadline for a Kafka request in this module (HEADRACE_API_KAFKA_TIMEOUT_S; 5 s by default).
KAFKA_TIMEOUT_S = 20.0


@pytest.fixture(scope="module")
def broker(java_runtime, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    local = LocalKafka(tmp_path_factory.mktemp("outage-kafka") / "kafka", die_with_parent=True)
    local.up(nodes=1, port=None)
    try:
        yield local
    finally:
        local.down(wipe=True, grace_s=10.0)


@pytest.fixture(scope="module")
def stack(
    broker: LocalKafka, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RuntimeHost, ApiServer]]:
    manifest = broker.manifest()
    assert manifest is not None
    settings = Settings.from_env(
        bootstrap_servers=manifest.bootstrap,
        partitions=2,
        topic_prefix=f"outage.{uuid.uuid4().hex[:6]}.",
    )
    host = RuntimeHost(runtime.registry, settings)
    host.start(timeout=90)
    # A Kafka request's deadline far above what "at once" allows below, so that a loaded machine's
    # slowness cannot pass for a request that waited one out.
    api = ApiServer(settings, tmp_path_factory.mktemp("outage-logs"),
                    env={"HEADRACE_API_KAFKA_TIMEOUT_S": str(KAFKA_TIMEOUT_S)}).start()
    try:
        api.wait_ready()
        yield host, api
    finally:
        api.stop()
        host.stop()


def test_kafka_away_is_a_500_with_the_operations_code_and_the_api_recovers(
    broker: LocalKafka, stack
) -> None:
    _, api = stack
    with api.client(timeout=30) as http:
        running = new_id("before")
        assert (
            http.post(f"/v1.0/workflows/dapr/api_gate/start?instanceID={running}").status_code
            == 202
        )
        wait_status(http, running, "RUNNING")

        broker.stop_node(1, grace_s=10.0)
        eventually(
            lambda: http.get("/v1.0/healthz/ready").status_code == 503, 90, what="readiness fails"
        )
        not_ready = http.get("/v1.0/healthz/ready").json()
        assert not_ready["errorCode"] == "ERR_HEALTH_NOT_READY"
        assert "unreachable" in not_ready["message"]
        assert http.get("/v1.0/healthz").status_code == 204

        lost = new_id("during")
        calls = [
            (
                "POST",
                f"/v1.0/workflows/dapr/api_echo/start?instanceID={lost}",
                "ERR_START_WORKFLOW",
            ),
            ("POST", "/v1.0/workflows/dapr/api_echo/start", "ERR_START_WORKFLOW"),
            ("GET", f"/v1.0/workflows/dapr/{lost}", "ERR_GET_WORKFLOW"),
            ("POST", f"/v1.0/workflows/dapr/{running}/raiseEvent/go", "ERR_RAISE_EVENT_WORKFLOW"),
            ("POST", f"/v1.0/workflows/dapr/{running}/pause", "ERR_PAUSE_WORKFLOW"),
            ("POST", f"/v1.0/workflows/dapr/{running}/resume", "ERR_RESUME_WORKFLOW"),
            ("POST", f"/v1.0/workflows/dapr/{running}/terminate", "ERR_TERMINATE_WORKFLOW"),
            ("POST", f"/v1.0/workflows/dapr/{running}/purge", "ERR_PURGE_WORKFLOW"),
            ("GET", "/v1.0/workflows/dapr", "ERR_LIST_WORKFLOWS"),
            ("GET", f"/v1.0/workflows/dapr/{running}/history", "ERR_GET_WORKFLOW_HISTORY"),
        ]
        for method, path, code in calls:
            t0 = time.monotonic()
            response = http.request(method, path, content=b"1" if method == "POST" else None)
            elapsed = time.monotonic() - t0
            assert response.status_code == 500, (path, response.text)
            body = response.json()
            assert body["errorCode"] == code, (path, body)
            assert "unreachable" in body["message"], body
            assert elapsed < KAFKA_TIMEOUT_S / 2, f"{path} took {elapsed:.1f}s to fail"
        # A client error is still a client error while Kafka is away.
        assert http.get("/v1.0/workflows/other/x").status_code == 400

        broker.start_node(1)
        eventually(
            lambda: http.get("/v1.0/healthz/ready").status_code == 204,
            90,
            0.2,
            "readiness recovers",
        )
        again = new_id("after")
        assert (
            http.post(
                f"/v1.0/workflows/dapr/api_echo/start?instanceID={again}", content=b'"back"'
            ).status_code
            == 202
        )
        done = wait_status(http, again, "COMPLETED", timeout=90)
        assert orjson.loads(done["properties"]["dapr.workflow.output"]) == {"received": "back"}
        assert (
            http.post(f"/v1.0/workflows/dapr/{running}/raiseEvent/go", content=b"3").status_code
            == 202
        )
        wait_status(http, running, "COMPLETED", timeout=90)
        # What failed during the outage did not happen later.
        assert http.get(f"/v1.0/workflows/dapr/{lost}").status_code == 404
        assert isinstance(http, httpx.Client)
