"""Dapr apps on the Java and JavaScript SDKs, unmodified (io.dapr:dapr-sdk-workflows from Maven
Central, tests/grpc/java/; @dapr/dapr from npm, tests/grpc/js/), on Headrace through `headrace grpc`
(issue 14): pointed at it by environment only, each app's `DaprWorkflowClient` starts a chain, a
fan-out and a workflow waiting for an external event, raises the event and waits; its
`WorkflowRuntime` runs the workflows' code and their activities (orchestrator and activity work
items), and for the Java app also the activities of Headrace's own workflows. The instances show
in the REST API like any other. Each app is built once and cached (tests/grpc/sdk_apps.py); its
tests are skipped only when it is not cached and its registry cannot be reached."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.settings import Settings
from ops.process import Child
from tests.api.support import ApiServer
from tests.grpc.conftest import TOKEN, GrpcProcess, engine_process, grpc_front_end
from tests.grpc.sdk_apps import JAVA_SOURCE, JS_SOURCE, BuiltApp, build, cached, reachable

# The apps start a JVM or Node and the stack its processes: minutes on a loaded machine.
pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]

def _app(source: Path, registry: str) -> BuiltApp:
    if (app := cached(source)) is not None:
        return app
    if not reachable(registry):
        pytest.skip(f"the {source.name} test app is not built yet and {registry} is unreachable")
    return build(source)


@pytest.fixture(scope="module")
def java_app() -> BuiltApp:
    return _app(JAVA_SOURCE, "repo.maven.apache.org")


@pytest.fixture(scope="module")
def js_app() -> BuiltApp:
    return _app(JS_SOURCE, "registry.npmjs.org")


@pytest.fixture(scope="module")
def engine(settings: Settings, log_dir: Path) -> Iterator[Child]:
    # Remote workflows: every name the engine's registry does not know (the Java app's) is the app's.
    with engine_process(settings, log_dir / "engine.log", "tests.grpc.java_workflows:runtime",
                        HEADRACE_REMOTE_WORKFLOWS="*") as child:
        yield child


@pytest.fixture(scope="module")
def front_end(engine: Child, settings: Settings, log_dir: Path) -> Iterator[GrpcProcess]:
    # Every activity is an app's: no Headrace worker runs here.
    with grpc_front_end(settings, log_dir, "--activity", "*", "--workflow", "*") as server:
        yield server


@pytest.fixture(scope="module")
def rest_api(engine: Child, settings: Settings, log_dir: Path) -> Iterator[ApiServer]:
    server = ApiServer(settings, log_dir, env={"DAPR_API_TOKEN": TOKEN}).start()
    try:
        server.wait_ready()
        yield server
    finally:
        server.child.stop(15)


def run_app(app: BuiltApp, front_end: GrpcProcess, engine: Child, *args: str) -> dict[str, Any]:
    """Run an app to its end, pointed at the front end by environment only; its JSON line."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAPR_")}
    env |= {"DAPR_GRPC_ENDPOINT": front_end.address, "DAPR_API_TOKEN": TOKEN}
    run = subprocess.run(app.argv(*args), env=env, capture_output=True, text=True, timeout=240, check=False)
    assert run.returncode == 0, (f"{run.stderr[-4000:]}\n--- grpc ---\n{front_end.child.log_tail(30)}"
                                 f"\n--- engine ---\n{engine.log_tail(30)}")
    seen: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    return seen


def assert_steered(seen: dict[str, Any]) -> None:
    """The Java client's suspend, resume, terminate and purge, each answered once applied, and a
    start under the instance ID it generates itself (a UUID)."""
    assert seen["generated"] == {"status": "COMPLETED", "output": '"UUID!!"'}
    assert (seen["steered_suspended"], seen["steered_resumed"]) == ("SUSPENDED", "RUNNING")
    assert seen["steered"] == {"status": "TERMINATED", "output": '"stopped"'}
    assert (seen["steered_purged"], seen["steered_gone"]) == (True, True)


