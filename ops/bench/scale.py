"""`headrace bench scale`: what history costs (issue 16): restore, rebalance, the read side, retention.

The topics are filled fast, without running an engine process, by the engine's own code:
- Running instances are started by offline `PartitionOwner`s (the engine's per-partition logic,
  not started: no restore, no consumer) fed their `StartWorkflow` commands in one batch per
  partition (`PartitionOwner.process`), with the benchmark's timer workflow and a one-day timer.
  The owner's transactional producer is replaced by one that forwards its sends to a fast producer
  without transactions, so the records are exactly what an engine commits for those turns (state,
  history chunks, restore snapshots, audit history, the snapshots marker) and cannot drift from it.
- Finished instances are copies of one completed and one terminated instance made by the same
  orchestrator (`WorkflowTestEnvironment`), with their own IDs, execution IDs and times
  (`dataclasses.replace`, `encode_state`), on the engine's partitions (`partition_for`), with the
  restore snapshot the owner would keep for them (`PartitionOwner.snapshot`: none, unless a
  retention purge is due). No audit history is written for them: no reader measured here reads it.
- Every `history-store` partition ends with `SNAPSHOTS_MARKER`, as every engine transaction does,
  so a restore reads snapshots and chunks only (`PartitionOwner._restore`).

Then, per size: engine cold start to ready (and what its restore read), one engine joining a
running one under a light probe load (which partitions stayed, whether any was restored, how long
each stopped), the REST API's cold and warm start (with its index directory kept), its RSS, list
pages with and without filters, GET by ID, `DaprWorkflowClient()` in a fresh process; and once,
retention throughput: an engine with `HEADRACE_RETENTION_ANY_TERMINAL` purging finished
instances that are all due. Figures go to a table against the issue's targets and to JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from api.listing import list_indexed, parse_query
from api.settings import ApiSettings
from engine.core.cache import ExecutionCache
from engine.core.codec import encode
from engine.core.commands import StartWorkflow
from engine.core.orchestrator import Orchestrator
from engine.core.state import InstanceState
from engine.read.consumer import committed_reader
from engine.read.index import StatusIndex
from engine.runtime.partition import PartitionOwner
from engine.settings import Settings
from engine.testing import WorkflowTestEnvironment
from engine.topics import Topics, ensure_topics, partition_for
from engine.wire.records import (
    POSITIONS_HEADER,
    POSITIONS_KEY,
    SNAPSHOTS_MARKER,
    decode_state,
    encode_state,
    state_snapshot_key,
)
from ops.process import free_ports

from . import apps
from .deploy import ROOT, Broker, Service, new_run_id
from .inputs import input_record
from .procstats import read as read_proc
from .stats import percentiles

__all__ = ["ScaleOptions", "options_from_args", "run_scale", "scale_targets"]

MiB = 2**20
#: Sizes of a full run (the issue's: 10^5 and 10^6 finished, 10^4 running) and of `--tiny`.
FULL_FINISHED = (100_000, 1_000_000)
FULL_RUNNING = 10_000
TINY_FINISHED = (2_000,)
TINY_RUNNING = 200
#: Finished instances (all due) the retention figure purges.
FULL_RETENTION = 20_000
TINY_RETENTION = 300
#: The running instances' timer: far enough that none fires while measuring.
RUNNING_TIMER_S = 86_400.0
#: One finished instance in this many is TERMINATED (the rest COMPLETED): a selective status filter.
TERMINATED_EVERY = 10
#: A restore logs this line per partition (`PartitionOwner._restore`).
RESTORED = re.compile(r"partition (\d+) restored: (\d+) instances read, (\d+) running")
KEPT = re.compile(r"partition (\d+): kept across the rebalance")
#: The engine's own errors (a restore that finds a history shorter than its state says, an
#: unreadable record): a fill that does not match what the engine writes shows here.
ENGINE_ERROR = re.compile(r" (ERROR|CRITICAL) engine\.")
READY_ROUTE = "/v1.0/healthz/ready"
LIST_ROUTE = "/v1.0/workflows/dapr"


@dataclass(frozen=True, slots=True)
class ScaleOptions:
    finished: tuple[int, ...]
    running: int
    retention: int
    partitions: int
    #: Requests per measured list query and for GET by ID.
    requests: int
    #: Probe starts per second during the join (spread over every partition).
    probe_rate: float
    out: Path
    tiny: bool


def options_from_args(args: argparse.Namespace) -> ScaleOptions:
    tiny = bool(args.tiny)
    finished = tuple(args.finished) if args.finished else (TINY_FINISHED if tiny else FULL_FINISHED)
    running = args.running if args.running is not None else (TINY_RUNNING if tiny else FULL_RUNNING)
    retention = args.retention_instances if args.retention_instances is not None else (
        TINY_RETENTION if tiny else FULL_RETENTION)
    return ScaleOptions(finished=finished, running=running, retention=retention, partitions=args.partitions,
                        requests=30 if tiny else 300, probe_rate=40.0, out=Path(args.out), tiny=tiny)


# -- filling the topics -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fill:
    """What was produced: instances by kind, records per topic, and how fast."""

    finished: int
    running: int
    records: dict[str, int]
    seconds: float
    #: Some instance IDs of each kind, for the look-ups.
    finished_ids: tuple[str, ...]
    running_ids: tuple[str, ...]
    #: Earliest and latest `created_at` of the finished instances.
    created_range: tuple[datetime, datetime]

    def to_json(self) -> dict[str, Any]:
        total = sum(self.records.values())
        return {"finished": self.finished, "running": self.running, "records": self.records,
                "seconds": round(self.seconds, 2), "records_per_s": round(total / max(self.seconds, 1e-9))}


def _templates(now: datetime) -> tuple[InstanceState, InstanceState]:
    """A completed and a terminated instance, made by the engine's orchestrator."""
    env = WorkflowTestEnvironment(apps.runtime, start=now)
    env.schedule_new_workflow("bench_chain", input={"steps": 0}, instance_id="template-completed")
    env.schedule_new_workflow("bench_timer", input=RUNNING_TIMER_S, instance_id="template-terminated")
    env.terminate_workflow("template-terminated", output="scale")
    return env.states["template-completed"], env.states["template-terminated"]


