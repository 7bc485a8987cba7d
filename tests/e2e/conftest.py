"""A running engine and worker on the real broker, and a client, for end-to-end tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from engine.client.dapr import DaprWorkflowClient
from engine.runtime.host import RuntimeHost
from engine.settings import Settings
from tests.e2e.apps import runtime


@pytest.fixture(scope="module")
def settings(kafka_bootstrap: str) -> Settings:
    # A fresh prefix per module: its own topics and consumer groups, so modules never interfere.
    return Settings.from_env(bootstrap_servers=kafka_bootstrap, topic_prefix=f"e2e-{uuid.uuid4().hex[:8]}.",
                             # Unknown names wait 1 s for their code, then fail (tests/e2e/test_apps.py
                             # has the longer waits).
                             partitions=4, unknown_code_timeout=1.0)


@pytest.fixture(scope="module")
def host(settings: Settings) -> Iterator[RuntimeHost]:
    host = RuntimeHost(runtime.registry, settings)
    host.start(timeout=90)
    yield host
    host.stop()


@pytest.fixture(scope="module")
def client(host: RuntimeHost, settings: Settings) -> Iterator[DaprWorkflowClient]:
    with DaprWorkflowClient(settings=settings) as client:
        yield client
