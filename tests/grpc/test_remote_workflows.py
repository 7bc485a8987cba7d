"""Workflow code in an unmodified Dapr app (issue 14, remote execution): the app's `WorkflowRuntime`
(Dapr's Python SDK from PyPI) registers workflows and activities and connects to `headrace grpc`
by environment only; Headrace's engine runs none of that code. It hands the app one turn at a time
(`engine.core.remote`), records the actions the app answers with, and keeps history, timers and
work items. The engine runs its own workflows beside them (`HEADRACE_REMOTE_WORKFLOWS=*`: every
name its registry does not know is remote), and the instances show in the REST API like any other."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.settings import Settings
from ops.kafka.paths import cache_root
from ops.process import Child
from tests.api.support import ApiServer, eventually
from tests.grpc.conftest import TOKEN, GrpcProcess, engine_process, grpc_front_end

pytestmark = pytest.mark.kafka

APP = Path(__file__).with_name("sdk_workflows_app.py")
ACTIVITIES_APP = Path(__file__).with_name("sdk_app.py")
REMOTE = {"HEADRACE_REMOTE_WORKFLOWS": "*"}


@pytest.fixture(scope="module")
def engine(settings: Settings, log_dir: Path) -> Iterator[Child]:
    with engine_process(settings, log_dir / "remote-engine.log", "tests.grpc.app_workflows:runtime",
                        **REMOTE) as child:
        yield child


@pytest.fixture(scope="module")
def front_end(engine: Child, settings: Settings, log_dir: Path) -> Iterator[GrpcProcess]:
    # Every activity and every workflow the engine does not know: the apps' (no Headrace worker runs).
    with grpc_front_end(settings, log_dir, "--activity", "*", "--workflow", "*") as server:
        yield server


@pytest.fixture(scope="module")
def rest(engine: Child, settings: Settings, log_dir: Path) -> Iterator[ApiServer]:
    server = ApiServer(settings, log_dir, name="remote-api").start()
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def _run_app(sdk_python: Path, app: Path, front_end: GrpcProcess, engine: Child, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAPR_", "PYTHON"))}
    env |= {"DAPR_GRPC_ENDPOINT": front_end.address, "DAPR_API_TOKEN": TOKEN}
    run = subprocess.run([str(sdk_python), "-W", "ignore", str(app), *args], env=env, capture_output=True,
                         text=True, timeout=400, check=False)
    assert run.returncode == 0, (f"{run.stdout[-2000:]}\n{run.stderr[-4000:]}\n--- grpc ---\n"
                                 f"{front_end.child.log_tail(40)}\n--- engine ---\n{engine.log_tail(40)}")
    return run.stdout


def test_a_turn_waits_for_an_app_and_runs_when_one_connects(sdk_python: Path, front_end: GrpcProcess,
                                                            engine: Child, rest: ApiServer) -> None:
    """Started over REST while no app is connected, a remote workflow waits (RUNNING, the front end
    says why); the first app that connects runs it."""
    iid = f"early{uuid.uuid4().hex[:8]}"
    with rest.client() as http:
        started = http.post(f"/v1.0/workflows/dapr/r_chain/start?instanceID={iid}", content=b"1")
        assert started.status_code == 202, started.text
        eventually(lambda: "waits for a connected app" in front_end.child.log_text(), 60,
                   what="the front end to report the waiting turn")
        waiting = http.get(f"/v1.0/workflows/dapr/{iid}").json()
        assert waiting["runtimeStatus"] == "RUNNING"
        assert "for a connected app" in waiting["properties"]["headrace.workflow.remote_turn"]
        _run_app(sdk_python, APP, front_end, engine, f"w{uuid.uuid4().hex[:8]}")
        body = eventually(lambda: (b := http.get(f"/v1.0/workflows/dapr/{iid}").json())["runtimeStatus"]
                          == "COMPLETED" and b, 60, what="the waiting workflow to complete")
        assert body["properties"]["dapr.workflow.output"] == "5"
        assert "headrace.workflow.remote_turn" not in body["properties"]


def test_an_sdk_app_runs_its_workflows_on_headrace(sdk_python: Path, front_end: GrpcProcess, engine: Child,
                                                    rest: ApiServer) -> None:
    prefix = f"rw{uuid.uuid4().hex[:8]}"
    out = _run_app(sdk_python, APP, front_end, engine, prefix)
    lines = out.strip().splitlines()
    assert lines[-1] == "done"
    seen: dict[str, dict[str, Any]] = {}
    for line in lines[:-1]:
        if line.startswith("{"):
            record = json.loads(line)
            seen[record["pattern"]] = record
    assert seen["chain"]["status"] == "COMPLETED" and seen["chain"]["output"] == 5  # ((1+1)*2)+1
    assert seen["chain"]["custom_status"] == "halfway"
    assert seen["fan"]["status"] == "COMPLETED" and seen["fan"]["output"] == 20  # 2*(0+1+2+3+4)
    assert seen["child"]["status"] == "COMPLETED" and seen["child"]["output"] == [5, 5]
    assert seen["timer"]["status"] == "COMPLETED" and seen["timer"]["output"] >= 1.0
    assert seen["retry"]["status"] == "COMPLETED" and seen["retry"]["output"] == "ok after 3"
    assert seen["continue_as_new"]["status"] == "COMPLETED" and seen["continue_as_new"]["output"] == "counted to 3"
    assert seen["patched"]["status"] == "COMPLETED" and seen["patched"]["output"] == 12  # the patched branch
    assert seen["event"]["status"] == "COMPLETED" and seen["event"]["output"] == {"approved": True}
    suspend = seen["suspend"]
    assert (suspend["paused"], suspend["still"], suspend["status"]) == ("SUSPENDED", "SUSPENDED", "COMPLETED")
    assert suspend["output"] == {"approved": "while paused"}
    assert seen["terminate"]["status"] == "TERMINATED" and seen["terminate"]["output"] == "stopped"
    assert seen["purge"]["status"] is None  # purged: the SDK's get returns None

    with rest.client() as http:
        shown = http.get(f"/v1.0/workflows/dapr/{prefix}-fan")
        assert shown.status_code == 200, shown.text
        body = shown.json()
        assert (body["workflowName"], body["runtimeStatus"]) == ("r_fan", "COMPLETED")
        assert body["properties"]["dapr.workflow.output"] == "20"
        history = http.get(f"/v1.0/workflows/dapr/{prefix}-child-named-child/history")
        assert history.status_code == 200, history.text
        assert "TaskScheduled" in history.text
        assert http.get(f"/v1.0/workflows/dapr/{prefix}-chain").status_code == 404  # purged


def test_engine_workflows_run_beside_remote_ones(sdk_python: Path, front_end: GrpcProcess, engine: Child) -> None:
    """`grpc_calls_app` is the engine's own workflow (its registry knows it), calling the app's activities."""
    iid = f"local{uuid.uuid4().hex[:8]}"
    out = _run_app(sdk_python, ACTIVITIES_APP, front_end, engine, iid)
    seen = json.loads(out.strip().splitlines()[-1])
    assert seen["status"] == "COMPLETED" and seen["output"]["shouted"] == "HELLO!"


#: A checkout (or export) of github.com/dapr/python-sdk holding `examples/workflow`: the environment's
#: HEADRACE_DAPR_PYTHON_SDK, else `<cache>/dapr-python-sdk` (tests never fetch it, nor copy it here).
def _dapr_examples() -> Path | None:
    root = Path(os.environ.get("HEADRACE_DAPR_PYTHON_SDK") or cache_root() / "dapr-python-sdk")
    folder = root / "examples" / "workflow"
    return folder if folder.is_dir() else None


@pytest.mark.parametrize(("example", "expected"), [
    ("task_chaining.py", ["Step 1: Received input: 42.", "Step 2: Received input: 43.",
                          "Step 3: Received input: 86.", "Workflow completed! Status: WorkflowStatus.COMPLETED"]),
    ("fan_out_fan_in.py", ["Final result: 110."]),
])
def test_dapr_examples_run_unmodified(sdk_python: Path, front_end: GrpcProcess, engine: Child, tmp_path: Path,
                                      example: str, expected: list[str]) -> None:
    """dapr/python-sdk's `examples/workflow`, byte for byte, from a scratch folder: only the sidecar
    address (DAPR_GRPC_ENDPOINT) and the token tell them they run on Headrace."""
    examples = _dapr_examples()
    if examples is None:
        pytest.skip("no dapr/python-sdk examples: set HEADRACE_DAPR_PYTHON_SDK to a checkout")
    scratch = tmp_path / example
    shutil.copyfile(examples / example, scratch)
    out = _run_app(sdk_python, scratch, front_end, engine)
    missing = [line for line in expected if line not in out]
    assert not missing, f"{missing} not in:\n{out[-3000:]}"


def test_a_run_keeps_the_workflow_version_it_started_with(sdk_python: Path, front_end: GrpcProcess,
                                                          engine: Child) -> None:
    """Named versions (Dapr 1.17): a run started on v1 by the app's first deployment finishes on v1
    under the next deployment, whose latest is v2; a new run there takes v2."""
    app = Path(__file__).with_name("sdk_versions_app.py")
    old, new = f"ver{uuid.uuid4().hex[:8]}", f"ver{uuid.uuid4().hex[:8]}"
    _run_app(sdk_python, app, front_end, engine, "v1", old)
    seen = json.loads(_run_app(sdk_python, app, front_end, engine, "v2", old, new).strip().splitlines()[-1])
    assert seen == {"old": "v1:a", "new": "v2:b"}
