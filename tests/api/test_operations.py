"""Operations over real HTTP: API token, health and readiness, Prometheus metrics, OpenAPI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from engine.settings import Settings
from tests.api.support import ROOT, ApiServer

pytestmark = pytest.mark.kafka

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def secured(host, settings: Settings, log_dir: Path) -> Iterator[ApiServer]:
    server = ApiServer(settings, log_dir, "api-token", env={"DAPR_API_TOKEN": TOKEN}).start()
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def test_token_is_required_on_every_route_but_health(secured: ApiServer) -> None:
    with secured.client() as http:
        for method, path in [
            ("POST", "/v1.0/workflows/dapr/api_echo/start"),
            ("GET", "/v1.0/workflows/dapr/x"),
            ("GET", "/v1.0/workflows/dapr"),
            ("POST", "/v1.0-alpha1/workflows/dapr/x/purge"),
            ("GET", "/metrics"),
            ("GET", "/openapi.json"),
        ]:
            for headers in ({}, {"dapr-api-token": "wrong"}, {"dapr-api-token": TOKEN[:-1]}):
                response = http.request(method, path, headers=headers)
                assert response.status_code == 401, (method, path, headers)
                assert response.json() == {
                    "errorCode": "ERR_UNAUTHORIZED",
                    "message": "authentication failed: "
                    "the dapr-api-token header is missing or wrong",
                }
        assert http.get("/v1.0/healthz").status_code == 204
        assert http.get("/v1.0/healthz/ready").status_code == 204
        good = {"dapr-api-token": TOKEN}
        started = http.post("/v1.0/workflows/dapr/api_echo/start", content=b"1", headers=good)
        assert started.status_code == 202
        assert (
            http.get(
                f"/v1.0/workflows/dapr/{started.json()['instanceID']}", headers=good
            ).status_code
            == 200
        )


def test_health_and_readiness(http: httpx.Client) -> None:
    health = http.get("/v1.0/healthz")
    assert health.status_code == 204
    assert health.content == b""
    assert http.get("/v1.0/healthz/ready").status_code == 204
    assert http.get("/v1.0/healthz/outbound").status_code == 204


def test_metrics_count_requests_commands_and_view_lag(http: httpx.Client) -> None:
    iid = http.post("/v1.0/workflows/dapr/api_echo/start", content=b"1").json()["instanceID"]
    http.get(f"/v1.0/workflows/dapr/{iid}")
    http.get("/v1.0/workflows/dapr/no-such-instance")
    text = http.get("/metrics").text
    assert (
        'headrace_api_requests_total{code="202",method="POST",'
        'route="/v1.0/workflows/{component:segment}/{workflowName:segment}/start"}'
    ) in text
    assert (
        'headrace_api_requests_total{code="404",method="GET",'
        'route="/v1.0/workflows/{component:segment}/{instanceID:segment}"}'
    ) in text
    assert "headrace_api_request_duration_seconds_bucket{" in text
    assert 'headrace_api_commands_produced_total{type="StartWorkflow"}' in text
    assert "headrace_api_view_lag_records " in text
    assert "headrace_api_kafka_reachable 1.0" in text
    # Instance IDs never become label values.
    assert iid not in text


def test_openapi_document_is_served_and_kept_in_schemas(http: httpx.Client) -> None:
    served = http.get("/openapi.json")
    assert served.status_code == 200
    assert served.headers["content-type"] == "application/json"
    kept = json.loads((ROOT / "schemas" / "openapi.json").read_text())
    assert served.json() == kept, (
        "schemas/openapi.json is stale: python -m api.openapi > schemas/openapi.json"
    )
