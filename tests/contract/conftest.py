"""The `backend` fixture: every contract test runs once in memory and once on a real broker.

The Kafka backend shares one engine and worker (`RuntimeHost`, in this process) and one client for
the whole module, on topics of its own; tests keep apart by instance IDs.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from engine import DaprWorkflowClient
from engine.runtime.host import RuntimeHost
from engine.settings import Settings
from tests.contract.backends import Backend, KafkaBackend, MemoryBackend
from tests.contract.workflows import runtime


@pytest.fixture(scope="module")
def kafka_backend(kafka_bootstrap: str) -> Iterator[KafkaBackend]:
    settings = Settings.from_env(bootstrap_servers=kafka_bootstrap, topic_prefix=f"contract-{uuid.uuid4().hex[:8]}.",
                                 partitions=4, cache_size=0,
                                 # Unknown names fail at once on both backends (backends.py): the
                                 # wait itself is tested in tests/unit/test_unknown_code.py and
                                 # tests/e2e/test_apps.py.
                                 unknown_code_timeout=0)
    host = RuntimeHost(runtime.registry, settings)
    host.start(timeout=90)
    try:
        with DaprWorkflowClient(settings=settings) as client:
            yield KafkaBackend(client, settings)
    finally:
        host.stop()


@pytest.fixture(params=["memory", pytest.param("kafka", marks=pytest.mark.kafka)])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "memory":
        return MemoryBackend(runtime)
    backend: KafkaBackend = request.getfixturevalue("kafka_backend")
    return backend
