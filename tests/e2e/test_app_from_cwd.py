"""`headrace engine|worker|run|api --app module:runtime` finds a module in the current directory.

Issue 11, item 9: run through the `headrace` script, sys.path started with the script's directory,
so an app next to the user (`mymodule.py` in the working directory) was not found.
"""

from __future__ import annotations

import os
import sys
import textwrap
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import orjson
import pytest

from engine.client.dapr import DaprWorkflowClient
from engine.settings import Settings
from ops.process import Child, free_port
from tests.helpers import eventually

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[2]
#: The console script pip installed: what a user types, with its own directory first on sys.path.
HEADRACE = Path(sys.executable).parent / "headrace"

APP = textwrap.dedent('''
    from engine import WorkflowRuntime

    runtime = WorkflowRuntime()

    @runtime.activity(name="hello")
    def hello(ctx, name):
        return f"hello, {name}"

    @runtime.workflow(name="greet")
    def greet(ctx, name):
        return (yield ctx.call_activity(hello, input=name))
''')


@contextmanager
def _headrace(args: list[str], cwd: Path, env: dict[str, str], log: Path) -> Iterator[Child]:
    proc = Child([str(HEADRACE), *args], log, cwd=cwd, env=env, label="headrace")
    proc.start()
    try:
        yield proc
    finally:
        proc.stop(60)


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "project"
    directory.mkdir()
    (directory / "cwd_app.py").write_text(APP)
    return directory


def _env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return {**env, "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
            "HEADRACE_TOPIC_PREFIX": settings.topic_prefix, "HEADRACE_PARTITIONS": "1"}


@pytest.mark.timeout(300)
def test_run_finds_the_app_in_the_working_directory(kafka_bootstrap: str, app_dir: Path, tmp_path: Path) -> None:
    assert HEADRACE.exists(), f"the headrace script is not installed in {HEADRACE.parent}"
    settings = Settings.from_env(bootstrap_servers=kafka_bootstrap, topic_prefix=f"cwd-{uuid.uuid4().hex[:8]}.",
                                 partitions=1)
    log = tmp_path / "run.log"
    with _headrace(["run", "--app", "cwd_app:runtime"], app_dir, _env(settings), log) as proc, \
            DaprWorkflowClient(settings=settings) as client:
        iid = client.schedule_new_workflow("greet", input="Bo")
        state = client.wait_for_workflow_completion(iid, timeout_in_seconds=120)
        assert proc.alive, log.read_text()[-3000:]
        assert state is not None and orjson.loads(state.serialized_output or "null") == "hello, Bo"


@pytest.mark.timeout(300)
def test_api_finds_the_app_in_the_working_directory(kafka_bootstrap: str, app_dir: Path, tmp_path: Path) -> None:
    settings = Settings.from_env(bootstrap_servers=kafka_bootstrap, topic_prefix=f"cwd-{uuid.uuid4().hex[:8]}.",
                                 partitions=1)
    port = free_port()
    log = tmp_path / "api.log"
    with _headrace(["api", "--port", str(port), "--app", "cwd_app:runtime"], app_dir, _env(settings), log) as proc:
        def names() -> dict[str, object] | None:
            assert proc.alive, log.read_text()[-3000:]
            try:
                reply = httpx.get(f"http://127.0.0.1:{port}/v1.0/headrace/workflow-names", timeout=10)
            except httpx.TransportError:
                return None
            return dict(reply.json()) if reply.status_code == 200 else None

        eventually(names, timeout=120)
        body = names()
        assert body is not None
        assert body["registryKnown"] is True
        assert body["registered"] == ["greet"]
