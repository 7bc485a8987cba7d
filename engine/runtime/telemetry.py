"""Prometheus metrics and health endpoints of the engine and worker processes.

`headrace engine|worker|run --metrics-port N` (or HEADRACE_METRICS_PORT) serves, on a thread of its
own so a blocked event loop cannot silence it:

- `GET /metrics`: Prometheus text: the roles' metrics below plus the process collector (CPU, memory).
- `GET /healthz`: liveness: 200 while the event loop answers within `LIVENESS_TIMEOUT_S`, else 503.
- `GET /readyz` (also `/health`): 200 `{"status": "ok", "problems": []}`, or 503 with every problem
  as `{"role", "partition", "reason"}` (partition null for the whole process): a role that has not
  joined its consumer group yet, or whatever its `problems()` hook reports (a stalled partition).

Every label set is bounded: partitions are numbers below `MAX_PARTITION_LABEL` (Kafka assigns them),
outcomes and dead-letter kinds are fixed tuples (an unknown kind is counted as "other"), and
activity and workflow names are the registered ones (anything else is "unregistered").

Where Dapr has a workflow metric, the same name, labels and unit (milliseconds) are used, so a
dashboard built for daprd reads Headrace too; Dapr's list: "Workflow metrics" in
https://github.com/dapr/dapr/blob/master/docs/development/dapr-metrics.md (`app_id` and `namespace`,
which daprd adds, are left to Prometheus' target labels). The engine counts executions, their
latency and scheduling latency; the worker counts activity executions and their latency; the REST
API counts workflow operations (api/metrics.py).

Hooks run on the event loop of the process (scheduled from the HTTP thread), so they may read
loop-owned state, such as consumers and partition owners, without locks.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import http.server
import logging
import threading
import time
from collections.abc import Callable, Container, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from .. import tracing
from ..core import commands as cmd
from ..core.values import RuntimeStatus
from . import kafka_protocol, logs

if TYPE_CHECKING:
    from ..core.state import InstanceState

__all__ = [
    "DEAD_LETTER_KINDS",
    "OBSERVE_INTERVAL_S",
    "RUN_OUTCOMES",
    "EngineMetrics",
    "GaugeRefresh",
    "KafkaRequestsCollector",
    "Problem",
    "TelemetryServer",
    "TurnObserver",
    "WorkerMetrics",
    "partition_offsets",
    "register_process_collectors",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Partition numbers at or above this are labelled "other" (a guard: Kafka assigns the numbers).
MAX_PARTITION_LABEL = 10_000
#: Seconds between refreshes of the lag and holding gauges of an engine or worker (and of an idle
#: partition's progress): cheap, but not free after every poll (2 % of an engine's CPU at
#: `constant-30`, issue 17), and a gauge is scraped every few seconds anyway.
OBSERVE_INTERVAL_S = 1.0
#: Seconds the event loop may take to answer before liveness reports it stuck.
LIVENESS_TIMEOUT_S = 10.0
#: Seconds the health hooks may take (they run on the event loop) before readiness gives up.
READINESS_TIMEOUT_S = 5.0

#: How a work item ended in the worker.
RUN_OUTCOMES = ("completed", "failed", "too_large", "skipped", "abandoned", "handed_on")
#: Why the engine set an input aside. Anything else passed to `EngineMetrics.dead_letter` is "other".
DEAD_LETTER_KINDS = ("invalid_record", "rejected", "wrong_partition", "poisoned", "too_large", "other")

# Turns and transactions take milliseconds; restores of big partitions take seconds.
_FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_SLOW = (0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
# Dapr's workflow latencies are in milliseconds, with about these bounds (daprd's default latency
# distribution, github.com/dapr/dapr pkg/diagnostics/utils).
_DAPR_MS = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16, 20, 25, 30, 40, 50, 65, 80, 100, 130, 160, 200, 250, 300, 400, 500,
            650, 800, 1000, 2000, 5000, 10000, 20000, 50000, 100000)
#: Timers fire within a poll (100 ms) of coming due on a running engine; late ones show an outage.
_LATE = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)
#: Dapr's execution statuses, by Headrace's terminal status.
DAPR_EXECUTION_STATUS = {RuntimeStatus.COMPLETED: "success", RuntimeStatus.FAILED: "failed",
                         RuntimeStatus.TERMINATED: "terminated", RuntimeStatus.CANCELED: "terminated"}
#: Names beyond the registered ones get this label (a start may name anything).
UNREGISTERED = "unregistered"
#: Without a registry to tell, the first this many names seen get a label of their own.
MAX_NAME_LABELS = 100


class GaugeRefresh:
    """When an engine's or worker's lag and holding gauges are due again: at most once every
    `interval_s` (`OBSERVE_INTERVAL_S`); the first ask is due."""

    def __init__(self, interval_s: float = OBSERVE_INTERVAL_S) -> None:
        self._interval_s = interval_s
        self._last: float | None = None

    def due(self) -> bool:
        now = time.monotonic()
        if self._last is not None and now - self._last < self._interval_s:
            return False
        self._last = now
        return True


class Problem(NamedTuple):
    """Why a role is not healthy; `partition` is None when the whole process is concerned."""

    partition: int | None
    reason: str


def _partition(number: int) -> str:
    return str(number) if 0 <= number < MAX_PARTITION_LABEL else "other"


def partition_offsets(consumer: AIOKafkaConsumer, tp: TopicPartition) -> tuple[int, int] | None:
    """(position, end) of an assigned partition once both are known, without waiting.

    `end` is the last stable offset (what a read_committed consumer can reach). aiokafka's public
    `position()` waits for a position and `last_stable_offset()` asserts; metrics and health must
    do neither, so this reads the same state directly (and says None if aiokafka changes it).
    """
    try:
        state = consumer._subscription.subscription.assignment.state_value(tp)
        if state is None or not state.has_valid_position or state.lso is None or state.lso < 0:
            return None
        return int(state.position), int(state.lso)
    except AttributeError:
        return None


class _Stalls:
    """Per partition: input waiting and when progress was last seen, to tell idle from stuck."""

    def __init__(self) -> None:
        self.waiting: dict[int, int] = {}
        self.progress_at: dict[int, float] = {}

    def lag(self, partition: int, waiting: int) -> None:
        self.waiting[partition] = waiting
        # A partition first seen with input waiting has had no chance to progress yet.
        self.progress_at.setdefault(partition, time.monotonic())

    def progress(self, partition: int) -> None:
        self.progress_at[partition] = time.monotonic()

    def forget(self, partition: int) -> None:
        self.waiting.pop(partition, None)
        self.progress_at.pop(partition, None)

    def stalled(self, threshold_s: float, detail: str = "") -> list[Problem]:
        now = time.monotonic()
        found = []
        for partition, waiting in sorted(self.waiting.items()):
            idle = now - self.progress_at.get(partition, now)
            if waiting > 0 and idle >= threshold_s:
                found.append(Problem(partition, f"{waiting} record(s) waiting and no progress for {idle:.0f} s"
                                                f"{detail}"))
        return found


@dataclass(frozen=True, slots=True)
class _RunSeries:
    """The series one (activity, outcome) of `WorkerMetrics.run` counts in."""

    runs: Counter
    dapr_count: Counter | None
    dapr_latency: Histogram | None


class WorkerMetrics:
    """What an activity worker reports; `ActivityWorker` calls these itself."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.stalls = _Stalls()
        self.runs = Counter("headrace_worker_activity_runs", "Work items ended, by activity and outcome",
                            ("activity", "outcome"), registry=self.registry)
        self.duration = Histogram("headrace_worker_activity_duration_seconds",
                                  "Time from the start of an activity to its result being written",
                                  buckets=_SLOW, registry=self.registry)
        self.running = Gauge("headrace_worker_activities_running", "Activities running now",
                             registry=self.registry)
        self.lag = Gauge("headrace_worker_input_lag_records",
                         "Offsets of an assigned task partition not yet committed (running or not fetched)",
                         ("partition",), registry=self.registry)
        self.dead_letters = Counter("headrace_worker_dead_letters", "Work items set aside, by reason",
                                    ("reason",), registry=self.registry)
        self.last_progress = Gauge("headrace_worker_last_progress_timestamp_seconds",
                                   "Unix time an item of the partition last started, finished or was skipped",
                                   ("partition",), registry=self.registry)
        self.metadata_truncated = Counter(
            "headrace_worker_commit_metadata_truncated",
            "Commits whose list of finished offsets did not fit the offset metadata (those may run again)",
            registry=self.registry)
        self.dead_letters.labels("invalid_work_item")
        self.dapr_activity_count = Counter(
            "dapr_runtime_workflow_activity_execution_count",
            "The number of successful/failed activity executions (Dapr's name and labels)",
            ("activity_name", "status"), registry=self.registry)
        self.dapr_activity_latency = Histogram(
            "dapr_runtime_workflow_activity_execution_latency",
            "The total time taken to run an activity to completion, in milliseconds (Dapr's name and labels)",
            ("activity_name", "status"), buckets=_DAPR_MS, registry=self.registry)
        self._series: dict[tuple[str, str], _RunSeries] = {}
        self._progress: dict[int, Gauge] = {}

    def run(self, activity: str, outcome: str, seconds: float | None = None) -> None:
        """One work item ended; `activity` is a registered name, "unregistered" or "-" (skipped)."""
        outcome = outcome if outcome in RUN_OUTCOMES else "failed"
        # The labelled series of each (activity, outcome), looked up once: `labels()` on every item
        # was 3% of a worker's CPU. Bounded: activity names are registered ones or placeholders.
        series = self._series.get((activity, outcome))
        if series is None:
            status = "success" if outcome == "completed" else "failed"
            dapr = outcome in ("completed", "failed", "too_large")
            series = self._series[(activity, outcome)] = _RunSeries(
                self.runs.labels(activity, outcome),
                self.dapr_activity_count.labels(activity, status) if dapr else None,
                self.dapr_activity_latency.labels(activity, status) if dapr else None)
        series.runs.inc()
        if seconds is not None:
            self.duration.observe(seconds)
            if series.dapr_count is not None and series.dapr_latency is not None:
                series.dapr_count.inc()
                series.dapr_latency.observe(seconds * 1000)

    def progress(self, partition: int) -> None:
        self.stalls.progress(partition)
        gauge = self._progress.get(partition)
        if gauge is None:
            gauge = self._progress[partition] = self.last_progress.labels(_partition(partition))
        gauge.set(time.time())

    def input_lag(self, partition: int, offsets: int, waiting: int) -> None:
        """`offsets` uncommitted in all; `waiting` of them not fetched yet (what a stall is judged by)."""
        self.lag.labels(_partition(partition)).set(offsets)
        self.stalls.lag(partition, waiting)

    def forget(self, partition: int) -> None:
        """The partition went to another worker: drop its series so they do not linger."""
        self.stalls.forget(partition)
        self._progress.pop(partition, None)
        for gauge in (self.lag, self.last_progress):
            with contextlib.suppress(KeyError):
                gauge.remove(_partition(partition))


