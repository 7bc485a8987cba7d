"""Crashes around workflows whose code runs in a connected Dapr app (issue 14): `kill -9` of the app
mid-activity, mid-turn and mid-run under load (a second instance of the app takes over), and of the
gRPC front end (restarted on its port; the app reconnects by itself). Nothing is lost: every
instance completes with its right output. Nothing is applied twice: Headrace's history audit
(`ops.audit`: one result per task, sequence numbers without gaps or repeats, one end) holds, and no
action of a turn is recorded twice. The app is tests/grpc/sdk_fault_app.py under Dapr's Python SDK
from PyPI, unmodified; the test drives it over the front end with the protocol's own stubs."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import wrappers_pb2

from api.grpc.protos import orchestration_pb2 as opb
from api.grpc.protos import orchestrator_service_pb2 as pb
from api.grpc.protos import orchestrator_service_pb2_grpc as pb_grpc
from engine.core import events as ev
from engine.settings import Settings
from ops.audit import audit, read_history
from ops.process import Child
from tests.api.support import eventually
from tests.grpc.conftest import TOKEN, GrpcProcess, engine_process, grpc_front_end
from tests.grpc.sdk_apps import JAVA_SOURCE, JS_SOURCE, build, cached, reachable

# The apps start a JVM or Node and the stack its processes: minutes on a loaded machine.
pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]

APP = Path(__file__).with_name("sdk_fault_app.py")
AUTH = [("dapr-api-token", TOKEN)]
WAIT = 180.0
#: What the front end logs when an item's stream ends unanswered and the item goes to another app.
RESENT = "ended before its answer; sending it again"


@pytest.fixture(scope="module")
def engine(settings: Settings, log_dir: Path) -> Iterator[Child]:
    # Every workflow name the engine's registry does not know (f_chain) is run by connected apps.
    with engine_process(settings, log_dir / "faults-engine.log", "tests.grpc.app_workflows:runtime",
                        HEADRACE_REMOTE_WORKFLOWS="*") as child:
        yield child


@pytest.fixture(scope="module")
def front_end(engine: Child, settings: Settings, log_dir: Path) -> Iterator[GrpcProcess]:
    # Every activity and every workflow the engine does not know runs in the connected apps.
    with grpc_front_end(settings, log_dir, "--activity", "*", "--workflow", "*") as server:
        yield server


class Apps:
    """Instances of the fault app, each a process of its own, sharing one marks folder."""

    def __init__(self, sdk_python: Path, front_end: GrpcProcess, log_dir: Path, marks: Path) -> None:
        self.sdk_python, self.front_end, self.log_dir, self.marks = sdk_python, front_end, log_dir, marks
        self.started: list[Child] = []

    def start(self, name: str, argv: list[str] | None = None, **env: str) -> Child:
        """One more instance of the Python fault app (or of the app `argv` runs)."""
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(("DAPR_", "PYTHON", "FAULT_"))}
        child = Child(
            argv or [str(self.sdk_python), "-W", "ignore", str(APP)], self.log_dir / f"fault-app-{name}.log",
            env={**inherited, "DAPR_GRPC_ENDPOINT": self.front_end.address, "DAPR_API_TOKEN": TOKEN,
                 "FAULT_MARKS": str(self.marks), **env},
            label=name, die_with_parent=True,
        )
        child.start()
        self.started.append(child)
        return child

    def lines(self, kind: str) -> list[str]:
        path = self.marks / kind
        return path.read_text().splitlines() if path.exists() else []

    def logs(self) -> str:
        return "\n".join(f"--- {c.label} ---\n{c.log_tail(15)}" for c in self.started)


@pytest.fixture
def apps(sdk_python: Path, front_end: GrpcProcess, log_dir: Path, tmp_path: Path) -> Iterator[Apps]:
    marks = tmp_path / "marks"
    marks.mkdir()
    running = Apps(sdk_python, front_end, log_dir, marks)
    try:
        yield running
    finally:
        for child in running.started:
            child.kill()


def _call(front_end: GrpcProcess, method: str, request: object, timeout: float = 30.0) -> object:
    """One call through the front end, retried while it is away (the tests restart it)."""

    def attempt() -> object | None:
        with grpc.insecure_channel(front_end.address) as channel:
            try:
                return getattr(pb_grpc.TaskHubSidecarServiceStub(channel), method)(
                    request, metadata=AUTH, timeout=timeout)
            except grpc.RpcError as error:
                if error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    return None
                raise

    return eventually(attempt, WAIT, interval=0.5, what=f"{method} through {front_end.address}")


def start_chains(front_end: GrpcProcess, ids: list[str], data: object, name: str = "f_chain") -> None:
    """Start `name` with input `data` (f_chain: its number of steps) under each ID."""
    for iid in ids:
        _call(front_end, "StartInstance", pb.CreateInstanceRequest(
            instanceId=iid, name=name, input=wrappers_pb2.StringValue(value=json.dumps(data))))


def assert_all_done(front_end: GrpcProcess, engine: Child, apps: Apps, ids: list[str], steps: int,
                    output: str | None = None) -> None:
    """Each instance completed, its output `steps` (an f_chain's) or `output`."""
    for iid in ids:
        done = _call(front_end, "WaitForInstanceCompletion",
                     pb.GetInstanceRequest(instanceId=iid, getInputsAndOutputs=True), timeout=WAIT)
        assert isinstance(done, pb.GetInstanceResponse)
        state = done.workflowState
        expected = str(steps) if output is None else output
        assert (state.workflowStatus, state.output.value) == (opb.ORCHESTRATION_STATUS_COMPLETED, expected), (
            f"{iid}: {state}\n{apps.logs()}\n--- grpc ---\n{front_end.child.log_tail(30)}\n"
            f"--- engine ---\n{engine.log_tail(30)}")


def assert_nothing_twice(settings: Settings, prefix: str, completed: int) -> None:
    """The history audit over this test's instances, and each turn's actions recorded once."""
    records = [r for r in asyncio.run(read_history(settings)) if r[0].startswith(prefix)]
    report = audit(records)
    assert report.violations == []
    assert report.completed["COMPLETED"] == completed
    scheduled = Counter((iid, execution, e.event_id) for iid, execution, events in records for e in events
                        if isinstance(e, ev.TaskScheduled))
    assert [key for key, n in scheduled.items() if n > 1] == []


def test_app_killed_mid_activity_another_instance_runs_it(
    apps: Apps, front_end: GrpcProcess, engine: Child, settings: Settings
) -> None:
    prefix = f"fa{uuid.uuid4().hex[:8]}"
    first = apps.start("app-a", FAULT_HOLD="activity")
    start_chains(front_end, [prefix], 3)
    eventually(lambda: apps.lines("act-start"), WAIT, interval=0.1, what="the first activity")
    first.kill()
    assert apps.lines("act-end") == []
    apps.start("app-b")
    assert_all_done(front_end, engine, apps, [prefix], steps=3)
    # The held activity ran again in the second app; its result, as every step's, was applied once.
    assert apps.lines("act-start") == [f"{prefix} 0", f"{prefix} 0", f"{prefix} 1", f"{prefix} 2"]
    assert apps.lines("act-end") == [f"{prefix} 0", f"{prefix} 1", f"{prefix} 2"]
    assert_nothing_twice(settings, prefix, 1)


def test_app_killed_mid_turn_another_instance_runs_it(
    apps: Apps, front_end: GrpcProcess, engine: Child, settings: Settings
) -> None:
    prefix = f"ft{uuid.uuid4().hex[:8]}"
    first = apps.start("app-a", FAULT_HOLD="turn")
    start_chains(front_end, [prefix], 3)
    eventually(lambda: apps.lines("turn"), WAIT, interval=0.1, what="the first turn")
    first.kill()
    apps.start("app-b")
    assert_all_done(front_end, engine, apps, [prefix], steps=3)
    assert apps.lines("turn") == [prefix, prefix]  # the held turn, handed to the second app
    assert apps.lines("act-end") == [f"{prefix} 0", f"{prefix} 1", f"{prefix} 2"]
    assert_nothing_twice(settings, prefix, 1)


def test_app_killed_under_load_the_other_instance_finishes(
    apps: Apps, front_end: GrpcProcess, engine: Child, settings: Settings
) -> None:
    """Two instances of the app share the work; one dies with turns and activities in flight.

    The doomed instance runs its first activities and then holds the ones it gets: on a loaded
    machine the work can otherwise sit in the engine, not in the apps, at the moment of the kill."""
    prefix = f"fl{uuid.uuid4().hex[:8]}"
    ids = [f"{prefix}-{i:02d}" for i in range(20)]
    doomed = apps.start("app-a", FAULT_STEP_SECONDS="0.05", FAULT_HOLD="activity", FAULT_HOLD_AFTER="5")
    apps.start("app-b", FAULT_STEP_SECONDS="0.05")
    start_chains(front_end, ids, 5)
    eventually(lambda: len(apps.lines("held")) >= 3, WAIT, interval=0.1, what="work held by the doomed app")
    resent_before = front_end.child.log_text().count(RESENT)
    doomed.kill()
    assert_all_done(front_end, engine, apps, ids, steps=5)
    assert front_end.child.log_text().count(RESENT) > resent_before  # the kill caught work in flight
    ended = Counter(apps.lines("act-end"))
    assert set(ended) == {f"{iid} {i}" for iid in ids for i in range(5)}  # activities run at least once
    assert_nothing_twice(settings, prefix, len(ids))


def test_front_end_killed_and_restarted_the_app_reconnects(
    apps: Apps, front_end: GrpcProcess, engine: Child, settings: Settings
) -> None:
    prefix = f"fg{uuid.uuid4().hex[:8]}"
    ids = [f"{prefix}-{i:02d}" for i in range(10)]
    apps.start("app-a", FAULT_STEP_SECONDS="0.1")
    start_chains(front_end, ids, 5)
    eventually(lambda: len(apps.lines("act-end")) >= 10, WAIT, interval=0.1, what="progress")
    front_end.child.kill()
    front_end.child.start()  # the same port: the app's own reconnection finds it
    front_end.wait_ready()
    assert_all_done(front_end, engine, apps, ids, steps=5)
    assert_nothing_twice(settings, prefix, len(ids))


@pytest.mark.parametrize(("source", "registry", "worker", "lang"), [
    (JAVA_SOURCE, "repo.maven.apache.org", "worker", "java"),
    (JS_SOURCE, "registry.npmjs.org", "--worker", "js"),
], ids=["java", "javascript"])
def test_other_sdk_app_killed_mid_activity_another_instance_runs_it(
    apps: Apps, front_end: GrpcProcess, engine: Child, settings: Settings,
    source: Path, registry: str, worker: str, lang: str,
) -> None:
    """The same with Dapr's Java and JavaScript SDKs (tests/grpc/java/, tests/grpc/js/, run as a
    worker only): their chain and its activities, the first instance holding its first activity."""
    app = cached(source)
    if app is None:
        if not reachable(registry):
            pytest.skip(f"the {source.name} test app is not built yet and {registry} is unreachable")
        app = build(source)
    prefix = f"f{lang}{uuid.uuid4().hex[:8]}"
    first = apps.start(f"{lang}-a", app.argv(worker), FAULT_HOLD="activity")
    start_chains(front_end, [prefix], "hello", name=f"{lang}_chain")
    eventually(lambda: apps.lines("act-start"), WAIT, interval=0.1, what="the first activity")
    first.kill()
    apps.start(f"{lang}-b", app.argv(worker))
    assert_all_done(front_end, engine, apps, [prefix], steps=0, output='"HELLO!!"')
    assert apps.lines("act-start") == [f"{lang}_upper hello", f"{lang}_upper hello", f"{lang}_exclaim HELLO",
                                       f"{lang}_exclaim HELLO!"]
    assert_nothing_twice(settings, prefix, 1)
