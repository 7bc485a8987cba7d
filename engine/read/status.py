"""The status follower: every followed instance's latest state, read from the compacted status topic.

One follower serves every reader of the status topic: the Python client (which follows only the
partitions of the instances it is asked about, added as it goes), the REST API (every partition,
with positions for its read barrier, lag for its metrics and an observer that sees every change),
and the tools (the benchmark's and the chaos runs' load generators, which subscribe to changes).

What it guarantees:
- `states` holds the latest decoded state of every instance of the followed partitions (whole,
  or the fields a reader's own `decode` reads); a tombstone (a purge) removes the instance.
  Followed `from_end` (the Python client), only of the instances asked about (`look_up`), at most
  `ASKED_LIMIT` of them: the rest of the partition's records are not decoded. An unreadable
  record (a key that is not UTF-8, a value the codec refuses) is logged and skipped: one bad
  record never stops the follower.
- `position(p)` is the next offset to read; it moves over transaction markers too, so it reaches
  the end offset a `read_committed` reader sees.
- Waiters (`wait_for`, `wait_position`, `changed`) are woken after every poll round; subscribers
  are told of every state applied, in order, so no transient state is missed.
- Nothing awaits the reading task: it outlives any error. A Kafka or network error rebuilds the
  consumer at the positions reached (a whole-cluster restart can leave a consumer broken for
  good); anything else is retried on the same consumer after a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from ..core.state import InstanceState
from ..errors import DecodeError
from ..settings import Settings
from ..topics import Topics, partition_count, partition_for
from ..wire.records import decode_state
from .consumer import committed_reader
from .index import StatusIndex, StatusRecord
from .to_end import latest_of

__all__ = ["Interest", "Observer", "StatusFollower"]

log = logging.getLogger(__name__)

#: Told of every state the follower applies: the instance's new state, or None once it is removed.
Observer = Callable[[str, InstanceState | None], None]
#: Which instances an observer needs the states of (it is still told of every removal). With an
#: index and no observer interested, a record is not decoded at all: the index files it by its
#: summary, and decoding every state was a fifth of the REST API's CPU per start (issue 17).
Interest = Callable[[str], bool]

_POLL_MS = 200
#: Instances a view followed `from_end` keeps asked about (`StatusFollower.asked_limit`).
ASKED_LIMIT = 10_000
_MAX_RECORDS = 5000
#: Back-off before reading again after an error (a pause, not a wait for a condition).
_RETRY_S = 1.0


@dataclass(slots=True)
class _ReadBack:
    """A look-up reading an instance's older records back (`StatusFollower.look_up`)."""

    #: Set once the read-back ended (well or not): other look-ups of the instance wait for it.
    done: asyncio.Future[None]
    #: Whether the follower applied a newer record of the instance meanwhile (a removal included),
    #: which the value read back must not overwrite.
    newer: bool = False