class _Forwarding:
    """What a `PartitionOwner` takes for its transactional producer: its sends go to one fast
    producer (no transaction: `read_committed` readers see non-transactional records), counted per
    topic; a "commit" waits until they are acknowledged, so the owner finds its sends done."""

    def __init__(self, producer: AIOKafkaProducer, labels: dict[str, str]) -> None:
        self.producer = producer
        self.labels = labels
        self.records: dict[str, int] = defaultdict(int)

    async def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
                   partition: int | None = None, headers: list[tuple[str, bytes]] | None = None
                   ) -> asyncio.Future[Any]:
        # The fill's start records were never on the commands topic: the input positions the
        # owner writes with its state (`POSITIONS_HEADER`) would make the engine skip that many
        # real commands. An engine's state includes no input of the fill.
        if key == POSITIONS_KEY:
            done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done
        if headers:
            headers = [header for header in headers if header[0] != POSITIONS_HEADER]
        self.records[self.labels.get(topic, topic)] += 1
        future: asyncio.Future[Any] = await self.producer.send(topic, value, key=key, partition=partition,
                                                               headers=headers)
        return future

    @property
    def client(self) -> Any:
        """The producer's client: its cluster metadata says which topics the owner may batch."""
        return self.producer.client

    def create_batch(self) -> _Collected:
        return _Collected()

    async def send_batch(self, batch: _Collected, topic: str, *, partition: int) -> asyncio.Future[Any]:
        """A batch the owner filled (`partition._send_all`): its records go through `send` one by
        one, so they are filtered and counted alike."""
        futures = [await self.send(topic, value, key=key, partition=partition, headers=headers)
                   for key, value, headers in batch.records]
        sent: asyncio.Future[Any] = asyncio.gather(*futures)
        return sent

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        yield
        await self.producer.flush()


class _Collected:
    """What `_Forwarding.create_batch` gives an owner: the records appended, never full."""

    def __init__(self) -> None:
        self.records: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]] = []

    def append(self, *, timestamp: int | None, key: bytes | None, value: bytes | None,
               headers: list[tuple[str, bytes]]) -> bool:
        self.records.append((key, value, headers))
        return True

    def close(self) -> None:
        pass



def _owners(settings: Settings, forwarding: _Forwarding) -> list[PartitionOwner]:
    """An engine's partition owners, offline: their sends go to `forwarding`, nothing is restored."""
    registry = apps.runtime.registry
    orchestrator = Orchestrator(registry.get_workflow, ExecutionCache(1000), versions=registry)
    topics = Topics.for_settings(settings)
    owners = []
    for number in range(settings.partitions):
        owner = PartitionOwner(number, settings, topics, orchestrator, "headrace-bench-scale-fill",
                               partitions=settings.partitions)
        owner.producer = cast(AIOKafkaProducer, forwarding)
        owners.append(owner)
    return owners


def _start_record(topic: str, partition: int, offset: int, iid: str) -> ConsumerRecord[bytes, bytes]:
    value = encode(StartWorkflow(instance_id=iid, command_id=uuid.uuid4().hex, name="bench_timer",
                                 input=json.dumps(RUNNING_TIMER_S)))
    return input_record(topic, offset, iid.encode(), value, partition)


