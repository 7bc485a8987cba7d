"""Prometheus metrics of one API process: requests, latencies, commands produced, view lag.

Each app gets its own registry, so several apps in one process (tests) do not collide. The view's
lag is computed when scraped, from what the view's consumer already knows (no broker request).
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "ApiMetrics"]

# Fast routes answer in about a millisecond; a barrier or history read can take seconds.
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
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

    def observe(self, route: str, method: str, code: int, seconds: float) -> None:
        self.requests.labels(route, method, str(code)).inc()
        self.latency.labels(route, method).observe(seconds)

    def render(self, refresh: Callable[[], None] | None = None) -> bytes:
        if refresh is not None:
            refresh()
        return bytes(generate_latest(self.registry))
