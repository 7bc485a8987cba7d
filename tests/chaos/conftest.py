"""One 3-node cluster for every chaos scenario of the session: each scenario runs its own engines,
workers and APIs on topics of its own, and leaves every node running when it ends."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from ops.kafka import LocalKafka
from ops.kafka.java import JavaRuntime


@pytest.fixture(scope="session")
def chaos_cluster(tmp_path_factory: pytest.TempPathFactory, java_runtime: JavaRuntime) -> Iterator[LocalKafka]:
    # Started from the main thread (die_with_parent is tied to the spawning thread's life); nodes
    # restarted by a fault come from ops.chaos's broker thread, which lives as long as the session.
    local = LocalKafka(tmp_path_factory.mktemp("chaos") / "kafka", die_with_parent=True)
    started = time.monotonic()
    local.up(nodes=3, port=None)
    print(f"chaos cluster ready in {time.monotonic() - started:.1f}s")
    try:
        yield local
    finally:
        local.down(wipe=True, grace_s=15.0)