async def fill(settings: Settings, finished: int, running: int, *, finished_age: timedelta = timedelta(0)) -> Fill:
    """Produce `finished` finished and `running` running instances (see the module docstring).

    The retention policy of `settings` decides which finished instances keep a restore snapshot, as
    it does in an engine; `finished_age`: how long ago the newest one finished.
    """
    await ensure_topics(settings)
    began = time.monotonic()
    now = datetime.now(UTC)
    completed, terminated = _templates(now)
    topics = Topics.for_settings(settings)
    producer = AIOKafkaProducer(**settings.client_kwargs(), acks=1, linger_ms=20, max_batch_size=512 * 1024,
                                enable_idempotence=False)
    forwarding = _Forwarding(producer, {getattr(topics, f.name): f.name for f in fields(topics)})
    owners = _owners(settings, forwarding)
    keep = 50
    finished_ids: list[str] = []
    running_ids: list[str] = []
    newest = now - finished_age
    oldest = newest - timedelta(milliseconds=finished)
    await producer.start()
    try:
        for i in range(finished):
            iid = f"done-{i:08d}"
            template = terminated if i % TERMINATED_EVERY == 0 else completed
            created = oldest + timedelta(milliseconds=i)
            execution = uuid.uuid4().hex
            state = replace(template, instance_id=iid, execution_id=execution, run_id=execution,
                            created_at=created, last_updated_at=created, completed_at=created)
            encoded = encode_state(state)
            key = iid.encode()
            owner = owners[partition_for(key, settings.partitions)]
            await forwarding.send(topics.status, encoded, key=key, partition=owner.number)
            snapshot = owner.snapshot(state, encoded)
            if snapshot is not None:
                await forwarding.send(topics.history_store, snapshot, key=state_snapshot_key(iid),
                                      partition=owner.number)
            if i % max(finished // keep, 1) == 0:
                finished_ids.append(iid)
        starts: dict[int, list[ConsumerRecord[bytes, bytes]]] = defaultdict(list)
        for i in range(running):
            iid = f"run-{i:06d}"
            partition = partition_for(iid.encode(), settings.partitions)
            starts[partition].append(_start_record(topics.commands, partition, len(starts[partition]), iid))
            if i % max(running // keep, 1) == 0:
                running_ids.append(iid)
        # Each partition's starts in one engine turn batch: the owner writes what an engine would
        # (status, history chunks, snapshots, audit history) and ends with the snapshots marker.
        for partition, records in starts.items():
            await owners[partition].process({TopicPartition(topics.commands, partition): records})
        async with forwarding.transaction():
            # The marker last in every partition, also those no running instance wrote to.
            for number in range(settings.partitions):
                await forwarding.send(topics.history_store, b"1", key=SNAPSHOTS_MARKER, partition=number)
    finally:
        await producer.stop()
    return Fill(finished, running, dict(forwarding.records), time.monotonic() - began, tuple(finished_ids),
                tuple(running_ids), (oldest, newest))


# -- processes ----------------------------------------------------------------------------------------


def _restores(log_text: str) -> list[tuple[int, int, int]]:
    """(partition, instances read, running) of each restore in a log."""
    return [(int(a), int(b), int(c)) for a, b, c in RESTORED.findall(log_text)]


def _rss_mib(pid: int) -> float | None:
    m = read_proc(pid)
    return None if m is None else round(m.rss_bytes / MiB, 1)


async def _engine_cold_start(settings: Settings, log_dir: Path, index: int) -> tuple[Service, dict[str, Any]]:
    began = time.monotonic()
    engine = Service("engine", settings, log_dir, index)
    await engine.wait_ready(time.monotonic() + 600)
    ready_s = time.monotonic() - began
    restores = _restores(engine.log_text())
    return engine, {
        "ready_s": round(ready_s, 3),
        "partitions_restored": len(restores),
        "read_at_restore": sum(r[1] for r in restores),
        "running_restored": sum(r[2] for r in restores),
        "engine_errors": len(ENGINE_ERROR.findall(engine.log_text())),
        "rss_mib": _rss_mib(engine.pid),
        "cpu_s": _cpu_s(engine.pid),
    }


def _cpu_s(pid: int) -> float | None:
    m = read_proc(pid)
    return None if m is None else round(m.cpu_s, 2)


class _Probe:
    """Starts one-turn workflows (`bench_chain` of 0 steps) round-robin over every partition and
    reads their terminal states from the end of the status topic: each partition's stops show as
    starts that wait."""

    def __init__(self, settings: Settings, rate: float) -> None:
        self.settings = settings
        self.topics = Topics.for_settings(settings)
        self.rate = rate
        self.sent: dict[str, tuple[int, float]] = {}
        self.done: dict[str, float] = {}
        self._ids = self._ids_per_partition()
        self._stop = asyncio.Event()
        self._sending = True
        #: Set whenever every probe sent has completed.
        self._settled = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.producer = AIOKafkaProducer(**settings.client_kwargs(), linger_ms=0)
        self.consumer: AIOKafkaConsumer = committed_reader(settings, fetch_max_wait_ms=20)

    def _ids_per_partition(self) -> dict[int, Iterator[str]]:
        def ids(partition: int) -> Iterator[str]:
            n = 0
            while True:
                n += 1
                iid = f"probe-{n}"
                if partition_for(iid.encode(), self.settings.partitions) == partition:
                    yield iid

        return {p: ids(p) for p in range(self.settings.partitions)}

    async def start(self) -> None:
        await self.producer.start()
        await self.consumer.start()
        tps = [TopicPartition(self.topics.status, p) for p in range(self.settings.partitions)]
        self.consumer.assign(tps)
        await self.consumer.seek_to_end(*tps)
        self._tasks = [asyncio.create_task(self._send()), asyncio.create_task(self._read())]

    async def _send(self) -> None:
        interval = 1.0 / self.rate
        turn = 0
        while self._sending and not self._stop.is_set():
            partition = turn % self.settings.partitions
            turn += 1
            iid = next(self._ids[partition])
            message = StartWorkflow(instance_id=iid, command_id=uuid.uuid4().hex, name="bench_chain",
                                    input='{"steps": 0}')
            self.sent[iid] = (partition, time.monotonic())
            self._settled.clear()
            await self.producer.send(self.topics.commands, encode(message), key=iid.encode(), partition=partition)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), interval)

    async def _read(self) -> None:
        while not self._stop.is_set():
            batches = await self.consumer.getmany(timeout_ms=100)
            now = time.monotonic()
            for records in batches.values():
                for record in records:
                    iid = record.key.decode() if record.key else ""
                    if iid in self.sent and iid not in self.done and record.value is not None \
                            and decode_state(record.value).is_terminal:
                        self.done[iid] = now
            if len(self.done) == len(self.sent):
                self._settled.set()

    async def settle(self, timeout_s: float) -> None:
        """Stop sending, then wait until every probe sent completed (at most `timeout_s`)."""
        self._sending = False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._settled.wait(), timeout_s)

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.producer.stop()
        await self.consumer.stop()

    def stops(self, since: float) -> dict[int, float | None]:
        """Per partition: the longest start-to-completion (s) of the probes sent after `since` (None:
        one never completed)."""
        worst: dict[int, float | None] = {}
        for iid, (partition, sent) in self.sent.items():
            if sent < since:
                continue
            done = self.done.get(iid)
            if done is None:
                worst[partition] = None
            elif partition not in worst:
                worst[partition] = done - sent
            elif (known := worst[partition]) is not None:
                worst[partition] = max(known, done - sent)
        return worst

    def latencies_before(self, until: float) -> list[float]:
        return [self.done[i] - s for i, (_, s) in self.sent.items() if s < until and i in self.done]


