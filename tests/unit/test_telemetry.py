"""The metrics and health endpoints of engine and worker processes, with stand-in roles."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client import generate_latest

from engine.runtime import kafka_protocol, telemetry
from engine.runtime.telemetry import EngineMetrics, Problem, TelemetryServer, WorkerMetrics
from ops.process import free_port


class Role:
    def __init__(self, problems: list[object] | None = None) -> None:
        self.ready = asyncio.Event()
        self.found = problems or []
        self.metrics = EngineMetrics()

    def problems(self) -> list[object]:
        return self.found


class LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, fn: object) -> None:
        self.loop.call_soon_threadsafe(fn)  # type: ignore[arg-type]

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def loop() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


@pytest.fixture
def server(loop: LoopThread) -> Iterator[TelemetryServer]:
    srv = TelemetryServer(free_port())
    srv.start(loop.loop)
    yield srv
    srv.stop()


def _get(server: TelemetryServer, path: str) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{server.port}{path}", timeout=30)


def test_ready_roles_without_problems_are_healthy(server: TelemetryServer, loop: LoopThread) -> None:
    role = Role()
    loop.call(role.ready.set)
    server.watch("engine", role)
    for path in ("/readyz", "/health"):
        reply = _get(server, path)
        assert reply.status_code == 200
        assert reply.json() == {"status": "ok", "problems": []}
    assert _get(server, "/healthz").json() == {"status": "alive"}


def test_problems_name_the_role_partition_and_reason_with_503(server: TelemetryServer, loop: LoopThread) -> None:
    stuck = Role([Problem(3, "12 record(s) waiting and no progress for 75 s"), (5, "restore failed: boom")])
    loop.call(stuck.ready.set)
    starting = Role()
    server.watch("engine", stuck)
    server.watch("worker", starting)
    reply = _get(server, "/readyz")
    assert reply.status_code == 503
    assert reply.json() == {"status": "unhealthy", "problems": [
        {"role": "engine", "partition": 3, "reason": "12 record(s) waiting and no progress for 75 s"},
        {"role": "engine", "partition": 5, "reason": "restore failed: boom"},
        {"role": "worker", "partition": None, "reason": "not ready: has not joined its group yet"},
    ]}


def test_a_blocked_event_loop_fails_liveness_and_readiness(
    server: TelemetryServer, loop: LoopThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(telemetry, "LIVENESS_TIMEOUT_S", 0.5)
    monkeypatch.setattr(telemetry, "READINESS_TIMEOUT_S", 0.5)
    server.watch("worker", Role())
    release = threading.Event()
    loop.call(lambda: release.wait(60))  # a sync call inside an async activity, say
    try:
        live = _get(server, "/healthz")
        assert live.status_code == 503
        assert live.json()["status"] == "unresponsive"
        ready = _get(server, "/readyz")
        assert ready.status_code == 503
        assert "event loop did not answer" in ready.json()["problems"][0]["reason"]
    finally:
        release.set()


def test_metrics_of_every_role_and_the_process_are_served(server: TelemetryServer) -> None:
    engine = Role()
    engine.metrics.turns(2, 5)
    engine.metrics.dead_letter("wrong_partition")
    engine.metrics.dead_letter("anything a caller makes up")
    worker = Role()
    worker.metrics = WorkerMetrics()  # type: ignore[assignment]
    worker.metrics.run("step", "completed", 0.01)  # type: ignore[attr-defined]
    server.watch("engine", engine)
    server.watch("worker", worker)
    reply = _get(server, "/metrics")
    assert reply.status_code == 200
    text = reply.text
    assert 'headrace_engine_turns_total{partition="2"} 5.0' in text
    assert 'headrace_engine_dead_letters_total{kind="wrong_partition"} 1.0' in text
    assert 'headrace_engine_dead_letters_total{kind="other"} 1.0' in text
    assert 'headrace_worker_activity_runs_total{activity="step",outcome="completed"} 1.0' in text
    assert "process_resident_memory_bytes" in text
    assert _get(server, "/nope").status_code == 404


def test_the_kafka_requests_the_process_sent_are_served(server: TelemetryServer,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kafka_protocol, "_SENT", Counter({"Produce": 7, "EndTxn": 2}))
    text = _get(server, "/metrics").text
    assert 'headrace_kafka_requests_total{request="Produce"} 7.0' in text
    assert 'headrace_kafka_requests_total{request="EndTxn"} 2.0' in text


def test_engine_stall_needs_input_waiting_and_no_progress_for_the_threshold() -> None:
    metrics = EngineMetrics()
    metrics.input_lag(0, 0)
    metrics.input_lag(1, 7)
    metrics.input_lag(2, 3)
    metrics.progress(2)
    assert metrics.stalled(60) == []
    found = metrics.stalled(0)
    assert [p.partition for p in found] == [1, 2]
    assert found[0].reason.startswith("7 record(s) waiting and no progress for")
    metrics.released(1)
    assert [p.partition for p in metrics.stalled(0)] == [2]
    assert 'partition="1"' not in bytes(telemetry.generate_latest(metrics.registry)).decode()


def test_partition_labels_stay_bounded() -> None:
    metrics = EngineMetrics()
    metrics.turns(10**9)
    text = bytes(telemetry.generate_latest(metrics.registry)).decode()
    assert 'headrace_engine_turns_total{partition="other"} 1.0' in text


def test_worker_series_looked_up_once_still_count_and_forget() -> None:
    metrics = WorkerMetrics()
    for _ in range(3):
        metrics.run("step", "completed", 0.01)
    metrics.run("step", "bogus", 0.01)  # an outcome it does not know counts as failed
    metrics.run("-", "skipped")
    metrics.progress(4)
    metrics.forget(4)
    metrics.progress(5)
    text = generate_latest(metrics.registry).decode()
    assert 'headrace_worker_activity_runs_total{activity="step",outcome="completed"} 3.0' in text
    assert 'headrace_worker_activity_runs_total{activity="step",outcome="failed"} 1.0' in text
    assert 'headrace_worker_activity_runs_total{activity="-",outcome="skipped"} 1.0' in text
    assert 'dapr_runtime_workflow_activity_execution_count_total{activity_name="step",status="success"} 3.0' in text
    assert 'dapr_runtime_workflow_activity_execution_count_total{activity_name="step",status="failed"} 1.0' in text
    assert 'activity_name="-"' not in text
    assert 'headrace_worker_last_progress_timestamp_seconds{partition="5"}' in text
    assert 'partition="4"' not in text  # forgotten, and not brought back by a stale series
    metrics.progress(4)
    assert 'headrace_worker_last_progress_timestamp_seconds{partition="4"}' in generate_latest(
        metrics.registry).decode()


def test_gauges_are_refreshed_at_once_then_at_most_once_an_interval() -> None:
    hourly = telemetry.GaugeRefresh(interval_s=3600)
    assert [hourly.due() for _ in range(3)] == [True, False, False]
    always = telemetry.GaugeRefresh(interval_s=0)
    assert [always.due() for _ in range(3)] == [True, True, True]
