"""Metrics and health of real engine and worker processes (`--metrics-port`), on the real broker."""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path

import httpx
import pytest

from engine import WorkflowStatus
from engine.client.dapr import DaprWorkflowClient
from engine.settings import Settings
from engine.topics import ensure_topics
from ops.process import free_ports
from tests.e2e.processes import Process
from tests.helpers import eventually

pytestmark = pytest.mark.kafka

WAIT = 120


def _get(port: int, path: str) -> httpx.Response | None:
    try:
        return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=10)
    except httpx.TransportError:
        return None  # not listening yet


def _metric(port: int, line_start: str) -> float | None:
    reply = _get(port, "/metrics")
    if reply is None:
        return None
    match = re.search(rf"^{re.escape(line_start)} (\S+)$", reply.text, re.MULTILINE)
    return float(match.group(1)) if match else None


@pytest.mark.timeout(400)
def test_engine_and_worker_serve_metrics_and_a_stalled_worker_partition_is_named(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = Settings.from_env(bootstrap_servers=kafka_bootstrap, topic_prefix=f"tm-{uuid.uuid4().hex[:8]}.",
                                 partitions=1)
    asyncio.run(ensure_topics(settings))
    engine_port, worker_port = free_ports(2)  # two calls could return the same freed port
    logs = tmp_path / "logs"
    engine = Process("engine", settings, logs, extra_env={"HEADRACE_METRICS_PORT": str(engine_port)})
    # One activity at a time and a short stall threshold: one long activity stalls the partition.
    worker = Process("worker", settings, logs, extra_env={
        "HEADRACE_METRICS_PORT": str(worker_port), "HEADRACE_ACTIVITY_CONCURRENCY": "1",
        "HEADRACE_STALL_SECONDS": "3", "HEADRACE_SHUTDOWN_GRACE_SECONDS": "1"})
    try:
        for port in (engine_port, worker_port):
            eventually(lambda p=port: (r := _get(p, "/readyz")) is not None and r.status_code == 200,
                       timeout=WAIT, message=f"port {port} never ready")
            ready = _get(port, "/readyz")
            assert ready is not None and ready.json() == {"status": "ok", "problems": []}
            alive = _get(port, "/healthz")
            assert alive is not None and alive.status_code == 200
        assert (_metric(engine_port, "process_resident_memory_bytes") or 0) > 0

        with DaprWorkflowClient(settings=settings) as client:
            client.schedule_new_workflow("counter", input=1, instance_id="quick")
            state = client.wait_for_workflow_completion("quick", timeout_in_seconds=WAIT)
            assert state is not None and state.runtime_status is WorkflowStatus.COMPLETED
            runs = 'headrace_worker_activity_runs_total{activity="step",outcome="completed"}'
            eventually(lambda: _metric(worker_port, runs) == 1.0, timeout=WAIT)
            # Idle again: nothing waits (transaction markers must not count as waiting input).
            lag = 'headrace_worker_input_lag_records{partition="0"}'
            eventually(lambda: _metric(worker_port, lag) == 0.0, timeout=WAIT)
            ready = _get(worker_port, "/readyz")
            assert ready is not None and ready.status_code == 200

            client.schedule_new_workflow("slow_chain", input=900.0, instance_id="hog")
            eventually(lambda: _metric(worker_port, "headrace_worker_activities_running") == 1.0, timeout=WAIT)
            client.schedule_new_workflow("counter", input=1, instance_id="blocked")

            def stalled() -> bool:
                reply = _get(worker_port, "/readyz")
                return reply is not None and reply.status_code == 503
            eventually(stalled, timeout=WAIT, message="the stalled partition was never reported")
            reply = _get(worker_port, "/readyz")
            assert reply is not None
            problems = reply.json()["problems"]
            assert [(p["role"], p["partition"]) for p in problems] == [("worker", 0)]
            assert "waiting and no progress" in problems[0]["reason"]
            assert "1 of 1 activity slots busy" in problems[0]["reason"]
            assert (_metric(worker_port, lag) or 0) >= 1
    finally:
        worker.stop()
        engine.stop()
