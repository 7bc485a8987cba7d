"""Prometheus metrics of one API process: requests, latencies, commands produced, view lag.

Each app gets its own registry, so several apps in one process (tests) do not collide. The view's
lag is computed when scraped, from what the view's consumer already knows (no broker request).

Workflow operations are also counted under Dapr's names and labels
(`dapr_runtime_workflow_operation_count` / `_latency`, operation `create_workflow`, `get_workflow`,
`add_event` or `purge_workflow`, status `success` or `failed`, latency in milliseconds; "Workflow
metrics" in https://github.com/dapr/dapr/blob/master/docs/development/dapr-metrics.md), so a
dashboard made for daprd shows the API's share too.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from engine.runtime.telemetry import register_process_collectors

__all__ = ["CONTENT_TYPE_LATEST", "DAPR_OPERATIONS", "ApiMetrics", "dapr_operation"]

# Fast routes answer in about a millisecond; a barrier or history read can take seconds.
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Dapr's latency bounds in milliseconds (daprd's default latency distribution).
_DAPR_MS = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16, 20, 25, 30, 40, 50, 65, 80, 100, 130, 160, 200, 250, 300, 400,
            500, 650, 800, 1000, 2000, 5000, 10000, 20000, 50000, 100000)

#: Dapr's workflow operations, each with the route template suffix and method that perform it.
DAPR_OPERATIONS = {
    ("POST", "/{workflowName:segment}/start"): "create_workflow",
    ("GET", "/{instanceID:segment}"): "get_workflow",
    ("POST", "/raiseEvent/{eventName:segment}"): "add_event",
    ("POST", "/raiseEvent"): "add_event",
    ("POST", "/purge"): "purge_workflow",
}
_WORKFLOW_ROUTE = "/workflows/{component:segment}"


def dapr_operation(route: str, method: str) -> str | None:
    """Dapr's name for the workflow operation a route template and method perform, if any."""
    if _WORKFLOW_ROUTE not in route:
        return None
    for (verb, suffix), operation in DAPR_OPERATIONS.items():
        if method == verb and route.endswith(suffix):
            return operation
    return None


#: The children of `requests`, `latency` and (for a Dapr workflow operation) Dapr's two metrics
#: that one request's labels select.
_Series = tuple[Counter, Histogram, Counter | None, Histogram | None]


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # CPU, memory, file descriptors and Kafka requests, as the engine's and worker's /metrics.
        register_process_collectors(self.registry)
        self.requests = Counter(
            "headrace_api_requests",
            "HTTP requests answered, by route template, method and status code",
            ("route", "method", "code"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "headrace_api_request_duration_seconds",
            "Time to answer an HTTP request, by route template and method",
            ("route", "method"),
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.commands = Counter(
            "headrace_api_commands_produced",
            "Commands produced to the commands topic, by type",
            ("type",),
            registry=self.registry,
        )
        self.late_commands = Counter(
            "headrace_api_commands_answered_unapplied",
            "Commands answered 202 before the view showed their effect (the wait ran out), by type",
            ("type",),
            registry=self.registry,
        )
        self.view_lag = Gauge(
            "headrace_api_view_lag_records",
            "Status records the view has not read yet (all partitions)",
            registry=self.registry,
        )
        self.view_instances = Gauge(
            "headrace_api_view_instances",
            "Instances in this replica's status view",
            registry=self.registry,
        )
        self.kafka_reachable = Gauge(
            "headrace_api_kafka_reachable",
            "1 while the Kafka probe succeeds, else 0",
            registry=self.registry,
        )

        self._series: dict[tuple[str, str, int], _Series] = {}
        self.dapr_operations = Counter(
            "dapr_runtime_workflow_operation_count",
            "The number of successful/failed workflow operation requests (Dapr's name and labels)",
            ("operation", "status"),
            registry=self.registry,
        )
        self.dapr_operation_latency = Histogram(
            "dapr_runtime_workflow_operation_latency",
            "The latencies of responses for workflow operation requests, in milliseconds (Dapr's name and labels)",
            ("operation", "status"),
            buckets=_DAPR_MS,
            registry=self.registry,
        )

    def observe(self, route: str, method: str, code: int, seconds: float) -> None:
        series = self._series.get((route, method, code))
        if series is None:
            series = self._series[(route, method, code)] = self._series_of(route, method, code)
        requests, latency, operations, operation_latency = series
        requests.inc()
        latency.observe(seconds)
        if operations is not None and operation_latency is not None:
            operations.inc()
            operation_latency.observe(seconds * 1000)

    def _series_of(self, route: str, method: str, code: int) -> _Series:
        """The children one request's labels pick, looked up once per label set: `labels()` takes
        a lock and builds a key on every call, four times per request. Bounded like the series
        themselves (route templates, known methods, status codes)."""
        operation = dapr_operation(route, method)
        status = "success" if code < 400 else "failed"
        return (
            self.requests.labels(route, method, str(code)),
            self.latency.labels(route, method),
            None if operation is None else self.dapr_operations.labels(operation, status),
            None if operation is None else self.dapr_operation_latency.labels(operation, status),
        )

    def render(self, refresh: Callable[[], None] | None = None) -> bytes:
        if refresh is not None:
            refresh()
        return bytes(generate_latest(self.registry))