async def _join(first: Service, settings: Settings, log_dir: Path, rate: float) -> dict[str, Any]:
    """One engine joins `first` under a probe load: what stayed, what restored, how long each stopped."""
    probe = _Probe(settings, rate)
    await probe.start()
    try:
        await asyncio.sleep(3.0)  # a baseline of probe latencies before the join
        mark = len(first.log_text())
        joined_at = time.monotonic()
        second = Service("engine", settings, log_dir, 1)
        try:
            await second.wait_ready(time.monotonic() + 600)
            second_ready_s = time.monotonic() - joined_at
            # Probes keep flowing a little after the join, then every one sent must complete.
            await asyncio.sleep(3.0)
            await probe.settle(60)
            after = first.log_text()[mark:]
            kept = sorted({int(p) for p in KEPT.findall(after)})
            restored_first = sorted({r[0] for r in _restores(after)})
            moved = sorted({r[0] for r in _restores(second.log_text())})
            stops = probe.stops(joined_at)
            baseline = probe.latencies_before(joined_at)
            kept_stops = [s for p, s in stops.items() if p in kept]
            moved_stops = [s for p, s in stops.items() if p in moved]
            return {
                "second_ready_s": round(second_ready_s, 3),
                "kept_by_first": kept,
                "restored_by_first": restored_first,
                "moved_to_second": moved,
                "probe_baseline_ms": percentiles([x * 1000 for x in baseline]) if baseline else {},
                "kept_max_stop_s": _max_or_none(kept_stops),
                "moved_max_stop_s": _max_or_none(moved_stops),
                "stop_s_by_partition": {str(p): None if s is None else round(s, 3) for p, s in sorted(stops.items())},
                "probes": {"sent": len(probe.sent), "completed": len(probe.done)},
                "rss_mib": {"first": _rss_mib(first.pid), "second": _rss_mib(second.pid)},
            }
        finally:
            second.stop()
    finally:
        await probe.stop()


def _max_or_none(values: list[float | None]) -> float | None:
    if not values or any(v is None for v in values):
        return None
    return round(max(cast(list[float], values)), 3)


# -- the REST API ------------------------------------------------------------------------------------


class _Api:
    """One API process with its index in `index_dir`, and the time it took to be ready."""

    def __init__(self, settings: Settings, log_dir: Path, index: int, index_dir: Path) -> None:
        port = free_ports(1)[0]
        env = ApiSettings(host="127.0.0.1", port=port, log_level="warning").to_env("host", "port", "log_level")
        env["HEADRACE_API_INDEX_DIR"] = str(index_dir)
        self.url = f"http://127.0.0.1:{port}"
        self.began = time.monotonic()
        self.service = Service("api", settings, log_dir, index, env)

    async def wait_ready(self, client: httpx.AsyncClient, timeout_s: float) -> float:
        """Seconds from the process start until it says it is ready (`/v1.0/healthz/ready`):
        connected and its view caught up with the status topic."""
        deadline = self.began + timeout_s
        while time.monotonic() < deadline:
            if not self.service.child.alive:
                raise RuntimeError(f"the API exited: {self.service.log_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(self.url + READY_ROUTE, timeout=2.0)).status_code == 204:
                    return time.monotonic() - self.began
            await asyncio.sleep(0.05)
        raise TimeoutError(f"the API was not ready within {timeout_s} s")


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir())