def test_java_app_drives_engine_workflows_and_runs_their_activities(
    java_app: BuiltApp, front_end: GrpcProcess, engine: Child, rest_api: ApiServer
) -> None:
    prefix = f"java{uuid.uuid4().hex[:10]}"
    seen = run_app(java_app, front_end, engine, "engine", prefix)

    assert seen["approval_started"] == "RUNNING"
    assert seen["chain"] == {"status": "COMPLETED", "output": '"HELLO!!"'}
    assert seen["fanout"] == {"status": "COMPLETED", "output": "55"}
    assert seen["approval"] == {"status": "COMPLETED", "output": '"approved by ANN"'}
    assert seen["unknown"] is True
    assert_steered(seen)
    # Each activity execution ran once in the app: 3 in the chain, 5 in the fan-out, 1 after the event.
    runs = seen["activity_runs"]
    assert sorted(runs.values()) == [1] * 12, runs  # 3 + 5 + 1, and 3 for the generated ID's chain
    assert sum(key.startswith("java_square/") for key in runs) == 5

    with httpx.Client(base_url=rest_api.url, headers={"dapr-api-token": TOKEN}, timeout=30) as http:
        for suffix, name in (("chain", "engine_chain"), ("fanout", "engine_fanout"), ("approval", "engine_approval")):
            body = http.get(f"/v1.0/workflows/dapr/{prefix}_{suffix}").json()
            assert (body["runtimeStatus"], body["workflowName"]) == ("COMPLETED", name)


def test_java_workflows_run_in_the_java_app(
    java_app: BuiltApp, front_end: GrpcProcess, engine: Child, rest_api: ApiServer
) -> None:
    """The same three patterns as the Java app's own workflows: the SDK's executor runs their code
    from orchestrator work items; Headrace keeps their history, the event and the activities."""
    prefix = f"jwf{uuid.uuid4().hex[:10]}"
    seen = run_app(java_app, front_end, engine, "app", prefix)

    assert seen["approval_started"] == "RUNNING"
    assert seen["chain"] == {"status": "COMPLETED", "output": '"HELLO!!"'}
    assert seen["fanout"] == {"status": "COMPLETED", "output": "55"}
    assert seen["approval"] == {"status": "COMPLETED", "output": '"approved by ANN"'}
    assert_steered(seen)
    runs = seen["activity_runs"]
    assert sorted(runs.values()) == [1] * 12, runs  # keyed by the SDK's task execution IDs

    with httpx.Client(base_url=rest_api.url, headers={"dapr-api-token": TOKEN}, timeout=30) as http:
        for suffix in ("chain", "fanout", "approval"):
            body = http.get(f"/v1.0/workflows/dapr/{prefix}_{suffix}").json()
            assert (body["runtimeStatus"], body["workflowName"]) == ("COMPLETED", f"java_{suffix}")


def test_javascript_workflows_run_in_the_javascript_app(
    js_app: BuiltApp, front_end: GrpcProcess, engine: Child, rest_api: ApiServer
) -> None:
    prefix = f"jsw{uuid.uuid4().hex[:10]}"
    seen = run_app(js_app, front_end, engine, prefix)

    assert seen["approval_started"] == "RUNNING"
    assert seen["chain"] == {"status": "COMPLETED", "output": '"HELLO!!"'}
    assert seen["fanout"] == {"status": "COMPLETED", "output": "55"}
    assert seen["approval"] == {"status": "COMPLETED", "output": '"approved by ANN"'}
    runs = seen["activity_runs"]  # by activity and input: all different in this app
    assert sorted(runs.values()) == [1] * 9, runs

    with httpx.Client(base_url=rest_api.url, headers={"dapr-api-token": TOKEN}, timeout=30) as http:
        for suffix in ("chain", "fanout", "approval"):
            body = http.get(f"/v1.0/workflows/dapr/{prefix}_{suffix}").json()
            assert (body["runtimeStatus"], body["workflowName"]) == ("COMPLETED", f"js_{suffix}")
