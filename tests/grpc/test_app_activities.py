"""Activities of an unmodified Dapr app, run for a workflow of Headrace's engine (issue 14): the
app's `WorkflowRuntime` (Dapr's Python SDK from PyPI) connects to `headrace grpc --activity ...`,
which hands it those activities' work items over `GetWorkItems` and writes its answers as results.
No Headrace worker runs here: the app's answers are the only way the workflow can finish."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.settings import Settings
from ops.process import Child
from tests.grpc.conftest import TOKEN, GrpcProcess, engine_process, grpc_front_end

pytestmark = pytest.mark.kafka

APP = Path(__file__).with_name("sdk_app.py")


@pytest.fixture(scope="module")
def engine(settings: Settings, log_dir: Path) -> Iterator[Child]:
    with engine_process(settings, log_dir / "engine.log", "tests.grpc.app_workflows:runtime") as child:
        yield child


@pytest.fixture(scope="module")
def activity_front_end(engine: Child, settings: Settings, log_dir: Path) -> Iterator[GrpcProcess]:
    with grpc_front_end(settings, log_dir, "--activity", "sdk_shout", "--activity", "sdk_fail") as server:
        yield server


def test_app_runs_the_activities_of_an_engine_workflow(sdk_python: Path, activity_front_end: GrpcProcess,
                                                        engine: Child) -> None:
    iid = f"app{uuid.uuid4().hex[:10]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAPR_", "PYTHON"))}
    env |= {"DAPR_GRPC_ENDPOINT": activity_front_end.address, "DAPR_API_TOKEN": TOKEN}
    run = subprocess.run([str(sdk_python), "-W", "ignore", str(APP), iid], env=env, capture_output=True,
                         text=True, timeout=180, check=False)
    assert run.returncode == 0, (f"{run.stderr[-3000:]}\n--- grpc ---\n{activity_front_end.child.log_tail(30)}"
                                 f"\n--- engine ---\n{engine.log_tail(30)}")
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert seen["status"] == "COMPLETED"
    assert seen["output"]["shouted"] == "HELLO!"
    assert "cannot take hello" in seen["output"]["failure"]
    assert seen["calls"] == [[iid, 0]]  # the app saw the workflow's instance and the task's ID