async def _timed(client: httpx.AsyncClient, url: str, params: dict[str, str] | None = None
                 ) -> tuple[float, httpx.Response]:
    t = time.perf_counter()
    response = await client.get(url, params=params)
    return (time.perf_counter() - t) * 1000, response


async def _list_query(client: httpx.AsyncClient, base: str, params: dict[str, str], requests: int
                      ) -> dict[str, Any]:
    """`requests` list pages of one query, following continuation tokens (pages at every depth the
    requests reach, back to the first page at the end)."""
    times: list[float] = []
    sizes: list[int] = []
    token: str | None = None
    for _ in range(requests):
        query = dict(params, **({"continuationToken": token} if token else {}))
        ms, response = await _timed(client, base + LIST_ROUTE, query)
        response.raise_for_status()
        body = response.json()
        times.append(ms)
        sizes.append(len(body["instances"]))
        token = body.get("continuationToken")
    return {"params": params, "requests": requests, "ms": percentiles(times),
            "mean_page": round(sum(sizes) / len(sizes), 1)}


async def _count_listed(client: httpx.AsyncClient, base: str, params: dict[str, str]) -> int:
    """Every instance a query lists, walking all its pages at the largest page size."""
    total, token = 0, None
    while True:
        query = dict(params, pageSize="1000", **({"continuationToken": token} if token else {}))
        response = await client.get(base + LIST_ROUTE, params=query)
        response.raise_for_status()
        body = response.json()
        total += len(body["instances"])
        token = body.get("continuationToken")
        if not token:
            return total


def _index_pages(path: Path, topic: str, queries: dict[str, dict[str, str]], requests: int
                 ) -> dict[str, dict[str, float]]:
    """The list queries' pages straight from the API's index file, in this process: the index's
    share of a list page's time, without HTTP, JSON or the API process's scheduling."""
    index = StatusIndex(path, topic)
    out: dict[str, dict[str, float]] = {}
    try:
        for name, params in queries.items():
            times: list[float] = []
            token: str | None = None
            for _ in range(requests):
                query = parse_query(dict(params, **({"continuationToken": token} if token else {})),
                                    [params["runtimeStatus"]] if "runtimeStatus" in params else [])
                began = time.perf_counter()
                token = list_indexed(index, query).continuation_token
                times.append((time.perf_counter() - began) * 1000)
            out[name] = percentiles(times)
    finally:
        index.close()
    return out


async def _api(settings: Settings, filled: Fill, log_dir: Path, opts: ScaleOptions) -> dict[str, Any]:
    index_dir = Path(tempfile.mkdtemp(prefix="headrace-scale-index-"))
    result: dict[str, Any] = {}
    rng = random.Random(1)  # noqa: S311 - which IDs to look up, not a secret
    middle = filled.created_range[0] + (filled.created_range[1] - filled.created_range[0]) / 2
    queries: dict[str, dict[str, str]] = {
        "no filter": {},
        "runtimeStatus=RUNNING": {"runtimeStatus": "RUNNING"},
        "runtimeStatus=TERMINATED": {"runtimeStatus": "TERMINATED"},
        "workflowName=bench_timer": {"workflowName": "bench_timer"},
        "createdAfter=middle, newest first": {"createdAfter": middle.isoformat(), "order": "desc"},
    }
    try:
        async with httpx.AsyncClient(timeout=30.0) as client:
            cold = _Api(settings, log_dir, 0, index_dir)
            try:
                result["cold_start_s"] = round(await cold.wait_ready(client, 1800), 3)
                result["rss_ready_mib"] = _rss_mib(cold.service.pid)
                result["index_bytes"] = _dir_bytes(index_dir)
            finally:
                cold.service.stop()
            warm = _Api(settings, log_dir, 1, index_dir)
            try:
                result["warm_start_s"] = round(await warm.wait_ready(client, 600), 3)
                base = warm.url
                counts = (await client.get(base + "/v1.0/headrace/counts")).json()
                result["counts"] = counts
                result["list"] = {name: await _list_query(client, base, params, opts.requests)
                                  for name, params in queries.items()}
                result["listed_running"] = await _count_listed(client, base, {"runtimeStatus": "RUNNING"})
                ids = [*filled.finished_ids, *filled.running_ids]
                times, found = [], 0
                for _ in range(opts.requests):
                    ms, response = await _timed(client, f"{base}{LIST_ROUTE}/{rng.choice(ids)}")
                    times.append(ms)
                    found += response.status_code == 200
                result["get_by_id"] = {"requests": opts.requests, "found": found, "ms": percentiles(times)}
                m = read_proc(warm.service.pid)
                result["rss_mib"] = None if m is None else round(m.rss_bytes / MiB, 1)
                result["peak_rss_mib"] = None if m is None else round(m.peak_rss_bytes / MiB, 1)
                result["rss_cold_mib"] = result.pop("rss_ready_mib")
            finally:
                warm.service.stop()
            topic = Topics.for_settings(settings).status
            result["index_page_ms"] = await asyncio.to_thread(
                _index_pages, index_dir / f"{topic}.sqlite", topic, queries, opts.requests)
    finally:
        shutil.rmtree(index_dir, ignore_errors=True)
    return result


