"""A graceful worker stop on the real broker: finished activities never run again, SIGTERM ends in time.

Issue 11, item 4: with one long activity running, every activity that finished after it on the same
partition ran again after SIGTERM (30 -> 60 side effects), and the worker took minutes to exit.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest

from engine import WorkflowStatus
from engine.client.dapr import DaprWorkflowClient
from engine.settings import Settings
from engine.topics import ensure_topics
from tests.e2e.processes import Process
from tests.helpers import eventually

pytestmark = pytest.mark.kafka

WAIT = 120
#: The worker's grace period in this test: short, so the long activity is certainly abandoned.
GRACE = 3.0
#: Allowance on top of the grace period for leaving the group and stopping clients on a loaded machine.
MARGIN = 60.0
#: Far longer than the test: the old worker waited for it to end before exiting.
LONG_ACTIVITY_S = 900.0


def _marks(directory: Path, kind: str) -> list[str]:
    path = directory / f"{kind}.log"
    return path.read_text().split() if path.exists() else []


def _stop_and_time(worker: Process) -> float | None:
    """Seconds from SIGTERM to exit, or None when it had to be killed (checked after the marks)."""
    started = time.monotonic()
    if not worker.stop(GRACE + MARGIN):  # SIGTERM, and SIGKILL when the grace runs out
        return None
    return time.monotonic() - started


@pytest.mark.timeout(600)
def test_sigterm_keeps_finished_activities_done_and_abandons_the_long_one(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    # One partition: the long activity and all short ones share it, the case the issue describes.
    settings = Settings.from_env(bootstrap_servers=kafka_bootstrap, topic_prefix=f"ws-{uuid.uuid4().hex[:8]}.",
                                 partitions=1)
    asyncio.run(ensure_topics(settings))
    marks = tmp_path / "marks"
    marks.mkdir()
    env = {"HEADRACE_TEST_MARKS": str(marks), "HEADRACE_SHUTDOWN_GRACE_SECONDS": str(GRACE)}
    logs = tmp_path / "logs"
    engine = Process("engine", settings, logs)
    worker = Process("worker", settings, logs, extra_env=env)
    try:
        with DaprWorkflowClient(settings=settings) as client:
            client.schedule_new_workflow("slow_chain", input=LONG_ACTIVITY_S, instance_id="long")
            eventually(lambda: _marks(marks, "slow-start") == ["long"], timeout=WAIT)
            short = [client.schedule_new_workflow("counter", input=1, instance_id=f"short-{i:02d}")
                     for i in range(30)]
            for iid in short:
                state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
                assert state is not None and state.runtime_status is WorkflowStatus.COMPLETED, iid
            assert len(_marks(marks, "step")) == 30

            first_exit = _stop_and_time(worker)
            first_log = worker.log_text()

            worker = Process("worker", settings, logs, extra_env=env)
            # The abandoned activity was not committed: it is delivered again.
            eventually(lambda: _marks(marks, "slow-start") == ["long", "long"], timeout=WAIT)
            # An activity behind all the others on the partition: once it has run, the worker has
            # fetched every earlier item (and run any it was going to run).
            client.schedule_new_workflow("counter", input=1, instance_id="after")
            state = client.wait_for_workflow_completion("after", timeout_in_seconds=WAIT)
            assert state is not None and state.runtime_status is WorkflowStatus.COMPLETED
            # A graceful stop lets whatever short activity it started finish, so every run so far
            # has left its mark by the time it exits.
            second_exit = _stop_and_time(worker)
        steps = sorted(mark.split("#")[0] for mark in _marks(marks, "step"))
        assert steps == sorted([*short, "after"])  # one side effect per finished activity, none twice
        assert _marks(marks, "slow-start") == ["long", "long"]
        assert _marks(marks, "slow-end") == []
        print(f"exit after SIGTERM: {first_exit} s and {second_exit} s (grace {GRACE:.0f} s)")
        for elapsed in (first_exit, second_exit):
            assert elapsed is not None, f"a worker did not exit within {GRACE + MARGIN:.0f} s of SIGTERM"
        assert "1 activities still running after the 3 s grace period" in first_log, first_log[-3000:]
    finally:
        worker.stop()
        engine.stop()
