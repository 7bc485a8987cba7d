"""Choosing where the test suite's Kafka comes from.

Order: an address in KAFKA_BOOTSTRAP_SERVERS (a broker someone already runs), else a container
when a Docker engine answers, else a local broker from Maven Central jars. The choice is a plain
function of its inputs so a test can prove the order without starting anything.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Source = Literal["env", "testcontainers", "local"]
Starter = Callable[[], AbstractContextManager[str]]


@dataclass(frozen=True)
class BootstrapChoice:
    source: Source
    servers: str


@contextmanager
def select_bootstrap(
    env: Mapping[str, str],
    *,
    docker_available: Callable[[], bool],
    start_container: Starter,
    start_local: Starter,
) -> Iterator[BootstrapChoice]:
    """Yield the chosen bootstrap address; a broker this started is stopped on exit."""
    # Imported here: the `headrace` command imports this module on every start, and the engine
    # package is not cheap to import.
    from engine.settings import Settings, env_of

    from_env = env.get(env_of(Settings, "bootstrap_servers").name, "").strip()
    if from_env:
        yield BootstrapChoice("env", from_env)
        return
    source: Source
    if docker_available():
        source, starter = "testcontainers", start_container
    else:
        source, starter = "local", start_local
    with starter() as servers:
        yield BootstrapChoice(source, servers)


def docker_engine_answers(timeout_s: float = 3.0) -> bool:
    """True when a Docker engine responds to a ping (the CLI alone is not enough)."""
    # Docker's default socket (https://docs.docker.com/engine/reference/commandline/dockerd/):
    # when it is absent there is nothing to ask, and docker-py's failed connect would leave its
    # socket unclosed (a ResourceWarning).
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if host.startswith("unix://") and not Path(host.removeprefix("unix://")).exists():
        return False
    try:
        import docker
    except ImportError:
        return False
    try:
        client = docker.from_env(timeout=int(max(1, timeout_s)))
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False