class StatusFollower:
    """Follows the status topic (every partition, or those added with `follow`) from the beginning."""

    def __init__(self, settings: Settings, *, partitions: Iterable[int] | None = None,
                 observer: Observer | None = None, interest: Interest | None = None,
                 index: StatusIndex | None = None, from_end: bool = False,
                 decode: Callable[[bytes], InstanceState] = decode_state) -> None:
        self.settings = settings
        #: How a record becomes the state the view keeps and observers get: a reader that needs a
        #: few fields may read only those (`wire.records.decode_partial_state`).
        self._decode = decode
        #: Whether a state it decodes is whole, so the index may file it without summarizing the
        #: record again (a partial one would be listed by its defaults).
        self._whole = decode is decode_state
        #: Follow partitions from their end when added, and find older states with `look_up`: for
        #: a reader that asks about a few instances (the Python client), so its start and its first
        #: read cost what it asks about, not what the topic holds.
        self.from_end = from_end
        #: Followed `from_end`, the instances asked about (`look_up`), least recently asked first:
        #: the only ones whose records are decoded and kept. A long-lived client that asked about one
        #: instance would otherwise decode and keep every state written to its partition, its memory
        #: and CPU growing with the whole system's traffic rather than with what it asks about.
        self._asked: OrderedDict[str, None] = OrderedDict()
        #: Look-ups reading an instance's older records back (`_ReadBack`), by instance.
        self._reading: dict[str, _ReadBack] = {}
        #: The most instances kept asked about; the least recently asked one no observer watches is
        #: let go beyond it (asked again, it is read back again).
        self.asked_limit = ASKED_LIMIT
        self.topic = Topics.for_settings(settings).status
        #: The in-memory view; stays empty when an on-disk `index` keeps the states instead (read
        #: them with `get`). With an index, reading starts at its checkpoint, not the beginning.
        self.states: dict[str, InstanceState] = {}
        self.index = index
        self._batch: list[StatusRecord] = []
        #: Set once the partitions followed from `start()` were read to the end they had then.
        self.caught_up = asyncio.Event()
        #: Partitions of the status topic (known after `start()`).
        self.partitions = 0
        self._initial = None if partitions is None else tuple(partitions)
        self._observers: list[tuple[Observer, Interest | None]] = [] if observer is None else [(observer, interest)]
        #: Next offset to read, per followed partition.
        self._positions: dict[int, int] = {}
        #: Partitions still on their first read, with the end offset it must reach.
        self._targets: dict[int, int] = {}
        self._reached: dict[int, asyncio.Event] = {}
        #: The partitions followed from `start()` whose first read has not reached its end yet.
        self._first_reads: set[int] = set()
        self._changed = asyncio.Condition()
        self._applied_rounds = 0
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        count = await partition_count(self.settings, self.topic)
        if not count:
            raise RuntimeError(f"topic {self.topic} does not exist: start an engine first")
        self.partitions = count
        consumer = committed_reader(self.settings)
        await consumer.start()
        self._consumer = consumer
        wanted = list(range(count) if self._initial is None else self._initial)
        self._first_reads = set(wanted)
        try:
            await self._add(wanted)
        except BaseException:
            self._consumer = None
            await consumer.stop()
            raise
        self._check_targets()
        self._task = asyncio.create_task(self._run(), name=f"headrace-status-follower-{self.topic}")

    async def stop(self) -> None:
        await self._stop_task()
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            with contextlib.suppress(Exception):
                await consumer.stop()

    # -- what it follows ---------------------------------------------------------------------

    def partition_of(self, instance_id: str) -> int:
        """The instance's partition (the Java client's murmur2 partitioner, as the engine's)."""
        return partition_for(instance_id.encode(), self.partitions)

    async def follow(self, partition: int) -> None:
        """Follow `partition` too (read from its beginning); return once it was read up to its end
        as of the first call for it."""
        if partition not in self._reached:
            # Shielded: a caller cancelled in the middle must not leave the reading task stopped
            # (every other look-up and watch of the view frozen) or the lock's work half done.
            await asyncio.shield(self._add_partition(partition))
        await self._reached[partition].wait()

    async def _add_partition(self, partition: int) -> None:
        async with self._lock:
            if partition in self._reached:
                return
            await self._stop_task()
            try:
                await self._add([partition])
                self._check_targets()
            finally:
                self._task = asyncio.create_task(self._run(), name=f"headrace-status-follower-{self.topic}")

    async def follow_instance(self, instance_id: str) -> None:
        await self.follow(self.partition_of(instance_id))

    async def look_up(self, instance_id: str) -> InstanceState | None:
        """Follow the instance's partition and return its latest state. Followed `from_end`, the
        first look-up of an instance reads its latest record back by key (`to_end.latest_of`) up to
        where the follower has read, and from then on the follower keeps its state current."""
        partition = self.partition_of(instance_id)
        await self.follow(partition)
        if not self.from_end:
            return self.get(instance_id)
        while (reading := self._reading.get(instance_id)) is not None:
            await asyncio.shield(reading.done)  # another look-up of it is reading back; if it failed, read again
        if instance_id in self._asked:
            self._asked.move_to_end(instance_id)
        else:
            await self._read_back(instance_id, partition)
            self._let_go(keep=instance_id)
        return self.get(instance_id)

    async def adopt(self, instance_id: str) -> None:
        """Ask about an instance that has no record yet, with no read-back: an ID its caller just
        made up (a generated one). Looked up, a key never written is found nowhere, so its
        read-back would read the whole partition."""
        await self.follow(self.partition_of(instance_id))
        if self.from_end and instance_id not in self._asked and instance_id not in self._reading:
            self._asked[instance_id] = None  # every record of it is still to come: the follower's
            self._let_go(keep=instance_id)

    async def _read_back(self, instance_id: str, partition: int) -> None:
        # Asked from here on: every record of the instance from `before` is the follower's to apply
        # (no await between the two lines), every one below it is the read-back's to find.
        before = self._positions[partition]
        self._asked[instance_id] = None
        reading = self._reading[instance_id] = _ReadBack(asyncio.get_running_loop().create_future())
        try:
            value = await latest_of(self.settings, self.topic, partition, instance_id.encode(), before=before)
        except BaseException:
            self._asked.pop(instance_id, None)  # half-known: the next look-up reads it back again
            self.states.pop(instance_id, None)
            raise
        finally:
            del self._reading[instance_id]
            reading.done.set_result(None)  # its waiters resume after the value below is applied
        if value is not None and not reading.newer:
            self._apply(instance_id.encode(), value)

    def _let_go(self, keep: str) -> None:
        """Forget the least recently asked instances beyond `asked_limit` that no observer watches
        (never `keep`, the one being answered). One an observer still wants counts as asked again,
        so the next call does not look at it first."""
        excess = len(self._asked) - self.asked_limit
        # Each turn looks at the front one and lets it go or moves it behind the rest, so as many
        # turns as there were instances look at each once (a count of the instances left would
        # shrink with every one let go, and stop before the last ones were looked at).
        for _ in range(len(self._asked)):
            if excess <= 0:
                break
            iid = next(iter(self._asked))
            if iid == keep or iid in self._reading or any(_interested(interest, iid)
                                                          for _, interest in self._observers):
                self._asked.move_to_end(iid)
                continue
            del self._asked[iid]
            self.states.pop(iid, None)
            excess -= 1

    async def _add(self, partitions: list[int]) -> None:
        """Assign the followed partitions plus `partitions` (new ones from the beginning). The
        reading task must not run: aiokafka's assign() replaces the assignment and forgets every
        position, so the kept ones are sought back."""
        consumer = self._consumer
        if consumer is None:
            raise RuntimeError("the status follower is not started")
        if not partitions:
            return
        new = [TopicPartition(self.topic, p) for p in partitions]
        consumer.assign([*(TopicPartition(self.topic, p) for p in self._positions), *new])
        for p, offset in self._positions.items():
            consumer.seek(TopicPartition(self.topic, p), offset)
        saved = {} if self.index is None else self.index.positions()
        for tp in new:
            if tp.partition in saved:
                log.info("status follower of %s: partition %d resumes at offset %d (the index's checkpoint)",
                         self.topic, tp.partition, saved[tp.partition])
                consumer.seek(tp, saved[tp.partition])
        fresh = [tp for tp in new if tp.partition not in saved]
        if fresh:
            # Never with no partition: aiokafka then seeks every assigned one, checkpoints included.
            if self.from_end:
                await consumer.seek_to_end(*fresh)
            else:
                await consumer.seek_to_beginning(*fresh)
        ends = await consumer.end_offsets(new)
        for tp in new:
            self._positions[tp.partition] = int(await consumer.position(tp))
            self._reached[tp.partition] = asyncio.Event()
            self._targets[tp.partition] = int(ends[tp])

    # -- subscribers and waiters ---------------------------------------------------------------

    def subscribe(self, observer: Observer, interest: Interest | None = None) -> Callable[[], None]:
        """Tell `observer` of every state applied from now on (of the instances `interest` names,
        and of every removal); returns the unsubscribe function."""
        entry = (observer, interest)
        self._observers.append(entry)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._observers.remove(entry)

        return unsubscribe

    def get(self, instance_id: str) -> InstanceState | None:
        """The instance's latest state read (from the index when there is one)."""
        if self.index is not None:
            return self.index.get(instance_id)
        return self.states.get(instance_id)

    def instance_count(self) -> int:
        return len(self.index) if self.index is not None else len(self.states)

    def position(self, partition: int) -> int:
        """The next offset of `partition` to read (0 before it is followed)."""
        return self._positions.get(partition, 0)

    async def wait_position(self, partition: int, offset: int, timeout: float | None) -> None:  # noqa: ASYNC109
        """Wait until `partition` was read up to `offset`; raises TimeoutError."""
        await self._wait(lambda: self.position(partition) >= offset, timeout)

    async def wait_for(self, instance_id: str, done: Callable[[InstanceState | None], bool],
                       timeout: float | None) -> InstanceState | None:  # noqa: ASYNC109 - Dapr's client API
        """Wait until `done(state)` holds for the instance; None timeout waits forever."""
        await self._wait(lambda: done(self.get(instance_id)), timeout)
        return self.get(instance_id)

    async def changed(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Wait for the next poll round that applied records; raises TimeoutError."""
        seen = self._applied_rounds
        await self._wait(lambda: self._applied_rounds > seen, timeout)

    async def _wait(self, condition: Callable[[], bool], timeout: float | None) -> None:  # noqa: ASYNC109
        async def until() -> None:
            async with self._changed:
                await self._changed.wait_for(condition)

        await asyncio.wait_for(until(), timeout)

    async def lag(self) -> int:
        """Records not read yet, from the ends the consumer already knows (no request)."""
        consumer = self._consumer
        if consumer is None:
            return 0
        behind = 0
        for tp in consumer.assignment():
            end = consumer.last_stable_offset(tp)
            if end is None:
                end = consumer.highwater(tp)
            if end is not None:
                behind += max(0, int(end) - self.position(tp.partition))
        return behind

    @property
    def failure(self) -> BaseException | None:
        """Why the reading task ended, if it did with an error."""
        task = self._task
        if task is None or not task.done() or task.cancelled():
            return None
        return task.exception()

    @property
    def following(self) -> bool:
        task = self._task
        return task is not None and not task.done()

    # -- reading -------------------------------------------------------------------------------

    async def _stop_task(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        broken = False
        while True:
            try:
                if broken:
                    await self._reconnect()
                    broken = False
                consumer = self._consumer
                if consumer is None:
                    return
                await self._round(consumer)
            except asyncio.CancelledError:
                raise
            except (KafkaError, OSError) as exc:
                log.warning("status follower of %s: %r; reconnecting at the positions reached in %g s",
                            self.topic, exc, _RETRY_S)
                broken = True
                await asyncio.sleep(_RETRY_S)
            except Exception:
                log.exception("status follower of %s: reading failed; trying again in %g s", self.topic, _RETRY_S)
                await asyncio.sleep(_RETRY_S)

    async def _reconnect(self) -> None:
        """A new consumer at the positions reached; the old one is stopped only once it stands."""
        consumer = committed_reader(self.settings)
        try:
            await consumer.start()
            tps = {p: TopicPartition(self.topic, p) for p in self._positions}
            consumer.assign(list(tps.values()))
            for p, tp in tps.items():
                consumer.seek(tp, self._positions[p])
        except BaseException:
            with contextlib.suppress(Exception):
                await consumer.stop()
            raise
        old, self._consumer = self._consumer, consumer
        if old is not None:
            with contextlib.suppress(Exception):
                await old.stop()

    async def _round(self, consumer: AIOKafkaConsumer) -> None:
        batches = await consumer.getmany(timeout_ms=_POLL_MS, max_records=_MAX_RECORDS)
        for tp, records in batches.items():
            for record in records:
                state = self._apply(record.key, record.value)
                if self.index is not None:
                    self._batch.append(StatusRecord(tp.partition, record.offset, record.key, record.value,
                                                    state if self._whole else None))
                self._positions[tp.partition] = record.offset + 1
        # Positions also move over transaction markers, which come with no record: read them on
        # every round, not only when records came.
        for tp in consumer.assignment():
            self._positions[tp.partition] = int(await consumer.position(tp))
        if self.index is not None:
            # The rows and the positions they bring the index to, in one transaction: the
            # checkpoint a restart resumes from. Waiters are woken only after it (below), so a
            # reader that waited for a position finds its rows in the index. A batch that fails is
            # kept by the index and applied with the next round's (the positions moved).
            batch, self._batch = self._batch, []
            self.index.apply(batch, self._positions)
        self._check_targets()
        async with self._changed:
            if batches:
                self._applied_rounds += 1
            self._changed.notify_all()

    def _check_targets(self) -> None:
        for p, end in list(self._targets.items()):
            if self._positions.get(p, 0) >= end:
                del self._targets[p]
                self._reached[p].set()
                self._first_reads.discard(p)
        if not self._first_reads and self._consumer is not None:
            self.caught_up.set()

    def _apply(self, key: bytes | None, value: bytes | None) -> InstanceState | None:
        """Apply one record to the in-memory view and the observers; returns the state decoded, if any."""
        if key is None:
            return None
        try:
            iid = key.decode()
        except UnicodeDecodeError:
            log.error("status record with a key that is not UTF-8 (%r): skipped", key[:100])
            return None
        if self.from_end:
            if iid not in self._asked:
                return None  # nobody asked about it: not decoded, not kept
            reading = self._reading.get(iid)
            if reading is not None:
                reading.newer = True
        state: InstanceState | None
        if value is None:
            state = None
            self.states.pop(iid, None)
            told = [observer for observer, _ in self._observers]
        else:
            told = [observer for observer, interest in self._observers if _interested(interest, iid)]
            if self.index is not None and not told:
                return None  # the index files it by its summary; nobody here needs the state
            try:
                state = self._decode(value)
            except DecodeError as exc:
                log.error("unreadable status record for %r: %s", iid[:200], exc)
                return None
            if self.index is None:
                self.states[iid] = state
        for observer in told:
            try:
                observer(iid, state)
            except Exception:
                # An observer's bug must not cost the records after this one.
                log.exception("observer of the status follower failed on %r", iid[:200])
        return state


def _interested(interest: Interest | None, instance_id: str) -> bool:
    if interest is None:
        return True
    try:
        return interest(instance_id)
    except Exception:
        # An observer's bug must not cost it the records after this one: tell it, as if asked.
        log.exception("interest of an observer of the status follower failed on %r", instance_id[:200])
        return True
