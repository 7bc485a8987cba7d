"""Follows the status topic while the load runs: which instances finished, and which wait.

Only for pacing and draining (how many acknowledged starts are unfinished, whether the
non-determinism scenario's instances are all waiting for their event). The verdict never rests on
it: the checker reads every topic again from the start once the run is over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from engine.runtime.settings import FETCH_MAX_WAIT_MS, Settings
from engine.runtime.topics import Topics, partition_count

__all__ = ["TERMINAL", "StatusFollower"]

log = logging.getLogger(__name__)

TERMINAL = frozenset({"COMPLETED", "FAILED", "TERMINATED"})


class StatusFollower:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topic = Topics.for_settings(settings).status
        #: Latest record per instance: (status, waiting for nothing but an event).
        self.latest: dict[str, tuple[str, bool]] = {}
        self.done: set[str] = set()
        self.on_done: list[Callable[[str], None]] = []
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def is_done(self, instance_id: str) -> bool:
        return instance_id in self.done

    def waiting_for_event(self, instance_id: str) -> bool:
        found = self.latest.get(instance_id)
        return found is not None and found[0] == "RUNNING" and found[1]

    async def changed(self) -> None:
        self._changed.clear()
        await self._changed.wait()

    async def _run(self) -> None:
        positions: dict[TopicPartition, int] = {}
        while True:
            # A whole-cluster restart can break the consumer for good; start a new one at the
            # positions reached.
            try:
                await self._follow(positions)
            except (KafkaError, OSError) as exc:
                log.warning("status follower: %s; reconnecting", exc)
                await asyncio.sleep(1.0)

    async def _follow(self, positions: dict[TopicPartition, int]) -> None:
        consumer = AIOKafkaConsumer(
            **self.settings.client_kwargs(),
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )
        await consumer.start()
        try:
            count = await partition_count(self.settings, self.topic)
            tps = [TopicPartition(self.topic, p) for p in range(count)]
            consumer.assign(tps)
            for tp in tps:
                if tp in positions:
                    consumer.seek(tp, positions[tp])
                else:
                    await consumer.seek_to_beginning(tp)
            while True:
                batches = await consumer.getmany(timeout_ms=200, max_records=10_000)
                for tp, records in batches.items():
                    for record in records:
                        self._apply(record.key, record.value)
                    positions[tp] = records[-1].offset + 1
                if batches:
                    self._changed.set()
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None or value is None:
            return
        iid = key.decode()
        state: dict[str, Any] = orjson.loads(value)
        status = str(state["status"])
        idle = not (state.get("pending_tasks") or state.get("pending_timers") or state.get("pending_children"))
        self.latest[iid] = (status, idle)
        if status in TERMINAL and iid not in self.done:
            self.done.add(iid)
            for callback in self.on_done:
                callback(iid)
