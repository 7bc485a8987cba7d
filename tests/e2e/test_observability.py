"""Issue 18 on the real broker: one trace from the REST API through the engine, the workers and a
child workflow (and one from a Python client's span); Dapr's workflow metrics moving on the engine's,
worker's and API's /metrics; JSON logs."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from pathlib import Path

import httpx
import pytest
from opentelemetry import trace

from engine import DaprWorkflowClient
from engine.settings import Settings
from engine.topics import ensure_topics
from ops.process import free_ports
from tests.api.support import ApiServer
from tests.e2e.otlp import OtlpReceiver, ReceivedSpan
from tests.e2e.processes import Process
from tests.helpers import eventually

pytestmark = pytest.mark.kafka

WAIT = 120
APP = "tests.e2e.observed_app:runtime"
TRACE_ID = uuid.uuid4().hex
CALLER_SPAN = uuid.uuid4().hex[:16]
CLIENT_SPAN = uuid.uuid4().hex[:16]


def _ready(port: int) -> bool:
    """The process's /readyz answers 200; False while its metrics server is not listening yet (the
    API can be ready before the engine and worker have opened theirs: a refused connection here
    failed this test now and then)."""
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def _metric(url: str, name: str, **labels: str) -> float:
    """The value of one sample on a /metrics page (0 when the series is not there yet)."""
    text = httpx.get(url, timeout=10).text
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$", line)
        if match is None or match.group(1) != name:
            continue
        have = ",".join(sorted((match.group(2) or "").split(","))) if match.group(2) else ""
        if have == wanted:
            return float(match.group(3))
    return 0.0


def _children(spans: list[ReceivedSpan], parent: ReceivedSpan, name: str | None = None) -> list[ReceivedSpan]:
    return [s for s in spans if s.parent_span_id == parent.span_id and (name is None or s.name == name)]


@pytest.mark.timeout(400)
def test_one_trace_holds_the_request_turns_activities_and_child_and_metrics_move(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = Settings.from_env(bootstrap_servers=kafka_bootstrap, partitions=2,
                                 topic_prefix=f"obs-{uuid.uuid4().hex[:8]}.")
    asyncio.run(ensure_topics(settings))
    receiver = OtlpReceiver().start()
    otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    marks = tmp_path / "marks"
    marks.mkdir()
    engine_port, worker_port = free_ports(2)  # two calls could return the same freed port
    logs = tmp_path / "logs"
    logs.mkdir()
    engine = Process("engine", settings, logs, app=APP, extra_env={
        **otel, "HEADRACE_METRICS_PORT": str(engine_port), "HEADRACE_LOG_FORMAT": "json"})
    worker = Process("worker", settings, logs, app=APP, extra_env={
        **otel, "HEADRACE_METRICS_PORT": str(worker_port), "HEADRACE_TEST_MARKS": str(marks)})
    api = ApiServer(settings, logs, env=otel).start()
    engine_metrics, worker_metrics = f"http://127.0.0.1:{engine_port}/metrics", f"http://127.0.0.1:{worker_port}/metrics"
    try:
        api.wait_ready()
        for port in (engine_port, worker_port):
            eventually(lambda p=port: _ready(p), timeout=WAIT, message=f"port {port} never ready")
        before = {
            "executions": _metric(engine_metrics, "dapr_runtime_workflow_execution_count_total",
                                  workflow_name="traced", status="success"),
            "turns": sum(_metric(engine_metrics, "headrace_engine_turns_total", partition=str(p)) for p in (0, 1)),
            "activities": _metric(worker_metrics, "dapr_runtime_workflow_activity_execution_count_total",
                                  activity_name="fails_once", status="failed"),
        }

        iid = f"traced-{uuid.uuid4().hex[:8]}"
        with httpx.Client(base_url=api.url, timeout=30) as http:
            started = http.post(f"/v1.0/workflows/dapr/traced/start?instanceID={iid}", json=5,
                                headers={"traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-01"})
            assert started.status_code == 202, started.text

            def completed() -> bool:
                body = http.get(f"/v1.0/workflows/dapr/{iid}").json()
                assert body["runtimeStatus"] not in ("FAILED", "TERMINATED"), body
                return body["runtimeStatus"] == "COMPLETED"

            eventually(completed, timeout=WAIT, message=f"{iid} never completed")
            assert http.get(f"/v1.0/workflows/dapr/{iid}").json()["properties"]["dapr.workflow.output"] == "22"
            api_metrics = http.get("/metrics").text

        # -- the trace ----------------------------------------------------------------------------
        def whole() -> bool:
            names = [s.name for s in receiver.trace(TRACE_ID)]
            return names.count("workflow traced") == 1 and names.count("workflow traced_child") == 1 \
                and names.count("activity double") == 2 and names.count("activity fails_once") == 2
        eventually(whole, timeout=60, message=f"spans of the trace: {[s.name for s in receiver.trace(TRACE_ID)]}")
        spans = receiver.trace(TRACE_ID)
        (request,) = [s for s in spans if s.parent_span_id == CALLER_SPAN]
        assert request.service == "headrace-api" and request.name.startswith("POST /v1.0/workflows/")
        assert request.name.endswith("/start") and request.attributes["http.response.status_code"] == 202
        (workflow,) = _children(spans, request, "workflow traced")
        assert workflow.service == "headrace-engine"
        assert workflow.attributes["headrace.instance_id"] == iid
        assert workflow.attributes["headrace.workflow"] == "traced" and not workflow.error
        turns = _children(spans, workflow, "turn traced")
        # Start, the first result, the failed attempt's result, the retry timer, the second
        # attempt's result, the child's result: one turn each.
        assert len(turns) == 6, [t.attributes.get("headrace.turn.input") for t in turns]
        assert all(t.attributes["headrace.instance_id"] == iid for t in turns)
        activities = [s for t in turns for s in _children(spans, t)]
        by_name = sorted(s.name for s in activities)
        assert by_name == ["activity double", "activity fails_once", "activity fails_once", "workflow traced_child"]
        attempts = [s for s in activities if s.name == "activity fails_once"]
        assert sorted(a.error for a in attempts) == [False, True]
        assert "the first attempt fails" in next(a for a in attempts if a.error).status_message
        assert all(a.service == "headrace-worker" for a in attempts)
        # Each result's turn links back to the attempt that produced it.
        linked = {link for t in turns for link in t.links}
        assert {a.span_id for a in attempts} <= linked
        (child,) = [s for s in activities if s.name == "workflow traced_child"]
        # Dapr's child ID: the fifth action (two attempts, the retry timer and one more activity before it).
        assert child.attributes["headrace.instance_id"] == f"{iid}:0005"
        child_turns = _children(spans, child, "turn traced_child")
        assert len(child_turns) == 2
        assert [s.name for t in child_turns for s in _children(spans, t)] == ["activity double"]
        # No span of this trace is written twice (none re-emitted on replay or retry).
        assert len({s.span_id for s in spans}) == len(spans)

        # -- metrics ------------------------------------------------------------------------------
        def moved() -> bool:
            return (_metric(engine_metrics, "dapr_runtime_workflow_execution_count_total",
                            workflow_name="traced", status="success") == before["executions"] + 1
                    and _metric(worker_metrics, "dapr_runtime_workflow_activity_execution_count_total",
                                activity_name="fails_once", status="failed") == before["activities"] + 1)
        eventually(moved, timeout=WAIT, message="the execution and activity counters did not move")
        turns_now = sum(_metric(engine_metrics, "headrace_engine_turns_total", partition=str(p)) for p in (0, 1))
        assert turns_now >= before["turns"] + 8
        assert _metric(engine_metrics, "dapr_runtime_workflow_scheduling_latency_count", workflow_name="traced") >= 1
        assert _metric(engine_metrics, "headrace_engine_timer_lateness_seconds_count") >= 1
        assert _metric(worker_metrics, "dapr_runtime_workflow_activity_execution_count_total",
                       activity_name="double", status="success") >= 2
        assert re.search(r'^dapr_runtime_workflow_operation_count_total\{operation="create_workflow",'
                         r'status="success"\} 1\.0$', api_metrics, re.MULTILINE)
        assert re.search(r'^dapr_runtime_workflow_operation_count_total\{operation="get_workflow",'
                         r'status="success"\} [1-9]', api_metrics, re.MULTILINE)
        # Every process counts the Kafka requests it sent: the engine's transactions, the worker's
        # results, the API's starts.
        assert _metric(engine_metrics, "headrace_kafka_requests_total", request="EndTxn") >= 1
        assert _metric(worker_metrics, "headrace_kafka_requests_total", request="Produce") >= 1
        assert re.search(r'^headrace_kafka_requests_total\{request="Produce"\} [1-9]', api_metrics, re.MULTILINE)

        # -- the Python client: the caller's active span is the run's parent -----------------------
        caller = trace.NonRecordingSpan(trace.SpanContext(
            int(TRACE_ID, 16), int(CLIENT_SPAN, 16), is_remote=False, trace_flags=trace.TraceFlags(1)))
        with DaprWorkflowClient(settings=settings) as client:
            with trace.use_span(caller):
                child_id = client.schedule_new_workflow("traced_child", input=1)
            done = client.wait_for_workflow_completion(child_id, timeout_in_seconds=WAIT)
            assert done is not None and done.serialized_output == "2"

        def client_run() -> list[ReceivedSpan]:
            return [s for s in receiver.trace(TRACE_ID) if s.parent_span_id == CLIENT_SPAN]
        eventually(client_run, timeout=60, message="no workflow span under the client's span")
        (run,) = client_run()
        assert run.name == "workflow traced_child" and run.attributes["headrace.instance_id"] == child_id
    finally:
        api.stop()
        worker.stop()
        engine.stop()
        receiver.stop()

    # -- JSON logs ------------------------------------------------------------------------------------
    # Every line the engine wrote is one JSON object (the launcher's own "=====" markers aside).
    engine_log = [line for line in next(logs.glob("engine-*.log")).read_text().splitlines()
                  if line.strip() and not line.startswith("=====")]
    lines = [json.loads(line) for line in engine_log]
    assert any(line["message"].startswith("engine ready") for line in lines)
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    assert any(line.get("partition") in (0, 1) for line in lines)


@pytest.mark.timeout(400)
def test_a_run_stays_one_trace_across_an_engine_restart(kafka_bootstrap: str, tmp_path: Path) -> None:
    """The run's span IDs come back from its status record's headers: the new engine's turns join the
    same workflow span, and nothing the first engine wrote is written again."""
    settings = Settings.from_env(bootstrap_servers=kafka_bootstrap, partitions=1,
                                 topic_prefix=f"obs-{uuid.uuid4().hex[:8]}.")
    asyncio.run(ensure_topics(settings))
    receiver = OtlpReceiver().start()
    otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    trace_id, caller = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    logs = tmp_path / "logs"
    logs.mkdir()
    engine = Process("engine", settings, logs, app=APP, extra_env=otel)
    worker = Process("worker", settings, logs, app=APP, extra_env=otel)
    api = ApiServer(settings, logs, env=otel).start()
    try:
        api.wait_ready()
        iid = f"wait-{uuid.uuid4().hex[:8]}"
        with httpx.Client(base_url=api.url, timeout=30) as http:
            started = http.post(f"/v1.0/workflows/dapr/traced_wait/start?instanceID={iid}", json=1,
                                headers={"traceparent": f"00-{trace_id}-{caller}-01"})
            assert started.status_code == 202, started.text

            def status() -> dict:
                return http.get(f"/v1.0/workflows/dapr/{iid}").json()

            eventually(lambda: status()["properties"].get("dapr.workflow.custom_status") == "waiting",
                       timeout=WAIT, message=f"{iid} never waited")
            # Both turns so far are committed, so their spans are out before the engine goes.
            eventually(lambda: [s.name for s in receiver.trace(trace_id)].count("turn traced_wait") == 2,
                       timeout=60, message="the first engine's turn spans never arrived")
            assert engine.stop()
            engine = Process("engine", settings, logs, app=APP, extra_env=otel)
            raised = http.post(f"/v1.0/workflows/dapr/{iid}/raiseEvent/go", json=3)
            assert raised.status_code == 202, raised.text
            eventually(lambda: status()["runtimeStatus"] == "COMPLETED", timeout=WAIT, message=f"{iid} never completed")

        def whole() -> bool:
            return [s.name for s in receiver.trace(trace_id)].count("workflow traced_wait") == 1
        eventually(whole, timeout=60, message="the workflow span never arrived")
        spans = receiver.trace(trace_id)
        (workflow,) = [s for s in spans if s.name == "workflow traced_wait"]
        (request,) = [s for s in spans if s.span_id == workflow.parent_span_id]
        assert request.parent_span_id == caller and request.name.endswith("/start")
        turns = _children(spans, workflow, "turn traced_wait")
        inputs = [t.attributes["headrace.turn.input"] for t in turns]
        # start, first result (before the restart); the event and the last result (after it)
        assert sorted(inputs) == ["ActivityResult", "ActivityResult", "RaiseEvent", "StartWorkflow"], inputs
        # The event's turn links to the API request that raised it (a trace of its own).
        (event_turn,) = [t for t in turns if t.attributes["headrace.turn.input"] == "RaiseEvent"]
        assert len(event_turn.links) == 1
        assert len({s.span_id for s in spans}) == len(spans)
    finally:
        api.stop()
        worker.stop()
        engine.stop()
        receiver.stop()
