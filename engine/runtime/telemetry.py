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
activity names are the registered ones (anything else is "unregistered").

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
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple, TypeVar

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = [
    "DEAD_LETTER_KINDS",
    "RUN_OUTCOMES",
    "EngineMetrics",
    "Problem",
    "TelemetryServer",
    "WorkerMetrics",
    "partition_offsets",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Partition numbers at or above this are labelled "other" (a guard: Kafka assigns the numbers).
MAX_PARTITION_LABEL = 10_000
#: Seconds the event loop may take to answer before liveness reports it stuck.
LIVENESS_TIMEOUT_S = 10.0
#: Seconds the health hooks may take (they run on the event loop) before readiness gives up.
READINESS_TIMEOUT_S = 5.0

#: How a work item ended in the worker.
RUN_OUTCOMES = ("completed", "failed", "too_large", "skipped", "abandoned")
#: Why the engine set an input aside. Anything else passed to `EngineMetrics.dead_letter` is "other".
DEAD_LETTER_KINDS = ("invalid_record", "rejected", "wrong_partition", "poisoned", "too_large", "other")

# Turns and transactions take milliseconds; restores of big partitions take seconds.
_FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_SLOW = (0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


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

    def run(self, activity: str, outcome: str, seconds: float | None = None) -> None:
        self.runs.labels(activity, outcome if outcome in RUN_OUTCOMES else "failed").inc()
        if seconds is not None:
            self.duration.observe(seconds)

    def progress(self, partition: int) -> None:
        self.stalls.progress(partition)
        self.last_progress.labels(_partition(partition)).set(time.time())

    def input_lag(self, partition: int, offsets: int, waiting: int) -> None:
        """`offsets` uncommitted in all; `waiting` of them not fetched yet (what a stall is judged by)."""
        self.lag.labels(_partition(partition)).set(offsets)
        self.stalls.lag(partition, waiting)

    def forget(self, partition: int) -> None:
        """The partition went to another worker: drop its series so they do not linger."""
        self.stalls.forget(partition)
        for gauge in (self.lag, self.last_progress):
            with contextlib.suppress(KeyError):
                gauge.remove(_partition(partition))


class EngineMetrics:
    """What an engine reports. The engine creates one (`Engine.metrics`) and calls it as follows.

    - `input_lag(p, records)`: records waiting on input partition p (commands + results), after each poll.
    - `turns(p, n)`: n instance turns applied on p (one per input applied).
    - `transaction(p, seconds, committed)`: one transaction of p ended (committed or aborted).
    - `restore(p, seconds)`: p was restored (claimed, or rebuilt after a failed transaction).
    - `dead_letter(kind)`: an input was set aside; kind is one of DEAD_LETTER_KINDS.
    - `timers_pending(p, n)`: timers held by p's owner now.
    - `progress(p)`: p applied input (or fired timers); feeds the last-progress gauge and `stalled()`.
    - `released(p)`: p went to another engine: its series are removed.
    - `stalled(threshold_s)`: problems for partitions with input waiting and no progress for that long.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
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
        self.last_progress = Gauge("headrace_engine_last_progress_timestamp_seconds",
                                   "Unix time the partition last applied input or fired a timer",
                                   ("partition",), registry=self.registry)
        for kind in DEAD_LETTER_KINDS:
            self.dead_letters.labels(kind)

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

    def progress(self, partition: int) -> None:
        self.stalls.progress(partition)
        self.last_progress.labels(_partition(partition)).set(time.time())

    def released(self, partition: int) -> None:
        self.stalls.forget(partition)
        label = _partition(partition)
        for metric in (self.lag, self.timers, self.last_progress, self.turn_count, self.restores):
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
        ProcessCollector(registry=self.registry)
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