# -- the Python client ---------------------------------------------------------------------------------

_CLIENT_SCRIPT = """
import json, resource, sys, time
t0 = time.perf_counter()
from engine import DaprWorkflowClient
t1 = time.perf_counter()
client = DaprWorkflowClient()
t2 = time.perf_counter()
first = client.get_workflow_state(sys.argv[1])
t3 = time.perf_counter()
second = client.get_workflow_state(sys.argv[2])
t4 = time.perf_counter()
client.close()
print(json.dumps({"import_s": t1 - t0, "constructor_s": t2 - t1, "first_get_s": t3 - t2,
                  "second_get_s": t4 - t3, "found": [first is not None, second is not None],
                  "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


async def _client(settings: Settings, filled: Fill) -> dict[str, Any]:
    """`DaprWorkflowClient()` and two first look-ups (two partitions) in a fresh process."""
    ids = [*filled.finished_ids[:1], *filled.running_ids[:1]] or ["none", "none"]
    ids = (ids * 2)[:2]
    env = {**os.environ, **settings.to_env("bootstrap_servers", "topic_prefix", "partitions"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = await asyncio.to_thread(subprocess.run, [sys.executable, "-c", _CLIENT_SCRIPT, *ids], cwd=ROOT,
                                   env=env, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode:
        return {"error": done.stderr[-2000:]}
    raw = json.loads(done.stdout.strip().splitlines()[-1])
    return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in raw.items()}


# -- retention ----------------------------------------------------------------------------------------


async def _retention(broker: Broker, run_id: str, opts: ScaleOptions, log_dir: Path) -> dict[str, Any]:
    """An engine with a one-minute retention purging `opts.retention` finished instances that are all
    due: purges per second, counted as tombstones on the status topic."""
    settings = Settings.from_env(bootstrap_servers=broker.bootstrap, topic_prefix=f"bench.{run_id}.retention.",
                                 partitions=opts.partitions)
    keep = "1m"
    settings = replace(settings, retention_any_terminal=keep)
    filled = await fill(settings, opts.retention, 0, finished_age=timedelta(hours=1))
    topic = Topics.for_settings(settings).status
    consumer = committed_reader(settings, fetch_max_wait_ms=50)
    await consumer.start()
    tps = [TopicPartition(topic, p) for p in range(settings.partitions)]
    consumer.assign(tps)
    await consumer.seek_to_end(*tps)
    began = time.monotonic()
    engine = Service("engine", settings, log_dir, 9, {"HEADRACE_RETENTION_ANY_TERMINAL": keep})
    purged, first_at, last_at = 0, 0.0, 0.0
    try:
        await engine.wait_ready(time.monotonic() + 600)
        ready_s = time.monotonic() - began
        deadline = time.monotonic() + max(120.0, opts.retention / 100)
        while purged < opts.retention and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                tombstones = sum(1 for r in records if r.value is None)
                if tombstones:
                    now = time.monotonic()
                    first_at = first_at or now
                    last_at = now
                    purged += tombstones
        cpu = _cpu_s(engine.pid)
    finally:
        engine.stop()
        await consumer.stop()
    # The purges run from the restore on (due ones are purged in the first turns): timed from the
    # first tombstone to the last, and from the engine's start.
    span = last_at - first_at if purged > 1 else 0.0
    return {
        "instances": opts.retention,
        "fill": filled.to_json(),
        "retention": keep,
        "purged": purged,
        "engine_ready_s": round(ready_s, 3),
        "seconds_first_to_last": round(span, 3),
        "seconds_from_engine_start": round(last_at - began, 3) if purged else None,
        "purges_per_s": round(purged / span, 1) if span > 0 else None,
        "engine_cpu_s": cpu,
    }


# -- the run ------------------------------------------------------------------------------------------


@dataclass
class _Doc:
    command: str
    opts: ScaleOptions
    run_id: str
    broker: dict[str, Any]
    environment: dict[str, Any]
    sizes: list[dict[str, Any]] = field(default_factory=list)
    baseline: dict[str, Any] = field(default_factory=dict)
    retention: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"command": self.command, "run_id": self.run_id, "broker": self.broker,
                "environment": self.environment,
                "options": {"finished": list(self.opts.finished), "running": self.opts.running,
                            "retention_instances": self.opts.retention, "partitions": self.opts.partitions,
                            "requests": self.opts.requests, "tiny": self.opts.tiny},
                "baseline": self.baseline, "sizes": self.sizes, "retention": self.retention,
                "targets": scale_targets(self.sizes, self.retention)}


async def _one_size(broker: Broker, run_id: str, finished: int, opts: ScaleOptions, log_dir: Path,
                    note: Callable[[str], None]) -> dict[str, Any]:
    settings = Settings.from_env(bootstrap_servers=broker.bootstrap, topic_prefix=f"bench.{run_id}.scale{finished}.",
                                 partitions=opts.partitions)
    out: dict[str, Any] = {"finished": finished, "running": opts.running, "loadavg": {}}
    note(f"[{finished}] filling: {finished} finished + {opts.running} running instances")
    filled = await fill(settings, finished, opts.running)
    out["fill"] = filled.to_json()
    note(f"[{finished}] filled in {filled.seconds:.1f} s ({out['fill']['records_per_s']} records/s)")
    out["loadavg"]["before_engine"] = os.getloadavg()
    engine, out["engine"] = await _engine_cold_start(settings, log_dir / f"scale{finished}", 0)
    note(f"[{finished}] engine ready in {out['engine']['ready_s']} s, read {out['engine']['read_at_restore']}")
    try:
        out["loadavg"]["before_join"] = os.getloadavg()
        out["join"] = await _join(engine, settings, log_dir / f"scale{finished}", opts.probe_rate)
        note(f"[{finished}] join: kept {out['join']['kept_by_first']}, restored again "
             f"{out['join']['restored_by_first']}, kept partitions stopped {out['join']['kept_max_stop_s']} s")
    finally:
        engine.stop()
    out["loadavg"]["before_api"] = os.getloadavg()
    out["api"] = await _api(settings, filled, log_dir / f"scale{finished}", opts)
    note(f"[{finished}] API cold {out['api']['cold_start_s']} s, warm {out['api']['warm_start_s']} s")
    out["loadavg"]["before_client"] = os.getloadavg()
    out["client"] = await _client(settings, filled)
    out["loadavg"]["end"] = os.getloadavg()
    return out


async def run_scale(args: argparse.Namespace, command: str) -> dict[str, Any]:
    from .session import _environment

    opts = options_from_args(args)
    run_id = new_run_id()
    opts.out.mkdir(parents=True, exist_ok=True)
    log_dir = opts.out / f"logs-scale-{run_id}"

    def note(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    if args.bootstrap_servers:
        broker = Broker.given(args.bootstrap_servers)
    else:
        note("starting a private Kafka broker on free ports")
        broker = await asyncio.to_thread(Broker.start_local)
    doc = _Doc(command, opts, run_id, {"bootstrap": broker.bootstrap, "source": broker.source,
                                       "version": broker.version}, _environment())
    try:
        # A fresh broker's first consumer group waits for `__consumer_offsets` to be created (the
        # coordinator is "not available" meanwhile), which is not what an engine's start costs:
        # one engine on empty topics takes that first, unmeasured.
        warm_up = Settings.from_env(bootstrap_servers=broker.bootstrap, topic_prefix=f"bench.{run_id}.warm-up.",
                                    partitions=opts.partitions)
        await ensure_topics(warm_up)
        engine, _ = await _engine_cold_start(warm_up, log_dir / "warm-up", 0)
        engine.stop()
        for finished in opts.finished:
            doc.sizes.append(await _one_size(broker, run_id, finished, opts, log_dir, note))
        empty = Settings.from_env(bootstrap_servers=broker.bootstrap, topic_prefix=f"bench.{run_id}.empty.",
                                  partitions=opts.partitions)
        await ensure_topics(empty)
        engine, doc.baseline["engine_empty_topics"] = await _engine_cold_start(empty, log_dir / "empty", 0)
        engine.stop()
        if opts.retention:
            note(f"retention: {opts.retention} finished instances, all due")
            doc.retention = await _retention(broker, run_id, opts, log_dir / "retention")
    finally:
        await broker.close(run_id, keep_topics=args.keep_topics, note=note)
    result = doc.to_json()
    result["environment"]["loadavg_at_end"] = os.getloadavg()
    path = opts.out / f"bench-scale-{run_id}.json"
    path.write_text(json.dumps(result, indent=2, default=str))
    path.with_suffix(".md").write_text(markdown(result))
    print_table(result)
    note(f"wrote {path} and {path.with_suffix('.md').name}")
    return result


# -- targets and the table ----------------------------------------------------------------------------


def _ms(figures: dict[str, Any], key: str) -> str:
    value = figures.get(key)
    return "-" if value is None else f"{value:.1f}"


def _verdict(met: bool | None, comparable: bool) -> str:
    if met is None:
        return "no figure"
    return ("met" if met else "missed") if comparable else "not comparable (smaller run)"


def scale_targets(sizes: list[dict[str, Any]], retention: dict[str, Any]) -> list[dict[str, Any]]:
    """Every figure of each size (figure, measured, target, verdict); targets are the issue's, stated
    for 10^6 finished + 10^4 running (a smaller run is compared but not judged)."""
    rows: list[dict[str, Any]] = []

    def add(size: str, figure: str, measured: Any, target: str = "", met: bool | None = None,
            comparable: bool = True) -> None:
        verdict = _verdict(met, comparable) if target else ""
        rows.append({"size": size, "figure": figure, "measured": measured, "target": target, "verdict": verdict})

    for s in sizes:
        size = f"{s['finished']:,} + {s['running']:,}"
        full = s["finished"] >= 1_000_000 and s["running"] >= 10_000
        e, j, a, c = s["engine"], s["join"], s["api"], s["client"]
        add(size, "fill (records/s)", f"{s['fill']['records_per_s']:,} ({s['fill']['seconds']} s)")
        add(size, "engine cold start to ready (s)", e["ready_s"], "<= 3 s", e["ready_s"] <= 3, full)
        add(size, "instances read at restore (running), engine errors",
            f"{e['read_at_restore']:,} ({e['running_restored']:,}), {e['engine_errors']}",
            "running only, no error", e["read_at_restore"] <= s["running"] and not e["engine_errors"])
        add(size, "join: partitions kept / restored again", f"{j['kept_by_first']} / {j['restored_by_first']}",
            "no kept partition restored", bool(j["kept_by_first"]) and not j["restored_by_first"], full)
        add(size, "join: longest stop of a kept / moved partition (s)",
            f"{j['kept_max_stop_s']} / {j['moved_max_stop_s']}")
        add(size, "API cold start, empty index (s)", a["cold_start_s"])
        add(size, "API warm start from its checkpoint (s)", a["warm_start_s"], "<= 3 s", a["warm_start_s"] <= 3, full)
        add(size, "API RSS (MiB, after the queries / peak)", f"{a['rss_mib']} / {a['peak_rss_mib']}",
            "<= 300 MiB", a["peak_rss_mib"] is not None and a["peak_rss_mib"] <= 300, full)
        for name, q in a["list"].items():
            p99 = q["ms"].get("p99")
            own = a["index_page_ms"][name]
            add(size, f"list page p50 / p99 (ms), {name}; its index query alone",
                f"{_ms(q['ms'], 'p50')} / {_ms(q['ms'], 'p99')}; {_ms(own, 'p50')} / {_ms(own, 'p99')}",
                "p99 <= 50 ms",
                p99 is not None and p99 <= 50, full)
        got = a["get_by_id"]
        add(size, "GET by ID p50 / p99 (ms)", f"{_ms(got['ms'], 'p50')} / {_ms(got['ms'], 'p99')}",
            "found every one", got["found"] == got["requests"])
        if "error" in c:
            add(size, "DaprWorkflowClient() (s)", "error", "<= 0.2 s", False, full)
        else:
            add(size, "DaprWorkflowClient() (s)", c["constructor_s"], "<= 0.2 s", c["constructor_s"] <= 0.2, full)
            add(size, "client first get / second partition (s), RSS (MiB)",
                f"{c['first_get_s']} / {c['second_get_s']}, {round(c['max_rss_mib'])}")
    if retention:
        add("retention", "purges/s (all due, one engine)",
            f"{retention['purges_per_s']} ({retention['purged']:,} in {retention['seconds_first_to_last']} s, "
            f"all gone {retention['seconds_from_engine_start']} s after the engine's start)")
    return rows


def print_table(doc: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"headrace bench scale ({doc['environment']['cores']} cores, load "
                        f"{', '.join(f'{x:.1f}' for x in doc['environment']['loadavg_at_start'])} at start)")
    for column in ("size", "figure", "measured", "target", "verdict"):
        table.add_column(column)
    base = doc["baseline"].get("engine_empty_topics")
    if base:
        table.add_row("empty", "engine cold start to ready (s)", str(base["ready_s"]), "", "")
    for row in doc["targets"]:
        table.add_row(*(str(row[k]) for k in ("size", "figure", "measured", "target", "verdict")))
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)
    console.print(table)


def markdown(doc: dict[str, Any]) -> str:
    """The table of `print_table` in Markdown, with the command that made it."""
    lines = [f"`{doc['command']}` ({doc['environment']['cores']} cores, load average "
             f"{', '.join(f'{x:.2f}' for x in doc['environment']['loadavg_at_start'])} at start, "
             f"{', '.join(f'{x:.2f}' for x in doc['environment']['loadavg_at_end'])} at the end)", "",
             "| size (finished + running) | figure | measured | target | verdict |", "|---|---|---|---|---|"]
    base = doc["baseline"].get("engine_empty_topics")
    if base:
        lines.append(f"| empty | engine cold start to ready (s) | {base['ready_s']} | | |")
    lines += [f"| {r['size']} | {r['figure']} | {r['measured']} | {r['target']} | {r['verdict']} |"
              for r in doc["targets"]]
    return "\n".join(lines) + "\n"
