"""Calls across apps on the real broker (issue 12, item 2; Dapr 1.16's multi-app workflows).

Three apps (`tests/e2e/multi_apps.py`), each a `headrace run` process of its own with its app ID,
on one broker: front calls back's activities and middle's workflows, middle calls back. Results,
failures, the caller's retries and recursive terminate and purge cross the apps.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest

from engine import WorkflowStatus
from engine.client.dapr import DaprWorkflowClient
from engine.runtime.apps import AppTopics
from engine.settings import Settings
from engine.topics import Topics, partition_count
from tests.e2e.processes import Process
from tests.helpers import eventually

pytestmark = pytest.mark.kafka

WAIT = 120


@dataclass
class Apps:
    front: Settings
    middle: Settings
    back: Settings
    env: dict[str, str]
    log_dir: Path
    processes: dict[str, Process] = field(default_factory=dict)
    clients: dict[str, DaprWorkflowClient] = field(default_factory=dict)

    def start(self, name: str) -> None:
        if name not in self.processes:
            settings: Settings = getattr(self, name)
            assert settings.app_id is not None
            env = {**self.env, "HEADRACE_APP_ID": settings.app_id}
            self.processes[name] = Process("run", settings, self.log_dir, env, app=f"tests.e2e.multi_apps:{name}")

    def client(self, name: str) -> DaprWorkflowClient:
        if name not in self.clients:
            self.clients[name] = DaprWorkflowClient(settings=getattr(self, name))
        return self.clients[name]

    def status(self, name: str, iid: str) -> WorkflowStatus | None:
        state = self.client(name).get_workflow_state(iid)
        return state.runtime_status if state is not None else None


@pytest.fixture(scope="module")
def apps(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Apps]:
    run = uuid.uuid4().hex[:6]
    marks = tmp_path_factory.mktemp("multi-app-marks")

    def app(name: str) -> Settings:
        return Settings.from_env(bootstrap_servers=kafka_bootstrap, app_id=f"{name}-{run}", partitions=4,
                                 shutdown_grace_seconds=2)

    front, middle, back = app("front"), app("middle"), app("back")
    env = {"HEADRACE_TEST_MIDDLE_APP": str(middle.app_id), "HEADRACE_TEST_BACK_APP": str(back.app_id),
           "HEADRACE_TEST_MARKS": str(marks)}
    apps = Apps(front, middle, back, env, tmp_path_factory.mktemp("multi-app-logs"))
    # Front's and middle's topics exist and are served before anything reads them (the clients'
    # status readers); back's are left for front's engine to create when it first calls back.
    asyncio.run(AppTopics(back).ensure([str(front.app_id), str(middle.app_id)]))
    apps.start("front")
    apps.start("middle")
    try:
        yield apps
    finally:
        for client in apps.clients.values():
            client.close()
        for process in apps.processes.values():
            process.stop()


@pytest.fixture
def all_apps(apps: Apps) -> Apps:
    apps.start("back")
    return apps


def test_work_for_an_app_without_processes_waits_on_its_topics_until_the_app_runs(apps: Apps) -> None:
    # First in the module, back has never run; run after the others (another order, `--lf`), it is
    # stopped first, so the same path is taken either way instead of a skip.
    running = apps.processes.pop("back", None)
    if running is not None:
        running.stop()
    client = apps.client("front")
    iid = client.schedule_new_workflow("front_activity", input=21)
    state = client.wait_for_workflow_start(iid, timeout_in_seconds=WAIT)
    assert state is not None and state.runtime_status is WorkflowStatus.RUNNING
    # The work item is on back's task topic, which front's engine created: committed, waiting.
    # (Not looked up before: a metadata request for a missing topic makes a broker with
    # auto.create.topics.enable create it, with its default partition count.)
    assert asyncio.run(partition_count(apps.back, Topics.for_settings(apps.back).tasks)) == 4
    apps.start("back")
    done = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
    assert done is not None and done.runtime_status is WorkflowStatus.COMPLETED
    assert done.serialized_output == "42"


def test_activity_of_another_app_fails_and_is_retried_by_the_caller_policy(all_apps: Apps) -> None:
    client = all_apps.client("front")
    recovers = client.schedule_new_workflow("front_retried", input=2)
    gives_up = client.schedule_new_workflow("front_retried", input=5)
    first = client.wait_for_workflow_completion(recovers, timeout_in_seconds=WAIT)
    assert first is not None and first.serialized_output == '"ok after 3"'
    second = client.wait_for_workflow_completion(gives_up, timeout_in_seconds=WAIT)
    assert second is not None and second.runtime_status is WorkflowStatus.COMPLETED
    # The failure is the other app's worker's, carried back as it is.
    assert second.serialized_output == f'"gave up: attempt 3 fails in app {all_apps.back.app_id}"'


def test_child_workflow_of_another_app_returns_its_result_and_its_failure(all_apps: Apps) -> None:
    client = all_apps.client("front")
    ok = client.schedule_new_workflow("front_child", input=5)
    bad = client.schedule_new_workflow("front_child", input=-1)
    done = client.wait_for_workflow_completion(ok, timeout_in_seconds=WAIT)
    assert done is not None and orjson.loads(done.serialized_output or "null") == {"middle": 10}
    failed = client.wait_for_workflow_completion(bad, timeout_in_seconds=WAIT)
    assert failed is not None and failed.runtime_status is WorkflowStatus.COMPLETED
    assert failed.serialized_output == '"child failed: ValueError: no negative orders (-1)"'
    # The children ran in app middle: their states are there, and not in front.
    assert all_apps.status("middle", f"{ok}:0001") is WorkflowStatus.COMPLETED
    assert all_apps.status("middle", f"{bad}:0001") is WorkflowStatus.FAILED
    assert all_apps.status("front", f"{ok}:0001") is None


def test_terminate_and_purge_of_a_parent_reach_its_children_in_other_apps(all_apps: Apps) -> None:
    client = all_apps.client("front")
    iid = client.schedule_new_workflow("front_long")
    child, grandchild = f"{iid}-middle", f"{iid}-middle-back"
    # Each app's client reads its own view, which may trail another app's on a loaded machine.
    eventually(lambda: all_apps.status("back", grandchild) is WorkflowStatus.RUNNING, timeout=WAIT)
    eventually(lambda: all_apps.status("middle", child) is WorkflowStatus.RUNNING, timeout=WAIT)
    client.terminate_workflow(iid)
    eventually(lambda: all_apps.status("back", grandchild) is WorkflowStatus.TERMINATED, timeout=WAIT)
    eventually(lambda: all_apps.status("middle", child) is WorkflowStatus.TERMINATED, timeout=WAIT)
    eventually(lambda: all_apps.status("front", iid) is WorkflowStatus.TERMINATED, timeout=WAIT)
    client.purge_workflow(iid)
    eventually(lambda: all_apps.status("back", grandchild) is None, timeout=WAIT)
    eventually(lambda: all_apps.status("middle", child) is None and all_apps.status("front", iid) is None,
               timeout=WAIT)
