"""Traces, metrics and JSON logs of the engine, worker and API, without Kafka (issue 18)."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from api.metrics import ApiMetrics, dapr_operation
from engine import tracing
from engine.core import commands as cmd
from engine.core.commands import ActivityWorkItem
from engine.core.state import InstanceState
from engine.core.values import FailureDetails, RuntimeStatus
from engine.runtime import logs
from engine.runtime.telemetry import EngineMetrics, TurnObserver, WorkerMetrics
from engine.tracing import PARENT_SPAN_HEADER, PartitionTracer, TraceContext

API_SPAN = TraceContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331)
T0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing.install(exporter)
    try:
        yield exporter
    finally:
        tracing.shutdown()


def _state(status: RuntimeStatus, run_id: str = "c1", failure: FailureDetails | None = None) -> InstanceState:
    done = T0 + timedelta(seconds=2) if status.is_terminal else None
    return InstanceState(instance_id="i-1", name="order", status=status, execution_id="e1", run_id=run_id,
                         created_at=T0, last_updated_at=done or T0, completed_at=done, failure=failure)


def _start(command_id: str = "c1") -> cmd.StartWorkflow:
    return cmd.StartWorkflow(instance_id="i-1", command_id=command_id, name="order")


def _result() -> cmd.ActivityResult:
    return cmd.ActivityResult(instance_id="i-1", execution_id="e1", task_id=0, result="1")


# -- the W3C header -----------------------------------------------------------------------------------


def test_traceparent_round_trips_and_bad_ones_are_refused() -> None:
    header = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    parsed = TraceContext.parse(header, "congo=t61rcWkgMzE")
    assert parsed == TraceContext(API_SPAN.trace_id, API_SPAN.span_id, True, "congo=t61rcWkgMzE")
    assert parsed.traceparent == header
    assert parsed.headers() == [("traceparent", header.encode()), ("tracestate", b"congo=t61rcWkgMzE")]
    assert TraceContext.from_headers([("x", b"1"), ("traceparent", header.encode())]) == parsed.__class__(
        API_SPAN.trace_id, API_SPAN.span_id, True, "")
    for bad in ("", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331", "ff-" + header[3:],
                "00-" + "0" * 32 + "-b7ad6b7169203331-01", "00-0af7651916cd43dd8448eb211c80319c-" + "0" * 16 + "-01",
                "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01", "00-zz" + header[5:], header + "-x"):
        assert TraceContext.parse(bad) is None, bad
    assert TraceContext.parse(b"\xff\xfe") is None
    assert TraceContext.from_headers(None) is None


def test_tracing_is_off_unless_the_environment_asks() -> None:
    assert not tracing.enabled()
    assert not tracing.configure_from_env("t", {})
    assert not tracing.configure_from_env("t", {"OTEL_TRACES_EXPORTER": "none"})
    assert not tracing.configure_from_env("t", {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1",
                                                "OTEL_SDK_DISABLED": "true"})
    assert not tracing.enabled()
    assert tracing.headers_for_current() is None
    # The engine's observer then holds no tracer at all: the hot path pays one `is None`.
    observer = TurnObserver(EngineMetrics(), 0)
    assert observer.tracer is None
    observer.begin(_start(), None, [("traceparent", API_SPAN.traceparent.encode())])
    assert observer.headers() is None and observer.status_headers(_state(RuntimeStatus.RUNNING)) is None


def test_otlp_exporter_is_set_up_from_the_standard_variables() -> None:
    try:
        assert tracing.configure_from_env("t", {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"})
        assert tracing.enabled()
    finally:
        tracing.shutdown()
    assert not tracing.enabled()


# -- the engine's spans -------------------------------------------------------------------------------


def test_a_run_is_one_trace_under_the_start_command(spans: InMemorySpanExporter) -> None:
    tracer = PartitionTracer(3)
    start_headers = API_SPAN.headers()
    tracer.begin(_start(), start_headers)
    running = _state(RuntimeStatus.RUNNING)
    status = tracer.status_headers(running)
    assert status is not None
    run = TraceContext.from_headers(status)
    assert run is not None and run.trace_id == API_SPAN.trace_id and run.span_id != API_SPAN.span_id
    assert (PARENT_SPAN_HEADER, f"{API_SPAN.span_id:016x}".encode()) in status
    task_headers = tracer.headers()
    turn1 = TraceContext.from_headers(task_headers)
    assert turn1 is not None and turn1.trace_id == API_SPAN.trace_id
    tracer.end(running, changed=True)
    assert spans.get_finished_spans() == ()  # nothing before the transaction commits
    tracer.committed()

    # The worker's attempt, child of the turn that scheduled it; its context comes back on the result.
    item = ActivityWorkItem(instance_id="i-1", execution_id="e1", task_id=0, name="charge")
    attempt = tracing.ActivitySpan(item, task_headers, 3)
    attempt.end(FailureDetails(error_type="ValueError", message="card declined", stack_trace="Traceback..."))
    tracer.begin(_result(), attempt.result_headers())
    tracer.end(_state(RuntimeStatus.COMPLETED), changed=True)
    tracer.committed()
    assert tracer.runs == {}

    by_name: dict[str, list] = {}
    for span in spans.get_finished_spans():
        by_name.setdefault(span.name, []).append(span)
    (workflow,) = by_name["workflow order"]
    turns = by_name["turn order"]
    (activity,) = by_name["activity charge"]
    assert {s.context.trace_id for s in spans.get_finished_spans()} == {API_SPAN.trace_id}
    assert workflow.parent.span_id == API_SPAN.span_id and workflow.kind is SpanKind.SERVER
    assert workflow.context.span_id == run.span_id
    assert workflow.attributes["headrace.instance_id"] == "i-1" and workflow.attributes["headrace.workflow"] == "order"
    assert workflow.start_time == int(T0.timestamp() * 1e9)
    assert [t.parent.span_id for t in turns] == [run.span_id, run.span_id]
    assert turns[0].context.span_id == turn1.span_id
    assert activity.parent.span_id == turn1.span_id
    assert activity.status.status_code is StatusCode.ERROR and "card declined" in activity.status.description
    assert activity.events[0].name == "exception"
    assert activity.events[0].attributes["exception.type"] == "ValueError"
    # The result's turn links back to the attempt that produced it.
    assert [link.context.span_id for link in turns[1].links] == [activity.context.span_id]


def test_results_applied_in_one_turn_are_each_linked(spans: InMemorySpanExporter) -> None:
    """A fan-in's results taken in one turn (`PartitionOwner._apply_results`): the turn's span links
    every attempt that produced one, not only the first."""
    tracer = PartitionTracer(0)
    tracer.begin(_start(), API_SPAN.headers())
    tracer.end(_state(RuntimeStatus.RUNNING), changed=True)
    task_headers = tracer.headers()
    tracer.committed()
    attempts = []
    for task_id in range(3):
        attempt = tracing.ActivitySpan(ActivityWorkItem(instance_id="i-1", execution_id="e1", task_id=task_id,
                                                        name="charge"), task_headers, 0)
        attempt.end(None)
        attempts.append(attempt)
    tracer.begin(_result(), attempts[0].result_headers())
    tracer.link(attempts[1].result_headers())
    tracer.link(attempts[2].result_headers())
    tracer.link(None)  # a result without a context adds nothing
    tracer.end(_state(RuntimeStatus.COMPLETED), changed=True)
    tracer.committed()
    activities = sorted((s for s in spans.get_finished_spans() if s.name == "activity charge"),
                        key=lambda s: s.attributes["headrace.task_id"])
    assert len(activities) == 3
    (_, turn) = [s for s in spans.get_finished_spans() if s.name == "turn order"]
    assert [link.context.span_id for link in turn.links] == [a.context.span_id for a in activities]


def test_a_failed_run_has_an_error_status(spans: InMemorySpanExporter) -> None:
    tracer = PartitionTracer(0)
    tracer.begin(_start(), None)  # no context: a new trace
    tracer.end(_state(RuntimeStatus.FAILED, failure=FailureDetails(error_type="EngineError", message="boom")),
               changed=True)
    tracer.committed()
    (workflow,) = [s for s in spans.get_finished_spans() if s.name == "workflow order"]
    assert workflow.parent is None
    assert workflow.status.status_code is StatusCode.ERROR and "boom" in workflow.status.description


def test_spans_of_a_transaction_that_did_not_commit_are_never_written(spans: InMemorySpanExporter) -> None:
    tracer = PartitionTracer(0)
    tracer.begin(_start(), API_SPAN.headers())
    tracer.end(_state(RuntimeStatus.COMPLETED), changed=True)
    tracer.discard()
    tracer.committed()
    assert spans.get_finished_spans() == ()


def test_a_refused_start_keeps_the_running_run(spans: InMemorySpanExporter) -> None:
    tracer = PartitionTracer(0)
    tracer.begin(_start("c1"), API_SPAN.headers())
    tracer.end(_state(RuntimeStatus.RUNNING), changed=True)
    run = tracer.runs["i-1"]
    other = TraceContext(0x1234, 0x5678)
    tracer.begin(_start("c2"), other.headers())
    assert tracer.status_headers(_state(RuntimeStatus.RUNNING, run_id="c1")) == run.status_headers()
    tracer.end(_state(RuntimeStatus.RUNNING, run_id="c1"), changed=False)
    assert tracer.runs["i-1"] == run


def test_a_run_survives_a_restore_through_its_status_headers(spans: InMemorySpanExporter) -> None:
    first = PartitionTracer(0)
    first.begin(_start(), API_SPAN.headers())
    running = _state(RuntimeStatus.RUNNING)
    status = first.status_headers(running)
    first.end(running, changed=True)

    again = PartitionTracer(0)  # a new owner of the partition, after a restart
    again.restored(running, status)
    again.restored(_state(RuntimeStatus.COMPLETED), status)  # finished runs are not kept
    firing = cmd.TimerFiring(instance_id="i-1", execution_id="e1", timer_id=1, fire_at=T0)
    again.begin(firing, None)
    again.end(_state(RuntimeStatus.COMPLETED), changed=True)
    again.committed()
    workflow = next(s for s in spans.get_finished_spans() if s.name == "workflow order")
    assert workflow.context.span_id == first.runs["i-1"].span.span_id
    assert workflow.parent.span_id == API_SPAN.span_id


def test_unsampled_contexts_write_nothing(spans: InMemorySpanExporter) -> None:
    tracer = PartitionTracer(0)
    tracer.begin(_start(), TraceContext(API_SPAN.trace_id, API_SPAN.span_id, sampled=False).headers())
    tracer.end(_state(RuntimeStatus.COMPLETED), changed=True)
    tracer.committed()
    assert spans.get_finished_spans() == ()


# -- metrics ------------------------------------------------------------------------------------------


def _sample(registry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_turns_count_executions_and_latencies_under_dapr_names_once_committed() -> None:
    metrics = EngineMetrics(workflow_names={"order"})
    observer = TurnObserver(metrics, 1)
    requested = int((T0 - timedelta(milliseconds=40)).timestamp() * 1000)
    observer.begin(_start(), None, None, requested)
    observer.end(_state(RuntimeStatus.RUNNING), changed=True, now=T0)
    observer.discard()  # the transaction failed: nothing counted
    assert _sample(metrics.registry, "dapr_runtime_workflow_scheduling_latency_count", workflow_name="order") == 0
    observer.begin(_start(), None, None, requested)
    observer.end(_state(RuntimeStatus.RUNNING), changed=True, now=T0)
    firing = cmd.TimerFiring(instance_id="i-1", execution_id="e1", timer_id=1, fire_at=T0)
    observer.begin(firing, _state(RuntimeStatus.RUNNING), now=T0 + timedelta(seconds=3))
    observer.end(_state(RuntimeStatus.FAILED), changed=True)
    observer.committed()
    registry = metrics.registry
    assert _sample(registry, "dapr_runtime_workflow_scheduling_latency_sum", workflow_name="order") == 40.0
    assert _sample(registry, "dapr_runtime_workflow_execution_count_total", workflow_name="order",
                   status="failed") == 1
    assert _sample(registry, "dapr_runtime_workflow_execution_latency_sum", workflow_name="order",
                   status="failed") == 2000.0
    assert _sample(registry, "headrace_engine_timer_lateness_seconds_sum") == 3.0
    # Names nobody registered share one label, so a start cannot add series.
    other = _state(RuntimeStatus.COMPLETED)
    observer.begin(cmd.StartWorkflow(instance_id="i-1", command_id="c1", name="x"), None)
    observer.end(dataclasses.replace(other, name="x"), changed=True)
    observer.committed()
    assert _sample(registry, "dapr_runtime_workflow_execution_count_total", workflow_name="unregistered",
                   status="success") == 1


def test_without_a_registry_only_the_first_names_get_labels() -> None:
    metrics = EngineMetrics()
    labels = {metrics.workflow_label(f"w{i}") for i in range(150)}
    assert len(labels) == 101 and "unregistered" in labels
    assert metrics.workflow_label("w0") == "w0"


def test_worker_counts_activity_executions_under_dapr_names() -> None:
    metrics = WorkerMetrics()
    metrics.run("charge", "completed", 0.25)
    metrics.run("charge", "failed", 0.5)
    metrics.run("-", "skipped")
    registry = metrics.registry
    assert _sample(registry, "dapr_runtime_workflow_activity_execution_count_total", activity_name="charge",
                   status="success") == 1
    assert _sample(registry, "dapr_runtime_workflow_activity_execution_latency_sum", activity_name="charge",
                   status="failed") == 500.0
    assert _sample(registry, "dapr_runtime_workflow_activity_execution_count_total", activity_name="-",
                   status="success") == 0


def test_api_counts_dapr_workflow_operations() -> None:
    base = "/v1.0/workflows/{component:segment}"
    assert dapr_operation(f"{base}/{{workflowName:segment}}/start", "POST") == "create_workflow"
    assert dapr_operation(f"{base}/{{instanceID:segment}}", "GET") == "get_workflow"
    assert dapr_operation(f"{base}/{{instanceID:segment}}/history", "GET") is None
    assert dapr_operation(f"{base}/{{instanceID:segment}}/raiseEvent/{{eventName:segment}}", "POST") == "add_event"
    assert dapr_operation(f"{base}/{{instanceID:segment}}/purge", "POST") == "purge_workflow"
    assert dapr_operation(f"{base}/{{instanceID:segment}}/terminate", "POST") is None
    assert dapr_operation("<unmatched>", "GET") is None
    metrics = ApiMetrics()
    metrics.observe(f"{base}/{{workflowName:segment}}/start", "POST", 202, 0.004)
    metrics.observe(f"{base}/{{instanceID:segment}}", "GET", 404, 0.001)
    assert _sample(metrics.registry, "dapr_runtime_workflow_operation_count_total", operation="create_workflow",
                   status="success") == 1
    assert _sample(metrics.registry, "dapr_runtime_workflow_operation_count_total", operation="get_workflow",
                   status="failed") == 1
    assert _sample(metrics.registry, "dapr_runtime_workflow_operation_latency_sum", operation="create_workflow",
                   status="success") == 4.0


# -- logs ---------------------------------------------------------------------------------------------


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)
        logs.set_context()


def test_json_logs_carry_the_instance_workflow_and_partition(restore_logging: None) -> None:
    stream = io.StringIO()
    logs.configure_logging("info", stream=stream, log_format="json")
    log = logging.getLogger("headrace.test")
    logs.set_context("order-43", "order_approval", 5)
    log.info("turn applied in %d ms", 3, extra={"attempt": 2})
    logs.set_context()
    try:
        raise ValueError("broker away")
    except ValueError:
        log.exception("commit failed")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "turn applied in 3 ms" and first["level"] == "INFO"
    assert first["logger"] == "headrace.test" and first["time"].endswith("Z")
    assert (first["instance_id"], first["workflow"], first["partition"], first["attempt"]) == (
        "order-43", "order_approval", 5, 2)
    assert "instance_id" not in second
    assert second["error"] == "ValueError: broker away" and "Traceback" in second["traceback"]


def test_log_format_comes_from_the_environment_and_is_checked(restore_logging: None,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setenv("HEADRACE_LOG_FORMAT", "json")
    logs.configure_logging("info", stream=stream)
    logging.getLogger("x").warning("hello")
    assert json.loads(stream.getvalue())["message"] == "hello"
    with pytest.raises(ValueError, match="unknown log format"):
        logs.configure_logging("info", stream=stream, log_format="xml")


def test_json_logs_rate_limit_repeats_too(restore_logging: None) -> None:
    stream = io.StringIO()
    logs.configure_logging("info", stream=stream, log_format="json", interval=3600)
    log = logging.getLogger("aiokafka.conn")
    for _ in range(50):
        log.error("Unable connect to node with id %s", 1)
    assert len(stream.getvalue().splitlines()) == 1


# -- the REST API's server span ----------------------------------------------------------------------


def _traced_app():
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from api.middleware import TracingMiddleware

    async def start(request: Request) -> JSONResponse:
        # What the gateway puts on the command record: the request span's context.
        headers = tracing.headers_for_current()
        return JSONResponse({"traceparent": dict(headers or [])["traceparent"].decode() if headers else None},
                            status_code=202)

    async def metrics(request: Request) -> JSONResponse:
        return JSONResponse({"traced": tracing.headers_for_current() is not None})

    return Starlette(routes=[Route("/v1.0/workflows/{component}/{name}/start", start, methods=["POST"]),
                             Route("/metrics", metrics)], middleware=[Middleware(TracingMiddleware)])


def _client() -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=_traced_app()), base_url="http://api")


async def test_the_api_continues_the_callers_trace_and_hands_it_to_the_command(spans: InMemorySpanExporter) -> None:
    async with _client() as client:
        reply = await client.post("/v1.0/workflows/dapr/order/start", headers={"traceparent": API_SPAN.traceparent})
        assert reply.status_code == 202
        assert (await client.get("/metrics")).json() == {"traced": False}
        fresh = await client.post("/v1.0/workflows/dapr/order/start")
    (server, other) = spans.get_finished_spans()
    assert server.name == "POST /v1.0/workflows/{component}/{name}/start" and server.kind is SpanKind.SERVER
    assert server.parent.span_id == API_SPAN.span_id and server.context.trace_id == API_SPAN.trace_id
    assert server.attributes["http.response.status_code"] == 202
    assert server.attributes["http.route"] == "/v1.0/workflows/{component}/{name}/start"
    command = TraceContext.parse(reply.json()["traceparent"])
    assert command == TraceContext(API_SPAN.trace_id, server.context.span_id)
    # Without a traceparent the request starts a trace of its own.
    assert other.parent is None and TraceContext.parse(fresh.json()["traceparent"]).trace_id == other.context.trace_id


async def test_the_api_middleware_passes_requests_through_when_tracing_is_off() -> None:
    async with _client() as client:
        reply = await client.post("/v1.0/workflows/dapr/order/start", headers={"traceparent": API_SPAN.traceparent})
    assert reply.status_code == 202 and reply.json() == {"traceparent": None}


def test_a_program_with_its_own_opentelemetry_hands_its_span_to_the_clients_loop_thread() -> None:
    """The client produces on a private loop thread (`run_coroutine_threadsafe`): the caller's
    active span must reach the record's headers there, with Headrace's own tracing off."""
    import asyncio
    import threading

    from opentelemetry import trace

    assert not tracing.enabled()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def produce() -> list[tuple[str, bytes]] | None:
        return tracing.headers_for_current()  # what engine.client's send puts on the command

    try:
        span = trace.NonRecordingSpan(trace.SpanContext(API_SPAN.trace_id, API_SPAN.span_id, is_remote=False,
                                                        trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED)))
        with trace.use_span(span):
            inside = asyncio.run_coroutine_threadsafe(produce(), loop).result(10)
        outside = asyncio.run_coroutine_threadsafe(produce(), loop).result(10)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
    assert inside == API_SPAN.headers()
    assert outside is None


def test_a_run_the_engine_fails_itself_ends_its_span_and_counts(spans: InMemorySpanExporter) -> None:
    metrics = EngineMetrics(workflow_names={"order"})
    observer = TurnObserver(metrics, 0)
    observer.begin(_start(), None, API_SPAN.headers())
    observer.end(_state(RuntimeStatus.RUNNING), changed=True)
    observer.committed()
    failed = _state(RuntimeStatus.FAILED, failure=FailureDetails(error_type="EngineError", message="set aside"))
    observer.failed_by_engine(_state(RuntimeStatus.RUNNING), failed)
    observer.failed_by_engine(failed, failed)  # already finished: nothing more
    observer.committed()
    (workflow,) = [s for s in spans.get_finished_spans() if s.name == "workflow order"]
    assert workflow.parent.span_id == API_SPAN.span_id
    assert workflow.status.status_code is StatusCode.ERROR and "set aside" in workflow.status.description
    assert _sample(metrics.registry, "dapr_runtime_workflow_execution_count_total", workflow_name="order",
                   status="failed") == 1
