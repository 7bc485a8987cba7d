"""The stack for gRPC front-end tests: engine + worker in process, the REST API and `headrace grpc`
as real processes, and Dapr's Python SDK from PyPI in a venv of its own (cached)."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest

from api.grpc.protos import orchestrator_service_pb2 as pb
from api.grpc.protos import orchestrator_service_pb2_grpc as pb_grpc
from engine.runtime.host import RuntimeHost
from engine.settings import Settings
from ops.dapr_sdk import pypi_reachable, sdk_installed
from ops.dapr_sdk import sdk_python as dapr_sdk_python
from ops.process import Child, free_port
from tests.api.support import ROOT, ApiServer, eventually
from tests.api.workflows import runtime

pytestmark = pytest.mark.kafka

TOKEN = "grpc-test-token"  # a test's own token


@pytest.fixture(scope="session")
def sdk_python() -> Path:
    """The interpreter of a venv holding Dapr's SDK (`ops.dapr_sdk`: made once under the Kafka jars'
    cache root and reused). Never the suite's venv: its `dapr.ext.workflow` would shadow ours.
    Skipped only when it is not there yet and PyPI cannot be reached to make it."""
    if not sdk_installed() and not pypi_reachable():
        pytest.skip("Dapr's Python SDK is not cached and pypi.org is unreachable")
    return dapr_sdk_python()


@pytest.fixture(scope="module")
def settings(kafka_bootstrap: str) -> Settings:
    return Settings.from_env(
        bootstrap_servers=kafka_bootstrap, partitions=4, topic_prefix=f"t.grpc.{uuid.uuid4().hex[:8]}."
    )


@pytest.fixture(scope="module")
def host(settings: Settings) -> Iterator[RuntimeHost]:
    host = RuntimeHost(runtime.registry, settings)
    host.start(timeout=90)
    yield host
    host.stop()


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("grpc-logs")


@pytest.fixture(scope="module")
def api(host: RuntimeHost, settings: Settings, log_dir: Path) -> Iterator[ApiServer]:
    server = ApiServer(settings, log_dir, env={"DAPR_API_TOKEN": TOKEN}).start()
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


class GrpcProcess:
    """One `headrace grpc` process (`python -m ops.cli grpc`), as a deployment runs it."""

    def __init__(self, settings: Settings, log_dir: Path, *args: str) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        env = process_env(settings, DAPR_API_TOKEN=TOKEN)
        self.child = Child(
            [sys.executable, "-m", "ops.cli", "grpc", "--port", str(self.port), *args],
            log_dir / f"grpc-{self.port}.log", cwd=ROOT, env=env, label="grpc", die_with_parent=True,
        )

    def stub(self, channel: grpc.Channel) -> pb_grpc.TaskHubSidecarServiceStub:
        return pb_grpc.TaskHubSidecarServiceStub(channel)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Ready once a look-up answers: the server listens and its Kafka link is connected."""
        with grpc.insecure_channel(self.address) as channel:
            stub = self.stub(channel)

            def answers() -> bool:
                try:
                    stub.GetInstance(pb.GetInstanceRequest(instanceId="probe"), metadata=[("dapr-api-token", TOKEN)],
                                     timeout=2)
                except grpc.RpcError as error:
                    if error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                        return False
                    raise
                return True

            eventually(answers, timeout, interval=0.2, what=f"headrace grpc on {self.address}")


def process_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a process of the stack under test: this deployment's Kafka and prefix."""
    # HEADRACE_API_APPLY_WAIT_S: the gRPC front end answers a command once the engine applied it or
    # after this long (5 s by default, which a loaded CI machine can exceed): tests read right after.
    # HEADRACE_API_CONSISTENCY_TIMEOUT_S: a read's wait for the status view (2 s, then UNAVAILABLE).
    return {**os.environ, **settings.to_env("bootstrap_servers", "topic_prefix", "partitions"),
            "HEADRACE_API_APPLY_WAIT_S": "60", "HEADRACE_API_CONSISTENCY_TIMEOUT_S": "60",
            "PYTHONPATH": str(ROOT), **extra}


@contextmanager
def engine_process(settings: Settings, log_path: Path, app: str, **env: str) -> Iterator[Child]:
    """`headrace engine --app APP` as a process (`env`: e.g. HEADRACE_REMOTE_WORKFLOWS), stopped at the end."""
    child = Child([sys.executable, "-m", "ops.cli", "engine", "--app", app], log_path, cwd=ROOT,
                  env=process_env(settings, **env), label="engine", die_with_parent=True)
    child.start()
    try:
        yield child
    finally:
        child.stop(15)


@contextmanager
def grpc_front_end(settings: Settings, log_dir: Path, *args: str) -> Iterator[GrpcProcess]:
    """`headrace grpc ARGS` as a process, once it answers; stopped at the end."""
    server = GrpcProcess(settings, log_dir, *args)
    server.child.start()
    try:
        server.wait_ready()
        yield server
    finally:
        server.child.stop(15)


@pytest.fixture(scope="module")
def grpc_server(host: RuntimeHost, settings: Settings, log_dir: Path) -> Iterator[GrpcProcess]:
    with grpc_front_end(settings, log_dir) as server:
        yield server
