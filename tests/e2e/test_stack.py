"""`headrace stack up|down`: what `ops/dev up` runs, with the example workflows registered."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import orjson
import pytest

from engine.client.dapr import DaprWorkflowClient
from engine.settings import Settings
from ops.process import is_running, read_pidfile

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[2]


def _headrace(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ops", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=180, check=False)


def test_stack_runs_the_examples_and_stops_without_leftovers(kafka_bootstrap: str, tmp_path: Path) -> None:
    prefix = f"stack-{uuid.uuid4().hex[:8]}."
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "HEADRACE_TOPIC_PREFIX": prefix,
           "HEADRACE_STATE_DIR": str(tmp_path), "HEADRACE_PARTITIONS": "2", "PYTHONPATH": str(ROOT)}
    up = _headrace(["stack", "up", "--roles", "engine,worker"], env)
    assert up.returncode == 0, up.stderr
    pids = [read_pidfile(tmp_path / "stack" / f"{role}.pid") for role in ("engine", "worker")]
    try:
        settings = Settings.from_env(bootstrap_servers=kafka_bootstrap, topic_prefix=prefix, partitions=2)
        with DaprWorkflowClient(settings=settings) as client:
            iid = client.schedule_new_workflow("fan_out", input=[1, 2, 3])
            state = client.wait_for_workflow_completion(iid, timeout_in_seconds=60)
            assert state is not None and orjson.loads(state.serialized_output or "null") == 14
        # Each process serves its health on a port of its own; status reads it.
        status = _headrace(["stack", "status"], env)
        assert status.returncode == 0, status.stderr
        lines = status.stdout.splitlines()
        for role, ref in zip(("engine", "worker"), pids, strict=True):
            assert ref is not None
            assert f"{role}: running (pid {ref.pid}), healthy" in lines, status.stdout
    finally:
        down = _headrace(["stack", "down"], env)
    assert down.returncode == 0, down.stderr
    assert all(ref is not None and not is_running(ref) for ref in pids)
