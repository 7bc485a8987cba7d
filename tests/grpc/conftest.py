"""The stack for gRPC front-end tests: engine + worker in process, the REST API and `headrace grpc`
as real processes, and Dapr's Python SDK from PyPI in a venv of its own (cached)."""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from api.grpc.protos import orchestrator_service_pb2 as pb
from api.grpc.protos import orchestrator_service_pb2_grpc as pb_grpc
from engine.runtime.host import RuntimeHost
from engine.settings import Settings
from ops.kafka.paths import cache_root
from ops.process import Child, free_port
from tests.api.support import ROOT, ApiServer, eventually
from tests.api.workflows import runtime

pytestmark = pytest.mark.kafka

#: Dapr's Python SDK as an app installs it: the workflow extension and the core of the same release.
#: 1.18.3 vendors durabletask's stubs from the proto commit api/grpc/protos is generated from.
SDK_PACKAGES = ("dapr==1.18.3", "dapr-ext-workflow==1.18.3")
TOKEN = "grpc-test-token"  # a test's own token


def _pypi_reachable() -> bool:
    try:
        with socket.create_connection(("pypi.org", 443), timeout=5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def sdk_python() -> Path:
    """The interpreter of a venv holding Dapr's SDK, made once under the Kafka jars' cache root
    (`ops.kafka.paths.cache_root`) and reused. Never the suite's venv: its `dapr.ext.workflow`
    would shadow ours. Skipped only when PyPI cannot be reached to make it."""
    root = cache_root() / f"dapr-sdk-{'-'.join(p.split('==')[1] for p in SDK_PACKAGES[1:])}"
    python = root / "bin" / "python"
    done = root / ".installed"
    root.parent.mkdir(parents=True, exist_ok=True)
    with (root.parent / "dapr-sdk.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two sessions at once build it once
        if done.exists() and done.read_text() == " ".join(SDK_PACKAGES):
            return python
        if not _pypi_reachable():
            pytest.skip("Dapr's Python SDK is not cached and pypi.org is unreachable")
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(root)], check=True, timeout=120)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *SDK_PACKAGES],
            check=True, timeout=600,
        )
        done.write_text(" ".join(SDK_PACKAGES))
    return python


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
        inherited = {k: v for k, v in os.environ.items() if k != "DAPR_API_TOKEN"}
        env = {
            **inherited,
            **settings.to_env("bootstrap_servers", "topic_prefix", "partitions"),
            "DAPR_API_TOKEN": TOKEN,
            "PYTHONPATH": str(ROOT),
        }
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


@pytest.fixture(scope="module")
def grpc_server(host: RuntimeHost, settings: Settings, log_dir: Path) -> Iterator[GrpcProcess]:
    server = GrpcProcess(settings, log_dir)
    server.child.start()
    try:
        server.wait_ready()
        yield server
    finally:
        server.child.stop(15)
