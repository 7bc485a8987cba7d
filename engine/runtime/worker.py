"""The activity worker: runs work items from a task queue and reports their results.

At-least-once, and never again once finished. An item's offset counts as finished once its result
is written. Activities finish out of order, so each commit carries two things (the technique of
Confluent's parallel consumer): the offset is the lowest unfinished offset of the partition, and
the commit's metadata string lists the finished offsets above it (`encode_finished`). Whoever
reads the partition next (this worker after a restart, or another one after a rebalance) reads that
metadata back and skips those offsets instead of running them again. A worker killed mid-activity
leaves its unfinished items to be delivered again; the engine drops a second result for a task.

Stopping (`stop()`, SIGTERM in `headrace worker`) stops fetching, gives running activities
`shutdown_grace_seconds` to finish, commits, and abandons what still runs: not committed, so it is
delivered again, and not waited for. Sync activities run on daemon threads (`DaemonThreadPool`)
because `ThreadPoolExecutor` joins its threads at interpreter exit, whatever `shutdown(wait=False)`
says: a SIGTERM used to wait for the longest running activity (minutes).
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import contextvars
import logging
import queue
import threading
import time
import zlib
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum, auto
from typing import Any, Protocol, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import CommitFailedError, KafkaError, OffsetMetadataTooLargeError
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata

from .. import tracing
from ..core import unknown_code
from ..core.apps import check_app_id
from ..core.codec import encode
from ..core.commands import ActivityResult, ActivityWorkItem, InstanceMessage
from ..errors import DecodeError
from ..sdk.activity import oversized_result, run_activity
from ..sdk.registry import Registry
from ..settings import FETCH_MAX_WAIT_MS, Settings
from ..topics import Topics, dead_letter_value_bytes, ensure_topics, producer_options
from ..wire.records import WORK_ITEMS, encode_dead_letter
from . import logs
from .apps import AppTopics
from .membership import generation, kept_across
from .telemetry import GaugeRefresh, Problem, WorkerMetrics, partition_offsets

__all__ = ["ActivityWorker", "DaemonThreadPool", "WorkSource", "decode_finished", "encode_finished"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Kafka refuses commit metadata over `offset.metadata.max.bytes` (4096 by default); stay under it.
METADATA_BUDGET = 4000
#: Decoded bitmaps larger than this are refused: metadata is input, and zlib can inflate 1000-fold.
_MAX_BITMAP_BYTES = 4 * 1024 * 1024
_METADATA_PREFIX = "hr1:"
#: Commits at most this often while running (always on stop and on rebalance). Encoding the
#: finished set is linear in its size, which can be large behind one long activity.
COMMIT_INTERVAL_S = 0.2
#: Record header of a work item handed on because its activity was unknown: since when (ISO 8601)
#: it has waited for a worker that knows it (`engine.core.unknown_code`).
UNKNOWN_SINCE_HEADER = "headrace-unknown-since"


def _pack(bitmap: bytes) -> str:
    return _METADATA_PREFIX + base64.b64encode(zlib.compress(bitmap, 9)).decode("ascii")


def encode_finished(base: int, finished: Iterable[int], budget: int = METADATA_BUDGET) -> tuple[str, int]:
    """Commit metadata naming the offsets above `base` (the committed offset) that are finished.

    A bitmap (bit i = offset base + 1 + i), zlib-compressed, base64. Returns the metadata and how
    many finished offsets it leaves out: when the whole bitmap does not fit `budget` characters,
    the longest prefix that does is kept (the left-out offsets would run again after a restart).
    """
    above = sorted(o for o in finished if o > base)
    if not above:
        return "", 0
    bitmap = bytearray((above[-1] - base + 7) // 8)
    for offset in above:
        index = offset - base - 1
        bitmap[index >> 3] |= 1 << (index & 7)
    text = _pack(bytes(bitmap))
    if len(text) <= budget:
        return text, 0
    fits, too_long = 0, len(bitmap)
    while too_long - fits > 1:
        middle = (fits + too_long) // 2
        if len(_pack(bytes(bitmap[:middle]))) <= budget:
            fits = middle
        else:
            too_long = middle
    kept = sum(1 for o in above if o - base - 1 < fits * 8)
    return (_pack(bytes(bitmap[:fits])) if kept else ""), len(above) - kept


def decode_finished(base: int, metadata: str) -> set[int]:
    """The finished offsets `encode_finished` put in `metadata`; empty for anything else."""
    if not metadata.startswith(_METADATA_PREFIX):
        return set()
    try:
        packed = base64.b64decode(metadata[len(_METADATA_PREFIX):], validate=True)
        inflate = zlib.decompressobj()
        bitmap = inflate.decompress(packed, _MAX_BITMAP_BYTES)
        if inflate.unconsumed_tail:
            raise ValueError("bitmap too large")
    except (ValueError, zlib.error) as exc:
        log.warning("ignoring unreadable commit metadata at offset %d (%s)", base, exc)
        return set()
    return {base + 1 + (i << 3) + bit for i, byte in enumerate(bitmap) if byte for bit in range(8) if byte >> bit & 1}


class DaemonThreadPool(concurrent.futures.Executor):
    """A fixed-size thread pool whose threads never hold the process open.

    `ThreadPoolExecutor` registers its threads to be joined at interpreter exit, so one activity
    that runs for minutes keeps a stopping worker alive for minutes. Here the threads are daemons:
    an activity still running when the process ends is simply cut off (its item was not committed,
    so it is delivered again).

    `run_soon` is what the worker hands sync activities to: `loop.run_in_executor(pool, ...)`
    without the `concurrent.futures.Future` between the thread and the loop (its lock and
    condition, and the callbacks that copy its outcome to the loop's future). For an activity that
    returns at once that hand-off was a quarter of the worker's CPU (issue 17: `headrace bench`
    with the bench's activity made `async`, which needs no thread, as the measure of it). The call
    runs in a copy of the caller's context, as `asyncio.to_thread` runs it, so a sync activity's
    log lines carry the fields its task set (`runtime.logs.set_context`).
    """

    def __init__(self, max_workers: int, thread_name_prefix: str = "pool") -> None:
        self._max_workers = max_workers
        self._prefix = thread_name_prefix
        self._queue: queue.SimpleQueue[_ExecutorCall | _LoopCall | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        #: Jobs finished and not yet matched by a new one: how many threads wait for work, until
        #: the pool is full (past that it only grows, and decides nothing: threads never exit).
        self._idle = 0
        self._lock = threading.Lock()
        self._shutdown = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._put(_ExecutorCall(future, fn, args, kwargs))
        return future

    def run_soon(self, fn: Callable[..., T], /, *args: Any) -> asyncio.Future[T]:
        """`fn(*args)` on one of the threads, as a future of the running loop (cancelling it before
        a thread takes the call skips the call)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._put(_LoopCall(future, fn, args, loop, contextvars.copy_context()))
        return future

    def _put(self, job: _ExecutorCall | _LoopCall) -> None:
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            self._queue.put(job)
            if self._idle:
                self._idle -= 1
            elif len(self._threads) < self._max_workers:
                thread = threading.Thread(target=self._work, name=f"{self._prefix}_{len(self._threads)}",
                                          daemon=True)
                thread.start()
                self._threads.append(thread)

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                self._queue.put(None)  # wake the next thread, so every thread sees the end
                return
            job.run()
            del job  # nothing of the call stays alive while the thread waits for the next one
            with self._lock:
                self._idle += 1

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            if cancel_futures:
                with contextlib.suppress(queue.Empty):
                    while True:
                        job = self._queue.get_nowait()
                        if job is not None:
                            job.cancel()
            self._queue.put(None)
        if wait:
            for thread in self._threads:
                thread.join()


class _ExecutorCall:
    """A `submit`: the call settles a `concurrent.futures.Future` (the `Executor` contract)."""

    __slots__ = ("args", "fn", "future", "kwargs")

    def __init__(self, future: concurrent.futures.Future[Any], fn: Callable[..., Any], args: tuple[Any, ...],
                 kwargs: dict[str, Any]) -> None:
        self.future, self.fn, self.args, self.kwargs = future, fn, args, kwargs

    def run(self) -> None:
        if self.future.set_running_or_notify_cancel():
            try:
                self.future.set_result(self.fn(*self.args, **self.kwargs))
            except BaseException as exc:
                self.future.set_exception(exc)

    def cancel(self) -> None:
        self.future.cancel()


class _LoopCall:
    """A `run_soon`: the call, in its caller's context, settles an asyncio future on its loop."""

    __slots__ = ("args", "context", "fn", "future", "loop")

    def __init__(self, future: asyncio.Future[Any], fn: Callable[..., Any], args: tuple[Any, ...],
                 loop: asyncio.AbstractEventLoop, context: contextvars.Context) -> None:
        self.future, self.fn, self.args, self.loop, self.context = future, fn, args, loop, context

    def run(self) -> None:
        if self.future.cancelled():  # read across threads, as a hint (`_settle` looks again)
            return
        try:
            value = self.context.run(self.fn, *self.args)
        except BaseException as exc:
            self._settle_soon(None, exc)
        else:
            self._settle_soon(value, None)

    def cancel(self) -> None:
        """From any thread: an asyncio future is cancelled on its loop's thread."""
        with contextlib.suppress(RuntimeError):  # its loop has closed: nobody waits for it
            self.loop.call_soon_threadsafe(self.future.cancel)

    def _settle_soon(self, value: Any, error: BaseException | None) -> None:
        """Have the future settled on its loop's thread (dropped if that loop is closed: the
        process is stopping, and the item, not committed, is delivered again)."""
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(_settle, self.future, value, error)


def _settle(future: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    """On the loop's thread: the outcome, unless the future was cancelled meanwhile."""
    if future.cancelled():
        return
    if error is None:
        future.set_result(value)
    elif isinstance(error, StopIteration):
        # An asyncio future refuses StopIteration (`set_exception` raises TypeError, and the
        # future would never settle: its item would hold a slot for good); a generator turns it
        # into a RuntimeError too (PEP 479).
        wrapped = RuntimeError(f"the call raised StopIteration: {error!r}")
        wrapped.__cause__ = error
        future.set_exception(wrapped)
    else:
        future.set_exception(error)


class HandOn(Enum):
    """What became of a work item whose activity this worker does not know (`Worker._hand_on`)."""

    HANDED = auto()  # written to the next partition for another worker
    RUN_HERE = auto()  # waited long enough: run here, which fails it with UnknownActivityError
    NOT_OURS = auto()  # the partition moved to another worker during the pause


#: Seconds between tries of a write the worker cannot go on without (`_written`).
WRITE_RETRY_S = 1.0


async def _written(producer: AIOKafkaProducer, what: str, topic: str, value: bytes | None, *,
                   first: Callable[[], Awaitable[None]] | None = None, **kwargs: Any) -> None:
    """Write a record its work item's offset must not move past without (a result, a dead letter,
    an item handed on), trying again while Kafka is away: the item is not finished until it is
    written, and a failure left to end the handling would hold the partition's commit point there
    for as long as this process lives. `first` runs before each try (making a topic it needs)."""
    while True:
        try:
            if first is not None:
                await first()
            await producer.send_and_wait(topic, value, **kwargs)
            return
        except KafkaError as exc:
            log.warning("could not write %s (%s); retrying", what, exc)
            await asyncio.sleep(WRITE_RETRY_S)


class _Partition:
    """One assigned task partition: what runs, and what finished above the lowest unfinished offset."""

    __slots__ = ("committed", "finished", "next", "running")

    def __init__(self, committed: int, finished: set[int]) -> None:
        self.running: set[int] = set()
        #: Finished offsets not yet below the commit point: from this run, or read from the
        #: committed metadata (finished by an earlier owner, not fetched yet).
        self.finished = finished
        #: The offset after the last one fetched (until a fetch: the committed offset).
        self.next = committed
        self.committed: tuple[int, str] | None = None

    def commit_point(self, position: int | None, budget: int) -> tuple[int, str, int]:
        """(offset to commit, metadata, finished offsets the metadata had to leave out)."""
        base = min(self.running) if self.running else max(self.next, position or 0)
        if self.finished and min(self.finished) <= base:
            self.finished = {o for o in self.finished if o > base}
        metadata, dropped = encode_finished(base, self.finished, budget)
        return base, metadata, dropped


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: ActivityWorker) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.worker._revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.worker._keep_held(set(assigned))
        for tp in assigned:
            self.worker.metrics.progress(tp.partition)  # a new partition has had no time to progress
        # In the group, even with nothing assigned (more workers than partitions): a standby is ready.
        self.worker.ready.set()


class ActivityExecutor(Protocol):
    """Where a worker's items run: this process's registry (`LocalActivities`, the default), or
    elsewhere (`api.grpc.work`: apps connected over durabletask's protocol). The worker keeps the
    consumption, the commits, the hand-on of unknown names and the result writing."""

    def knows(self, name: str) -> bool:
        """Whether `run` can run this activity (else the item is handed on to another worker)."""
        ...

    async def run(self, item: Any) -> InstanceMessage:
        """Run the item (an `ActivityWorkItem`, or what the worker's `WorkSource` reads); the
        activity's own failure is the result's failure, never raised. The result goes to `results`."""
        ...


@dataclass(frozen=True, slots=True)
class WorkSource:
    """What a worker consumes: a topic, in a consumer group, its records read by `decode`. The
    default is the task queue's activity items; `headrace grpc` also runs a worker over the turns
    of remote workflows (`api.grpc.work`), with the same commits and result writing."""

    topic: str
    group_id: str
    decode: Callable[[bytes], Any]


class LocalActivities:
    """Activities of a registry in this process: sync ones on `pool`'s threads, async on the loop."""

    def __init__(self, registry: Registry, pool: DaemonThreadPool) -> None:
        self.registry = registry
        self.pool = pool

    def knows(self, name: str) -> bool:
        return self.registry.get_activity(name) is not None

    async def run(self, item: ActivityWorkItem) -> ActivityResult:
        return await run_activity(self.registry, item, self.pool.run_soon)


class ActivityWorker:
    """A consumer-group member running activities for `registry` (see the module docstring), or
    through `executor` when given."""

    def __init__(self, registry: Registry, settings: Settings | None = None,
                 executor: ActivityExecutor | None = None, source: WorkSource | None = None) -> None:
        self.settings = settings or Settings.from_env()
        self.registry = registry
        self.topics = Topics.for_settings(self.settings)
        #: The results topics of the apps whose workflows call this app's activities (`runtime.apps`).
        self.apps = AppTopics(self.settings)
        self.source = source or WorkSource(self.topics.tasks,
                                           self.settings.topic(f"workers.{self.settings.task_queue}"),
                                           WORK_ITEMS.decode)
        self.group_id = self.source.group_id
        self.metrics = WorkerMetrics()
        self._limit = self.settings.activity_concurrency
        self._pool = DaemonThreadPool(self._limit, thread_name_prefix="headrace-activity")
        self.executor: ActivityExecutor = executor or LocalActivities(registry, self._pool)
        self._running: set[asyncio.Task[None]] = set()
        #: Partitions with items fetched or finished since the last report: their progress and the
        #: running gauge are reported once per poll (`_report`), not per item (prometheus_client
        #: takes a lock per update, and these were several per activity: issue 17).
        self._progressed: set[int] = set()
        self._partitions: dict[TopicPartition, _Partition] = {}
        #: Revoked partitions' state, with the group generation, until the next assignment says
        #: whether they stay here (`runtime.membership`): kept, their running items do not run twice.
        self._held: dict[TopicPartition, tuple[_Partition, int]] = {}
        #: Partitions given back by a rebalance and kept as they were (a test's evidence).
        self.kept = 0
        self._consumer: AIOKafkaConsumer | None = None
        self._budget = METADATA_BUDGET
        self._last_commit = 0.0
        self._gauges = GaugeRefresh()
        self._stopping = asyncio.Event()
        self._stop_requested: float | None = None
        self._slot_free = asyncio.Event()
        self.ready = asyncio.Event()
        self.completed = 0
        #: Activities still running when the grace period ended (delivered again elsewhere).
        self.abandoned = 0

    async def run(self) -> None:
        await ensure_topics(self.settings)
        consumer = AIOKafkaConsumer(
            **self.settings.client_kwargs(), group_id=self.group_id,
            group_instance_id=self.settings.group_instance_id,
            enable_auto_commit=False, isolation_level="read_committed", auto_offset_reset="earliest",
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        )
        consumer.subscribe([self.source.topic], listener=_Rebalance(self))
        # No linger: a result waited 1 ms for company it rarely had at low load, and at high load
        # aiokafka batches anyway while the node's one request is in flight. chain-5 (issue 17, two
        # alternated runs): worker 0.42-0.44 -> 0.38 CPU ms per workflow, 551-590 -> 599-600 wf/s;
        # chain-1-latency p50 14.6-15.0 -> 12.5 ms.
        producer = AIOKafkaProducer(**producer_options(self.settings))
        admin = AIOKafkaAdminClient(**self.settings.client_kwargs())
        await producer.start()
        await admin.start()
        await consumer.start()
        self._consumer = consumer
        log.info("activity worker started (group %s, %d activities)", self.group_id, len(self.registry.activities))
        try:
            while not self._stopping.is_set():
                await self._poll_once(consumer, producer, admin)
            await self._drain(consumer)
        finally:
            self._consumer = None
            await consumer.stop()
            await producer.stop()
            await admin.close()
            self._pool.shutdown(wait=False, cancel_futures=True)

    def stop(self) -> None:
        if self._stop_requested is None:
            self._stop_requested = time.monotonic()
        self._stopping.set()

    def problems(self) -> list[Problem]:
        """Partitions with tasks waiting and nothing started or finished for `stall_seconds`."""
        busy = f" ({len(self._running)} of {self._limit} activity slots busy)"
        return self.metrics.stalls.stalled(self.settings.stall_seconds, busy)

    async def _poll_once(self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer,
                         admin: AIOKafkaAdminClient) -> None:
        free = self._limit - len(self._running)
        assigned = consumer.assignment()
        if free <= 0:
            # Backpressure: stop fetching until a slot frees, rather than buffering unbounded work.
            consumer.pause(*assigned)
            self._slot_free.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._slot_free.wait(), timeout=0.1)
            await self._commit(consumer)
            self._observe(consumer)
            return
        consumer.resume(*assigned)
        batches = await consumer.getmany(timeout_ms=50, max_records=free)
        if assigned:
            self.ready.set()
        # Records are begun without an await in between: the rebalance listener runs during any
        # await and commits up to the consumer's position, which is already past this batch.
        unknown = {tp: records for tp, records in batches.items() if tp not in self._partitions}
        for tp, records in batches.items():
            if tp not in unknown:
                self._begin(tp, self._partitions[tp], records, producer)
        if unknown:
            await self._load(list(unknown), admin)
            for tp, records in unknown.items():
                state = self._partitions.get(tp)
                if state is not None:  # else revoked meanwhile: the new owner starts at its commit
                    self._begin(tp, state, records, producer)
        await self._commit(consumer)
        self._observe(consumer)

    def _begin(self, tp: TopicPartition, state: _Partition, records: list[ConsumerRecord[bytes, bytes]],
               producer: AIOKafkaProducer) -> None:
        if records:
            self._progressed.add(tp.partition)
        for record in records:
            state.next = record.offset + 1
            if record.offset in state.running:
                continue  # still running here: a rebalance gave its partition back (`_keep_held`)
            if record.offset in state.finished:
                # Finished before a restart or rebalance (the committed metadata says so).
                self.metrics.run("-", "skipped")
                continue
            state.running.add(record.offset)
            task = asyncio.create_task(self._handle(tp, state, record, producer))
            self._running.add(task)
            task.add_done_callback(self._finished)

    async def _load(self, tps: list[TopicPartition], admin: AIOKafkaAdminClient) -> None:
        """Reads the committed offsets and metadata of newly fetched partitions (which to skip)."""
        while True:
            try:
                committed = await admin.list_consumer_group_offsets(self.group_id, partitions=tps)
                break
            except KafkaError as exc:
                if self._stopping.is_set():
                    return  # nothing of these partitions ran; their items are delivered again
                # Running the items without knowing which already ran could run them twice.
                log.warning("could not read the committed offsets of %s (%s); retrying", tps, exc)
                self._report()  # items of other partitions go on finishing meanwhile
                await asyncio.sleep(1)  # back-off between attempts while Kafka is away
        consumer = self._consumer
        for tp in tps:
            if consumer is None or tp not in consumer.assignment():
                continue
            entry = committed.get(tp)
            offset = entry.offset if entry is not None and entry.offset >= 0 else 0
            finished = decode_finished(offset, entry.metadata) if entry is not None and entry.offset >= 0 else set()
            if finished:
                log.info("%s: %d item(s) above offset %d finished before; they will not run again",
                         tp, len(finished), offset)
            self._partitions[tp] = _Partition(offset, finished)

    async def _revoked(self, revoked: set[TopicPartition]) -> None:
        consumer = self._consumer
        if consumer is not None:
            await self._commit(consumer, only=revoked, force=True)
        held_in = generation(consumer)
        for tp in revoked:
            state = self._partitions.pop(tp, None)
            if state is not None:
                self._held[tp] = (state, held_in)
            self.metrics.forget(tp.partition)
            self._progressed.discard(tp.partition)

    def _keep_held(self, assigned: set[TopicPartition]) -> None:
        """Take back the state of revoked partitions that the new assignment returns, when nobody
        else can have owned them in between; the others are read again from their commit (`_load`)."""
        now = generation(self._consumer)
        held, self._held = self._held, {}
        for tp, (state, held_in) in held.items():
            if tp in assigned and kept_across(held_in, now):
                self._partitions[tp] = state
                self.kept += 1

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._slot_free.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("activity handling crashed", exc_info=task.exception())

    async def _handle(self, tp: TopicPartition, state: _Partition, record: ConsumerRecord[bytes, bytes],
                      producer: AIOKafkaProducer) -> None:
        try:
            item = self.source.decode(record.value or b"")
            if getattr(item, "reply_app_id", None) is not None:
                check_app_id(item.reply_app_id, "reply_app_id")
        except Exception as exc:  # a DecodeError, or anything else a hostile record provokes
            reason = str(exc) if isinstance(exc, DecodeError) else f"undecodable record: {type(exc).__name__}: {exc}"
            letter = encode_dead_letter(reason, tp.topic, tp.partition, record.offset, record.key, record.value,
                                        dead_letter_value_bytes(self.settings))
            await _written(producer, "a dead letter", self.topics.dead_letter, letter, key=record.key)
            self.metrics.dead_letters.labels("invalid_work_item").inc()
            self._done(tp, state, record.offset)
            return
        logs.set_context(item.instance_id, None, tp.partition)  # this task's log lines
        if not self.executor.knows(item.name):
            handed = await self._hand_on(tp, state, record, item.name, producer)
            if handed is HandOn.NOT_OURS:
                return  # the partition moved during the pause: its new owner reads the item again
            if handed is HandOn.HANDED:
                self.metrics.run("unregistered", "handed_on")
                self._done(tp, state, record.offset)
                return
        started = time.monotonic()
        # One span per attempt, child of the turn that scheduled it (the item's headers).
        is_activity = isinstance(item, ActivityWorkItem)  # else a remote workflow's turn (`WorkSource`)
        span = tracing.ActivitySpan(item, record.headers, tp.partition) if is_activity and tracing.enabled() else None
        result = await self.executor.run(item)
        outcome = "completed" if getattr(result, "failure", None) is None else "failed"
        payload = encode(result)
        if is_activity and len(payload) > self.settings.max_payload_bytes:
            payload = encode(oversized_result(item, len(payload), self.settings.max_payload_bytes))
            outcome = "too_large"
        # A workflow of another app called this activity: the answer goes to that app's engines.
        reply_app_id = getattr(item, "reply_app_id", None)
        reply = reply_app_id if reply_app_id != self.settings.app_id else None
        results = self.apps.of(reply).results
        # Only another app's results topic needs making first: the common result awaits nothing more.
        first: Callable[[], Awaitable[None]] | None = None
        if reply is not None:
            other_app = reply

            async def reply_topic() -> None:
                await self.apps.ensure([other_app])
                await self.apps.track(producer, [results])

            first = reply_topic
        await _written(producer, f"the result of {item.instance_id}", results, payload,
                       key=item.instance_id.encode(), headers=span.result_headers() if span is not None else None,
                       first=first)
        if span is not None:
            span.end(getattr(result, "failure", None))
        self.completed += 1
        activity = item.name if self.executor.knows(item.name) else "unregistered"
        self.metrics.run(activity, outcome, time.monotonic() - started)
        self._done(tp, state, record.offset)

    async def _hand_on(self, tp: TopicPartition, state: _Partition, record: ConsumerRecord[bytes, bytes],
                       name: str, producer: AIOKafkaProducer) -> HandOn:
        """A work item whose activity this worker does not know is not failed: after a pause it is
        written again to the next partition of the task topic (a partition of another worker, in
        turn), with the time it was first seen in a header, so a worker that knows the name runs it
        (a rolling deploy, or a worker of another version). RUN_HERE once it has waited
        `unknown_code_timeout`: then it runs here and fails with `UnknownActivityError`. NOT_OURS
        when the partition was revoked during the pause: its offset was not committed, so the new
        owner reads the item again, and a copy written as well would run it twice (found by
        `headrace chaos rolling-deploy`: each rebalance of the deploy added a copy)."""
        now = datetime.now(UTC)
        since = _unknown_since(record.headers) or now
        recheck = unknown_code.next_check(since, now, timedelta(seconds=self.settings.unknown_code_timeout))
        if recheck is None:
            return HandOn.RUN_HERE
        if since == now:
            log.warning("%s: handing the item on for a worker that knows it", unknown_code.waiting_reason(
                "activity", name, since))
        # Paced, so an item no worker knows costs a record every few seconds, not a busy loop.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=(recheck - now).total_seconds())
        if self._partitions.get(tp) is not state:
            return HandOn.NOT_OURS
        partitions = self._consumer.partitions_for_topic(tp.topic) if self._consumer is not None else None
        target = (tp.partition + 1) % len(partitions) if partitions else tp.partition
        headers = [(k, v) for k, v in record.headers if k != UNKNOWN_SINCE_HEADER]
        headers.append((UNKNOWN_SINCE_HEADER, since.isoformat().encode()))
        await _written(producer, f"a work item of {name!r} handed on", tp.topic, record.value, key=record.key,
                       partition=target, headers=headers)
        return HandOn.HANDED

    def _done(self, tp: TopicPartition, state: _Partition, offset: int) -> None:
        state.running.discard(offset)
        state.finished.add(offset)
        if self._partitions.get(tp) is state:  # not a partition revoked while its item ran
            self._progressed.add(tp.partition)

    async def _drain(self, consumer: AIOKafkaConsumer) -> None:
        """Lets running activities finish within the grace period, then abandons the rest."""
        consumer.pause(*consumer.assignment())
        grace = self.settings.shutdown_grace_seconds
        deadline = (self._stop_requested or time.monotonic()) + grace
        if self._running:
            log.info("stopping: waiting up to %.0f s for %d running activities", grace, len(self._running))
        while self._running and (left := deadline - time.monotonic()) > 0:
            self._slot_free.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._slot_free.wait(), timeout=min(0.5, left))
            await self._commit(consumer)
            self._report()  # a drain that makes progress is not a stall
        abandoned = list(self._running)
        for task in abandoned:
            task.cancel()
        await asyncio.gather(*abandoned, return_exceptions=True)
        if abandoned:
            self.abandoned += len(abandoned)
            self.metrics.runs.labels("-", "abandoned").inc(len(abandoned))
            log.warning("stopping with %d activities still running after the %.0f s grace period: they are "
                        "not committed and will be delivered again", len(abandoned), grace)
        await self._commit(consumer, force=True)
        self._report()

    async def _commit(self, consumer: AIOKafkaConsumer, only: set[TopicPartition] | None = None,
                      force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_commit < COMMIT_INTERVAL_S:
            return
        assigned = consumer.assignment()
        points: dict[TopicPartition, tuple[_Partition, tuple[int, str]]] = {}
        for tp, state in self._partitions.items():
            if tp not in assigned or (only is not None and tp not in only):
                continue
            offsets = partition_offsets(consumer, tp)
            base, metadata, dropped = state.commit_point(offsets[0] if offsets else None, self._budget)
            if (base, metadata) == state.committed:
                continue
            if dropped:
                self.metrics.metadata_truncated.inc()
                log.warning("%s: %d finished item(s) above offset %d do not fit the commit metadata; they "
                            "would run again after a restart", tp, dropped, base)
            points[tp] = (state, (base, metadata))
        self._last_commit = now
        if not points:
            return
        try:
            await consumer.commit({tp: OffsetAndMetadata(*point) for tp, (_, point) in points.items()})
        except OffsetMetadataTooLargeError:
            # The brokers allow less than Kafka's default; halve what we send until it fits.
            self._budget = max(0, self._budget // 2)
            log.warning("commit metadata refused as too large; now sending at most %d characters", self._budget)
            return
        except (CommitFailedError, KafkaError) as exc:
            log.info("offset commit skipped (%s); the items may be delivered again", exc)
            return
        for state, point in points.values():
            state.committed = point

    def _report(self) -> None:
        """Progress since the last report, and the running gauge."""
        for partition in self._progressed:
            self.metrics.progress(partition)
        self._progressed.clear()
        self.metrics.running.set(len(self._running))

    def _observe(self, consumer: AIOKafkaConsumer) -> None:
        """After every poll: `_report`, and (once a second) the lag gauges."""
        self._report()
        if not self._gauges.due():
            return
        for tp in consumer.assignment():
            offsets = partition_offsets(consumer, tp)
            if offsets is None:
                continue
            position, end = offsets
            state = self._partitions.get(tp)
            base = min(state.running) if state is not None and state.running else position
            self.metrics.input_lag(tp.partition, max(0, end - base), max(0, end - position))


def _unknown_since(headers: Sequence[tuple[str, bytes]]) -> datetime | None:
    """When a handed-on work item was first seen by a worker that did not know its activity."""
    for key, value in headers:
        if key == UNKNOWN_SINCE_HEADER:
            try:
                since = datetime.fromisoformat(value.decode())
            except (UnicodeDecodeError, ValueError):
                return None  # a header we did not write: count the wait from now
            return since if since.tzinfo is not None else since.replace(tzinfo=UTC)
    return None
