"""The running stack for REST API tests: engine + worker in process, the API as real processes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from engine.runtime.host import RuntimeHost
from engine.settings import Settings
from tests.api.support import ApiServer, eventually
from tests.api.workflows import runtime

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def settings(kafka_bootstrap: str, request: pytest.FixtureRequest) -> Settings:
    # Topics and groups of their own per test module: modules never see each other's instances.
    module = request.module.__name__.rsplit(".", 1)[-1].replace("_", "-")
    return Settings.from_env(
        bootstrap_servers=kafka_bootstrap,
        partitions=4,
        topic_prefix=f"t.{module}.{uuid.uuid4().hex[:8]}.",
    )


@pytest.fixture(scope="module")
def host(settings: Settings) -> Iterator[RuntimeHost]:
    host = RuntimeHost(runtime.registry, settings)
    host.start(timeout=90)
    yield host
    host.stop()


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("api-logs")


@pytest.fixture(scope="module")
def api(host: RuntimeHost, settings: Settings, log_dir: Path) -> Iterator[ApiServer]:
    server = ApiServer(settings, log_dir).start()
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture
def http(api: ApiServer) -> Iterator[httpx.Client]:
    with api.client() as client:
        yield client


def new_id(tag: str = "wf") -> str:
    return f"{tag}-{uuid.uuid4().hex[:12]}"


def wait_status(http: httpx.Client, instance_id: str, *statuses: str, timeout: float = 30) -> dict:
    """GET until the instance shows one of `statuses`; return that body."""

    def check() -> dict | None:
        response = http.get(f"/v1.0/workflows/dapr/{instance_id}")
        assert response.status_code == 200, response.text
        body = response.json()
        return body if body["runtimeStatus"] in statuses else None

    return eventually(check, timeout, what=f"{instance_id} in {statuses}")
