"""The one rule for reading committed partitions to their end.

A read captures each partition's end (for a `read_committed` consumer, the last stable offset: all
the engine had committed) when it starts and reads until every partition's position reaches it.
Positions count transaction markers, which take an offset but carry no record; aiokafka moves the
position over them when it skips a control batch, so the end is reached even when the last offsets
are markers.

A read never ends short of its end. If no position moves for `stall_s` seconds (the broker stopped
answering, or is too slow to), it raises `ReadStalledError`: the caller gets nothing it could take
for the whole. Until issue 17's review it returned instead, after 1.5 s; a partition owner's
restore was one of those reads, and a compacted partition read only in part can miss an instance
altogether (its older records gone to compaction, its latest not yet read), so a slow broker could
make an owner forget running work. A caller whose own deadline bounds the read passes
`stall_s=None`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence, Set
from typing import TypeAlias

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from ..errors import ReadStalledError
from ..settings import Settings
from ..topics import partition_count
from .consumer import committed_reader

__all__ = ["READ_FETCH_BYTES", "STALL_S", "Record", "latest_by_key", "latest_of", "latest_values", "read_to_end",
           "reading", "wait_until_settled"]

log = logging.getLogger(__name__)

Record: TypeAlias = ConsumerRecord[bytes, bytes]

#: Seconds without any position moving before a read gives up (`ReadStalledError`). Long enough
#: for a broker's pause on a loaded machine; a restore that gives up is tried again.
STALL_S = 10.0
#: Per-partition fetch size of whole-partition reads: restores and the tools read big batches.
READ_FETCH_BYTES = 8 * 1024 * 1024
_POLL_MS = 200
#: Records of the first window `latest_of` reads back from the end; each further window doubles.
LOOK_BACK_FIRST = 2_000


async def read_to_end(
    consumer: AIOKafkaConsumer,
    starts: Mapping[TopicPartition, int | None],
    *,
    ends: Mapping[TopicPartition, int] | None = None,
    max_records: int = 10_000,
    stall_s: float | None = STALL_S,
) -> AsyncGenerator[list[Record], None]:
    """Assign `starts`' partitions (each from its offset, None: from its beginning) and yield the
    records fetched until every position reaches its end (`ends`, else the end offsets now).

    Batches are a partition's records in offset order; a batch may run past the end (records
    committed since the read started). The consumer is left assigned; the caller owns it. Raises
    `ReadStalledError` after `stall_s` seconds without progress (the module docstring).
    """
    tps = list(starts)
    if not tps:
        return
    consumer.assign(tps)
    from_beginning = [tp for tp, offset in starts.items() if offset is None]
    if from_beginning:
        await consumer.seek_to_beginning(*from_beginning)
    for tp, offset in starts.items():
        if offset is not None:
            consumer.seek(tp, offset)
    stop_at = dict(ends) if ends is not None else await consumer.end_offsets(tps)
    positions = {tp: await consumer.position(tp) for tp in tps}
    loop = asyncio.get_running_loop()
    moved_at = loop.time()
    while True:
        behind = [tp for tp in tps if positions[tp] < stop_at[tp]]
        if not behind:
            return
        if stall_s is not None and loop.time() - moved_at >= stall_s:
            raise ReadStalledError(
                f"reading {', '.join(sorted({tp.topic for tp in behind}))} to its end: no progress for "
                f"{stall_s:g} s at {({tp.partition: positions[tp] for tp in behind})} "
                f"(ends {({tp.partition: stop_at[tp] for tp in behind})})")
        batches = await consumer.getmany(*behind, timeout_ms=_POLL_MS, max_records=max_records)
        for records in batches.values():
            if records:
                yield records
        for tp in behind:
            position = await consumer.position(tp)
            if position != positions[tp]:
                positions[tp] = position
                moved_at = loop.time()


@contextlib.asynccontextmanager
async def reading(
    settings: Settings, topic: str, partitions: Iterable[int] | None = None, *, stall_s: float | None = STALL_S
) -> AsyncIterator[AsyncIterator[list[Record]]]:
    """A consumer of its own reading `topic` (the given partitions, else all) from the beginning
    to the end, stopped when the block ends. An absent topic reads as empty.

        async with reading(settings, topic) as batches:
            async for records in batches: ...
    """
    numbers = list(range(await partition_count(settings, topic)) if partitions is None else partitions)
    consumer = committed_reader(settings, max_partition_fetch_bytes=READ_FETCH_BYTES)
    await consumer.start()
    try:
        starts: dict[TopicPartition, int | None] = {TopicPartition(topic, p): None for p in numbers}
        batches = read_to_end(consumer, starts, stall_s=stall_s)
        try:
            yield batches
        finally:
            await batches.aclose()
    finally:
        await consumer.stop()


async def latest_by_key(settings: Settings, topic: str, partition: int, only: bytes | None = None,
                        headers: dict[bytes, Sequence[tuple[str, bytes]]] | None = None) -> dict[bytes, bytes | None]:
    """The latest committed value of every key (or of key `only`) in one partition of a compacted
    topic; None is a tombstone. Records without a key are skipped. With `headers`, the latest
    record's headers of each key go there too (the engine's trace contexts, engine.tracing)."""
    latest: dict[bytes, bytes | None] = {}
    async with reading(settings, topic, [partition]) as batches:
        async for records in batches:
            for record in records:
                if record.key is not None and (only is None or record.key == only):
                    latest[record.key] = record.value
                    if headers is not None:
                        headers[record.key] = record.headers
    return latest


async def latest_of(settings: Settings, topic: str, partition: int, key: bytes, *, before: int | None = None,
                    window: int = LOOK_BACK_FIRST) -> bytes | None:
    """The latest committed value of `key` in one partition of a compacted topic, below offset
    `before` (default: the end); None when the key is absent or its latest value is a tombstone
    (`latest_values`)."""
    return (await latest_values(settings, topic, partition, {key}, before=before, window=window)).get(key)


async def latest_values(settings: Settings, topic: str, partition: int, keys: Set[bytes], *,
                        before: int | None = None, window: int = LOOK_BACK_FIRST,
                        limit: int | None = None) -> dict[bytes, bytes | None]:
    """The latest committed value of each of `keys` found in one partition of a compacted topic,
    below offset `before` (default: the end), None for a tombstone; keys not found are left out.
    With `limit`, at most about that many offsets back from `before` are read.

    Kafka cannot look a key up, and reading the partition from its beginning costs what the topic
    holds (10^6 finished instances: seconds and hundreds of MiB). The latest value of a key is at
    its highest offset, so the partition is read backwards in windows, newest first, each twice
    the last: the first window that holds a key holds its latest value. A key written recently
    (an instance a client just started, or that just finished) costs one small window; one not
    there at all costs a read of the partition (or of `limit` offsets), never more than twice.
    """
    tp = TopicPartition(topic, partition)
    found: dict[bytes, bytes | None] = {}
    if not keys:
        return found
    consumer = committed_reader(settings, max_partition_fetch_bytes=READ_FETCH_BYTES)
    await consumer.start()
    try:
        consumer.assign([tp])
        first = (await consumer.beginning_offsets([tp]))[tp]
        high = (await consumer.end_offsets([tp]))[tp] if before is None else before
        if limit is not None:
            first = max(first, high - limit)
        while high > first and len(found) < len(keys):
            low = max(first, high - window)
            latest: dict[bytes, bytes | None] = {}
            async for records in read_to_end(consumer, {tp: low}, ends={tp: high}):
                for record in records:
                    if record.offset < high and record.key in keys and record.key not in found:
                        latest[record.key] = record.value
            found.update(latest)
            high, window = low, window * 2
        return found
    finally:
        await consumer.stop()


#: Told, once, that a transaction is still open after `stalled_after_s`, with the seconds left.
Stalled: TypeAlias = Callable[[float], Awaitable[None]]


async def wait_until_settled(settings: Settings, tps: list[TopicPartition], timeout_s: float, *,
                             stalled: Stalled | None = None, stalled_after_s: float = 0.0) -> None:
    """Return once no transaction is open on `tps`: each one's last stable offset is its end.

    A new owner of a partition reads it only then (`runtime.partition`): a transaction still open on
    it may be one its last owner committed from a producer the new owner cannot fence (one
    transaction for many partitions: `runtime.poll_transactions`), and it must end, committed or
    aborted, before the restore reads what it holds. `stalled` may end it sooner (a new owner
    fences a departed writer: `runtime.departed`). Raises `ReadStalledError` past `timeout_s`.
    """
    committed = committed_reader(settings)
    everything = committed_reader(settings, committed=False)
    try:
        await committed.start()
        await everything.start()
        began = time.monotonic()
        deadline = began + timeout_s
        delay = 0.005
        while True:
            stable = await committed.end_offsets(tps)
            ends = await everything.end_offsets(tps)
            open_ = [tp for tp in tps if stable[tp] < ends[tp]]
            if not open_:
                return
            now = time.monotonic()
            if now > deadline:
                raise ReadStalledError(f"a transaction is still open on {open_} after {timeout_s:g} s")
            if stalled is not None and now - began >= stalled_after_s:
                told, stalled = stalled, None
                await told(deadline - now)
                continue
            # Polling the broker: a transaction's end is not announced to anyone but its readers.
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.2)
    finally:
        await committed.stop()
        await everything.stop()
