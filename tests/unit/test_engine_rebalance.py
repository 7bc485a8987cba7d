"""A rebalance never stops a partition owner's producer in the middle of its transaction.

Found by `headrace chaos engine-kill`: the surviving engine's rebalance listener stopped the
producer of an owner whose batch was being committed, aiokafka cancelled the producer's sender, and
the commit waited forever: the engine stayed in its group, owning partitions it never processed
again. The listener now waits for the turn in progress.
"""

from __future__ import annotations

import asyncio

from aiokafka import TopicPartition

from engine.runtime.engine import Engine
from engine.sdk.registry import Registry
from engine.settings import Settings


class _Owner:
    number = 0

    def __init__(self) -> None:
        self.committing = asyncio.Event()
        self.commit_done = asyncio.Event()
        self.stopped_mid_commit = False
        self.stopped = False

    async def process(self, batch: object) -> None:
        self.committing.set()
        await asyncio.sleep(0.2)  # a commit that takes a while (e.g. a slow ISR)
        self.commit_done.set()

    async def fire_due_timers(self, now: object) -> int:
        return 0

    def next_timer(self) -> None:
        return None

    async def stop(self) -> None:
        self.stopped_mid_commit = self.committing.is_set() and not self.commit_done.is_set()
        self.stopped = True


class _Consumer:
    def __init__(self, tp: TopicPartition) -> None:
        self.tp = tp

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[object]]:
        return {self.tp: [object()]}

    def assignment(self) -> set[TopicPartition]:
        return {self.tp}


async def test_release_waits_for_the_owner_turn_in_progress() -> None:
    engine = Engine(Registry(), Settings(topic_prefix="t."))
    owner = _Owner()
    engine.owners[0] = owner  # type: ignore[assignment]
    consumer = _Consumer(TopicPartition(engine.topics.commands, 0))
    turn = asyncio.create_task(engine._poll_once(consumer))  # type: ignore[arg-type]
    await owner.committing.wait()
    await engine._release({0})  # what the rebalance listener does, beside the main loop
    await turn
    assert owner.stopped
    assert not owner.stopped_mid_commit
    assert engine.owners == {}