class EngineMetrics:
    """What an engine reports. The engine creates one (`Engine.metrics`) and calls it as follows.

    - `input_lag(p, records)`: records waiting on input partition p (commands + results), every `OBSERVE_INTERVAL_S`.
    - `turns(p, n)`: n instance turns applied on p (one per input applied).
    - `transaction(p, seconds, committed)`: one transaction of p ended (committed or aborted).
    - `restore(p, seconds)`: p was restored (claimed, or rebuilt after a failed transaction).
    - `dead_letter(kind)`: an input was set aside; kind is one of DEAD_LETTER_KINDS.
    - `timers_pending(p, n)`: timers held by p's owner now.
    - `waiting_for_code(p, n)`: instances of p that wait for workflow code this engine lacks.
    - `progress(p)`: p applied input (or fired timers); feeds the last-progress gauge and `stalled()`.
    - `released(p)`: p went to another engine: its series are removed.
    - `stalled(threshold_s)`: problems for partitions with input waiting and no progress for that long.
    - per turn, through a partition's `TurnObserver`: executions ended and their latency, scheduling
      latency, timer lateness.

    `workflow_names`: the registered workflows (labels of other names are "unregistered").
    """

    def __init__(self, registry: CollectorRegistry | None = None,
                 workflow_names: Container[str] | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.workflow_names = workflow_names
        self._seen_names: set[str] = set()
        self.stalls = _Stalls()
        self.lag = Gauge("headrace_engine_input_lag_records", "Input records waiting on an owned partition",
                         ("partition",), registry=self.registry)
        self.turn_count = Counter("headrace_engine_turns", "Instance turns applied, by partition",
                                  ("partition",), registry=self.registry)
        self.transactions = Counter("headrace_engine_transactions", "Transactions ended, by partition and outcome",
                                    ("partition", "outcome"), registry=self.registry)
        self.transaction_seconds = Histogram("headrace_engine_transaction_duration_seconds",
                                             "Time from a transaction's start to its commit or abort",
                                             buckets=_FAST, registry=self.registry)
        self.restores = Counter("headrace_engine_restores", "Partition restores, by partition",
                                ("partition",), registry=self.registry)
        self.restore_seconds = Histogram("headrace_engine_restore_duration_seconds",
                                         "Time to restore a partition's states and histories",
                                         buckets=_SLOW, registry=self.registry)
        self.dead_letters = Counter("headrace_engine_dead_letters", "Inputs set aside, by kind of reason",
                                    ("kind",), registry=self.registry)
        self.timers = Gauge("headrace_engine_timers_pending", "Durable timers held, by partition",
                            ("partition",), registry=self.registry)
        self.code_waits = Gauge("headrace_engine_instances_waiting_for_code",
                                "Instances whose workflow this engine does not know, held until an engine that "
                                "knows it takes them or HEADRACE_UNKNOWN_CODE_TIMEOUT passes, by partition",
                                ("partition",), registry=self.registry)
        self.last_progress = Gauge("headrace_engine_last_progress_timestamp_seconds",
                                   "Unix time the partition last applied input or fired a timer",
                                   ("partition",), registry=self.registry)
        for kind in DEAD_LETTER_KINDS:
            self.dead_letters.labels(kind)
        self.timer_lateness = Histogram("headrace_engine_timer_lateness_seconds",
                                        "How long after its due time a durable timer fired",
                                        buckets=_LATE, registry=self.registry)
        self.executions = Counter(
            "dapr_runtime_workflow_execution_count",
            "The number of successful/failed/terminated workflow executions (Dapr's name and labels)",
            ("workflow_name", "status"), registry=self.registry)
        self.execution_latency = Histogram(
            "dapr_runtime_workflow_execution_latency",
            "The end-to-end time taken to run a workflow to completion, in milliseconds (Dapr's name and labels)",
            ("workflow_name", "status"), buckets=_DAPR_MS, registry=self.registry)
        self.scheduling_latency = Histogram(
            "dapr_runtime_workflow_scheduling_latency",
            "The delay between a workflow being requested and its execution starting, in milliseconds "
            "(Dapr's name and labels)",
            ("workflow_name",), buckets=_DAPR_MS, registry=self.registry)

    def workflow_label(self, name: str) -> str:
        known = self.workflow_names
        if known is not None:
            return name if name in known else UNREGISTERED
        if name in self._seen_names:
            return name
        if len(self._seen_names) < MAX_NAME_LABELS:
            self._seen_names.add(name)
            return name
        return UNREGISTERED

    def input_lag(self, partition: int, records: int) -> None:
        self.lag.labels(_partition(partition)).set(records)
        self.stalls.lag(partition, records)

    def turns(self, partition: int, count: int = 1) -> None:
        self.turn_count.labels(_partition(partition)).inc(count)

    def transaction(self, partition: int, seconds: float, committed: bool = True) -> None:
        self.transactions.labels(_partition(partition), "committed" if committed else "aborted").inc()
        self.transaction_seconds.observe(seconds)

    def restore(self, partition: int, seconds: float) -> None:
        self.restores.labels(_partition(partition)).inc()
        self.restore_seconds.observe(seconds)

    def dead_letter(self, kind: str) -> None:
        self.dead_letters.labels(kind if kind in DEAD_LETTER_KINDS else "other").inc()

    def timers_pending(self, partition: int, count: int) -> None:
        self.timers.labels(_partition(partition)).set(count)

    def waiting_for_code(self, partition: int, count: int) -> None:
        self.code_waits.labels(_partition(partition)).set(count)

    def progress(self, partition: int) -> None:
        self.stalls.progress(partition)
        self.last_progress.labels(_partition(partition)).set(time.time())

    def released(self, partition: int) -> None:
        self.stalls.forget(partition)
        label = _partition(partition)
        for metric in (self.lag, self.timers, self.code_waits, self.last_progress, self.turn_count, self.restores):
            with contextlib.suppress(KeyError):
                metric.remove(label)
        for outcome in ("committed", "aborted"):
            with contextlib.suppress(KeyError):
                self.transactions.remove(label, outcome)

    def stalled(self, threshold_s: float) -> list[Problem]:
        return self.stalls.stalled(threshold_s)


def _problems(found: Iterable[Any]) -> list[Problem]:
    """Accepts `Problem`s, (partition, reason) pairs or objects with those two attributes."""
    out = []
    for item in found:
        if hasattr(item, "reason"):
            out.append(Problem(item.partition, str(item.reason)))
        else:
            partition, reason = item
            out.append(Problem(partition, str(reason)))
    return out


class _Watched(NamedTuple):
    name: str
    role: Any


class KafkaRequestsCollector(Collector):
    """`headrace_kafka_requests_total{request}`: the Kafka requests this process sent, by type
    (`kafka_protocol.requests_sent`), read when scraped: nothing is added to a request's path."""

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily("headrace_kafka_requests", "Kafka requests this process sent, by request type",
                                     labels=("request",))
        for request, count in sorted(kafka_protocol.requests_sent().items()):
            family.add_metric((request,), count)
        yield family


def register_process_collectors(registry: CollectorRegistry) -> None:
    """What every Headrace process's /metrics has besides its role's: CPU, memory and file
    descriptors (prometheus_client's process collector) and the Kafka requests it sent."""
    ProcessCollector(registry=registry)
    registry.register(KafkaRequestsCollector())


class TelemetryServer:
    """Serves /metrics, /healthz and /readyz for the roles `watch`ed, on a daemon thread.

    A role is any object with, each optional: `metrics.registry` (a CollectorRegistry), `ready`
    (an asyncio.Event set once it has joined its group) and `problems()` (an iterable of
    `Problem`s or (partition, reason) pairs; non-empty means unhealthy).
    """

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.requested_port = port
        self.registry = CollectorRegistry(auto_describe=True)
        register_process_collectors(self.registry)
        self._roles: list[_Watched] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._httpd: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._httpd.server_address[1] if self._httpd is not None else self.requested_port

    def watch(self, name: str, role: Any) -> None:
        self._roles.append(_Watched(name, role))

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Bind (an OSError here means the port is taken) and serve on a daemon thread."""
        self._loop = loop
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                try:
                    code, content_type, body = server._answer(path)
                except Exception:
                    log.exception("telemetry request %s failed", path)
                    code, content_type, body = 500, "text/plain", b"internal error\n"
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # scrapes every few seconds would drown the process's own log

        httpd = http.server.ThreadingHTTPServer((self.host, self.requested_port), Handler)
        httpd.daemon_threads = True
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, name="headrace-telemetry", daemon=True)
        self._thread.start()
        log.info("metrics and health on http://%s:%d (/metrics, /healthz, /readyz)", self.host, self.port)

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def _answer(self, path: str) -> tuple[int, str, bytes]:
        if path == "/metrics":
            registries = [self.registry, *(r for w in self._roles if (r := _registry(w.role)) is not None)]
            return 200, CONTENT_TYPE_LATEST, b"".join(bytes(generate_latest(r)) for r in registries)
        if path == "/healthz":
            try:
                self._on_loop(lambda: None, LIVENESS_TIMEOUT_S)
            except Exception:
                return self._json(503, {"status": "unresponsive",
                                        "reason": f"event loop did not answer within {LIVENESS_TIMEOUT_S:.0f} s"})
            return self._json(200, {"status": "alive"})
        if path in ("/readyz", "/health"):
            try:
                found = self._on_loop(self._check, READINESS_TIMEOUT_S)
            except Exception:
                found = [{"role": "process", "partition": None,
                          "reason": f"event loop did not answer within {READINESS_TIMEOUT_S:.0f} s"}]
            return self._json(503 if found else 200, {"status": "unhealthy" if found else "ok", "problems": found})
        return 404, "text/plain", b"not found: try /metrics, /healthz or /readyz\n"

    def _check(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for name, role in self._roles:
            ready = getattr(role, "ready", None)
            if isinstance(ready, asyncio.Event) and not ready.is_set():
                found.append({"role": name, "partition": None, "reason": "not ready: has not joined its group yet"})
                continue
            hook: Callable[[], Iterable[Any]] | None = getattr(role, "problems", None)
            if hook is not None:
                found += [{"role": name, "partition": p.partition, "reason": p.reason} for p in _problems(hook())]
        return found

    def _on_loop(self, fn: Callable[[], T], timeout: float) -> T:
        loop = self._loop
        if loop is None or loop.is_closed():
            raise RuntimeError("the event loop is gone")
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn())
                except BaseException as exc:
                    future.set_exception(exc)

        loop.call_soon_threadsafe(run)
        try:
            return future.result(timeout)
        finally:
            future.cancel()

    @staticmethod
    def _json(code: int, body: object) -> tuple[int, str, bytes]:
        return code, "application/json", orjson.dumps(body) + b"\n"


def _registry(role: Any) -> CollectorRegistry | None:
    registry = getattr(getattr(role, "metrics", None), "registry", None)
    return registry if isinstance(registry, CollectorRegistry) else None


def _run_ms(state: InstanceState) -> float:
    """How long a run took from its creation to its end (or its last update), in milliseconds."""
    began, ended = state.created_at, state.completed_at or state.last_updated_at
    if began is None or ended is None:
        return 0.0
    return max(0.0, (ended - began).total_seconds() * 1000)


class TurnObserver:
    """What one partition owner's turns report: metrics, traces (when on) and the log context.

    The owner calls `begin` before it applies an input, `end` after, and `committed()` once the
    transaction holding the turns is in, or `discard()` when it is not (the inputs are applied
    again after the rebuild, and counted then). Its records take their headers from `headers()`
    (work items, messages) and `status_headers(state)` (the status record), which are None unless
    tracing is on (`engine.tracing`).
    """

    __slots__ = ("_begun", "_executions", "_late", "_previous", "_requested_ms", "_scheduling", "metrics",
                 "partition", "tracer")

    def __init__(self, metrics: EngineMetrics, partition: int) -> None:
        self.metrics = metrics
        self.partition = partition
        self.tracer = tracing.PartitionTracer(partition) if tracing.enabled() else None
        #: Metric updates of the open transaction: (kind, workflow label, status, value).
        # Observations of the open transaction, recorded only once it commits (a discarded turn
        # happens again): timer lateness (s); scheduling latency (workflow, ms); ends (workflow, status, ms).
        self._late: list[float] = []
        self._scheduling: list[tuple[str, float]] = []
        self._executions: list[tuple[str, str, float]] = []
        self._previous: RuntimeStatus | None = None
        self._requested_ms: int | None = None
        self._begun = False

    # -- per input ------------------------------------------------------------------------------

    def begin(self, message: cmd.InstanceMessage, previous: InstanceState | None, headers: Any = None,
              timestamp_ms: int | None = None, now: datetime | None = None) -> None:
        """About to apply `message` to an instance now in state `previous`. `headers` and
        `timestamp_ms` are the input record's (None for a timer fired in-process)."""
        self._begun = True
        self._previous = previous.status if previous is not None else None
        self._requested_ms = timestamp_ms if isinstance(message, cmd.StartWorkflow) else None
        if isinstance(message, cmd.TimerFiring) and now is not None:
            self._late.append((now - message.fire_at).total_seconds())
        name = message.name if isinstance(message, cmd.StartWorkflow) else previous.name if previous else None
        logs.set_context(message.instance_id, name, self.partition)
        if self.tracer is not None:
            self.tracer.begin(message, headers)

    def link(self, headers: Any) -> None:
        """Another input applied in the turn begun last (`PartitionOwner._apply_results`), with its
        record's `headers`."""
        if self.tracer is not None:
            self.tracer.link(headers)

    def headers(self) -> list[tuple[str, bytes]] | None:
        return self.tracer.headers() if self.tracer is not None else None

    def status_headers(self, state: InstanceState) -> list[tuple[str, bytes]] | None:
        return self.tracer.status_headers(state) if self.tracer is not None else None

    def end(self, state: InstanceState | None, changed: bool, now: datetime | None = None) -> None:
        """The input begun last was applied; `state` is the instance's after it (None: absent)."""
        if not self._begun:
            return
        self._begun = False
        if self.tracer is not None:
            self.tracer.end(state, changed)
        if state is None or not changed:
            return
        status, previous = state.status, self._previous
        if status is previous:
            return
        if previous in (None, RuntimeStatus.PENDING) and self._requested_ms is not None and state.created_at:
            # Dapr: "the delay between a workflow being requested and its execution starting"; the
            # request's time is the command record's timestamp (the producer's clock).
            started_ms = (now or state.last_updated_at or state.created_at).timestamp() * 1000
            self._scheduling.append((state.name, max(0.0, started_ms - self._requested_ms)))
        dapr_status = DAPR_EXECUTION_STATUS.get(status)
        if dapr_status is not None:
            self._executions.append((state.name, dapr_status, _run_ms(state)))

    def failed_by_engine(self, previous: InstanceState | None, state: InstanceState | None) -> None:
        """The engine failed an instance itself (`Orchestrator.fail`: an input it set aside)."""
        if state is None or state.status is not RuntimeStatus.FAILED or (previous is not None and previous.is_terminal):
            return
        self._executions.append((state.name, "failed", _run_ms(state)))
        if self.tracer is not None:
            self.tracer.failed_by_engine(state)

    # -- per transaction --------------------------------------------------------------------------

    def committed(self) -> None:
        metrics = self.metrics
        for seconds in self._late:
            metrics.timer_lateness.observe(max(0.0, seconds))
        for name, ms in self._scheduling:
            metrics.scheduling_latency.labels(metrics.workflow_label(name)).observe(ms)
        for name, status, ms in self._executions:
            label = metrics.workflow_label(name)
            metrics.executions.labels(label, status).inc()
            metrics.execution_latency.labels(label, status).observe(ms)
        self._clear()
        if self.tracer is not None:
            self.tracer.committed()
        logs.set_context(partition=self.partition)

    def discard(self) -> None:
        self._clear()
        self._begun = False
        if self.tracer is not None:
            self.tracer.discard()
        logs.set_context(partition=self.partition)

    # -- restore and memory -----------------------------------------------------------------------

    def _clear(self) -> None:
        self._late.clear()
        self._scheduling.clear()
        self._executions.clear()

    def restoring(self) -> None:
        self.discard()
        if self.tracer is not None:
            self.tracer.clear()

    def restored(self, state: InstanceState, headers: Any) -> None:
        if self.tracer is not None:
            self.tracer.restored(state, headers)

    def forget(self, iid: str) -> None:
        if self.tracer is not None:
            self.tracer.forget(iid)
