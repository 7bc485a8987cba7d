"""Issue 17: the input positions ride with the state (`POSITIONS_HEADER`), and the group's
offsets follow the commits outside the transactions (`runtime.group_offsets`)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError

from engine.errors import DecodeError
from engine.runtime.group_offsets import GroupOffsets
from engine.runtime.partition import _Store
from engine.wire.records import POSITIONS_KEY, decode_positions, encode_positions, parse_history_chunk_key


def test_positions_round_trip_and_refuse_anything_else() -> None:
    positions = {"app.commands": 12, "app.results": 40_000_000_000}
    assert decode_positions(encode_positions(positions)) == positions
    assert decode_positions(b"") == {}
    for raw in (b"commands", b"=12", b"commands=twelve", b"\xff=1"):
        with pytest.raises(DecodeError):
            decode_positions(raw)


def test_a_restore_takes_the_highest_position_of_each_topic_and_skips_unreadable_ones() -> None:
    store = _Store({})
    store.saw_positions(encode_positions({"c": 5, "r": 9}), 0)
    store.saw_positions(encode_positions({"c": 7, "r": 3}), 1)  # compaction may leave them in any order
    store.saw_positions(b"garbage", 2)
    assert store.positions == {"c": 7, "r": 9}


def test_the_positions_key_is_no_history_chunk() -> None:
    with pytest.raises(DecodeError):
        parse_history_chunk_key(POSITIONS_KEY)


class _Consumer:
    """What `GroupOffsets` uses of an AIOKafkaConsumer: its assignment and `commit`."""

    def __init__(self, assigned: set[TopicPartition]) -> None:
        self.assigned = assigned
        self.commits: list[dict[TopicPartition, Any]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.failures = 0
        #: Set at every commit that succeeds.
        self.committed = asyncio.Event()
        #: Set at every attempt, refused ones too.
        self.attempted = asyncio.Event()

    def assignment(self) -> set[TopicPartition]:
        return self.assigned

    async def commit(self, offsets: dict[TopicPartition, Any]) -> None:
        await self.gate.wait()
        self.attempted.set()
        if self.failures:
            self.failures -= 1
            raise CommitFailedError("the group rebalanced")
        self.commits.append(dict(offsets))
        self.committed.set()


A, B, GONE = TopicPartition("c", 0), TopicPartition("c", 1), TopicPartition("c", 2)
#: The urgent topic's partition (the engine's `commands`: the API's barrier reads its offsets).
URGENT = "u"
U = TopicPartition(URGENT, 0)


async def test_offsets_advanced_during_a_commit_go_in_the_next_one() -> None:
    consumer = _Consumer({A, B})
    offsets = GroupOffsets(consumer, URGENT)
    consumer.gate.clear()
    offsets.advance({A: 1})
    await asyncio.sleep(0)  # the first commit is now in flight, held at the gate
    offsets.advance({A: 2})
    offsets.advance({B: 5, GONE: 9})  # a partition no longer assigned is not committed
    consumer.gate.set()
    await offsets.flush()
    assert consumer.commits == [{A: 1}, {A: 2, B: 5}]


async def test_an_engine_that_commits_per_poll_names_itself_in_every_offset() -> None:
    # Its next owner reads who committed a partition last (engine.runtime.departed).
    consumer = _Consumer({A, B})
    offsets = GroupOffsets(consumer, URGENT, metadata="engine-0123456789ab")
    offsets.advance({A: 1, B: 2})
    await offsets.flush()
    assert consumer.commits == [{A: (1, "engine-0123456789ab"), B: (2, "engine-0123456789ab")}]


async def test_commits_are_paced_and_a_flush_does_not_wait_for_the_pace() -> None:
    consumer = _Consumer({A, B, U})
    offsets = GroupOffsets(consumer, URGENT, interval_s=0.05)
    offsets.advance({A: 1})
    first = time.monotonic()
    await offsets.flush()
    offsets.advance({A: 2})  # inside the interval: held, and joined by what comes meanwhile
    offsets.advance({B: 3})
    async with asyncio.timeout(30):
        while len(consumer.commits) < 2:
            await consumer.committed.wait()
            consumer.committed.clear()
    assert time.monotonic() - first >= 0.05
    assert consumer.commits == [{A: 1}, {A: 2, B: 3}]
    slow = GroupOffsets(consumer, URGENT, interval_s=3600)
    slow.advance({A: 4})
    await slow.flush()
    slow.advance({A: 5})  # an hour's pace, but a flush (partitions given up next) sends it now
    await asyncio.wait_for(slow.flush(), timeout=60)
    slow.advance({B: 6})
    slow.advance({U: 7})  # and so does an offset of the urgent topic (commands: the API's barrier)
    async with asyncio.timeout(60):
        while len(consumer.commits) < 5:
            await consumer.committed.wait()
            consumer.committed.clear()
    assert consumer.commits[2:] == [{A: 4}, {A: 5}, {B: 6, U: 7}]
    await offsets.close()
    await slow.close()


async def test_an_urgent_commit_that_failed_is_still_urgent_when_it_goes_again() -> None:
    consumer = _Consumer({A, B, U})
    offsets = GroupOffsets(consumer, URGENT, interval_s=3600)
    offsets.advance({B: 1})
    await offsets.flush()
    consumer.failures = 1
    offsets.advance({U: 2})  # refused (a rebalance): kept for the next commit
    consumer.attempted.clear()
    # Refused and put back within the same step of the committing task, before this one resumes.
    await asyncio.wait_for(consumer.attempted.wait(), timeout=60)
    offsets.advance({B: 3})  # not urgent itself, but carries the refused commands offset
    async with asyncio.timeout(60):
        while len(consumer.commits) < 2:
            await consumer.committed.wait()
            consumer.committed.clear()
    assert consumer.commits == [{B: 1}, {U: 2, B: 3}]
    await offsets.close()


async def test_a_failed_commit_is_carried_by_the_next() -> None:
    consumer = _Consumer({A, B})
    offsets = GroupOffsets(consumer, URGENT)
    consumer.failures = 1
    offsets.advance({A: 3})
    await offsets.flush()  # a flush (partitions given up next) tries again what was refused
    assert consumer.commits == [{A: 3}]
    consumer.failures = 2
    offsets.advance({A: 4})
    await offsets.flush()
    assert consumer.commits == [{A: 3}]  # refused twice (a rebalance): kept, not retried in a loop
    offsets.advance({B: 1})
    await offsets.flush()
    assert consumer.commits == [{A: 3}, {A: 4, B: 1}]
    await offsets.close()


async def test_offsets_a_shared_transaction_committed_are_not_sent_again() -> None:
    consumer = _Consumer({A, B})
    offsets = GroupOffsets(consumer, URGENT, interval_s=3600)
    offsets.advance({A: 3})  # due, held by the pace
    offsets.committed_in_transaction({A: 5, B: 7})
    offsets.advance({A: 5, B: 7})  # the engine's advance after that transaction
    offsets.advance({B: 8})  # a later batch committed alone
    await offsets.flush()
    assert consumer.commits == [{B: 8}]


async def test_a_commit_under_way_is_followed_by_the_transaction_s_offsets() -> None:
    # The OffsetCommit under way (A at 3) could reach the coordinator after the transaction's
    # markers (A at 5): the group's offset would go back to 3, for good with no more input.
    consumer = _Consumer({A})
    offsets = GroupOffsets(consumer, URGENT)
    consumer.gate.clear()
    offsets.advance({A: 3})
    await asyncio.sleep(0)  # in flight, held at the gate
    offsets.committed_in_transaction({A: 5})
    offsets.advance({A: 5})
    consumer.gate.set()
    await offsets.flush()
    assert consumer.commits == [{A: 3}, {A: 5}]


async def test_after_a_flush_a_partition_s_offsets_are_sent_again() -> None:
    # A flush comes before partitions are given up: another engine may commit them meanwhile.
    consumer = _Consumer({A})
    offsets = GroupOffsets(consumer, URGENT)
    offsets.committed_in_transaction({A: 5})
    await offsets.flush()
    offsets.advance({A: 5})
    await offsets.flush()
    assert consumer.commits == [{A: 5}]
