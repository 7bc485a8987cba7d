"""What the checker reads once a run is over: whole topics, and the activities' run marks."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from engine.runtime.settings import Settings
from engine.runtime.topics import partition_count

__all__ = ["Marks", "TopicRecord", "read_marks", "read_topic"]


@dataclass(frozen=True, slots=True)
class TopicRecord:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


async def read_topic(settings: Settings, topic: str) -> list[TopicRecord]:
    """Every committed record of `topic`, in offset order within each partition."""
    count = await partition_count(settings, topic)
    consumer = AIOKafkaConsumer(
        **settings.client_kwargs(),
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(count)]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        found: list[TopicRecord] = []
        idle = 0
        # Transaction markers take offsets but carry no record: stop at the end offsets, or when
        # polls stop moving (what is left is markers).
        while idle < 4 and any([await consumer.position(tp) < ends[tp] for tp in tps]):
            batch = await consumer.getmany(timeout_ms=500, max_records=20_000)
            idle = 0 if batch else idle + 1
            for tp, records in batch.items():
                found.extend(TopicRecord(tp.partition, r.offset, r.key, r.value) for r in records)
        return found
    finally:
        await consumer.stop()


@dataclass
class Marks:
    """Activity runs, from the marks files the chaos app's activities write (ops/chaos/apps.py)."""

    #: (instance, task id) → runs started.
    runs: Counter[tuple[str, int]] = field(default_factory=Counter)
    #: (instance, task id) → runs that returned.
    ends: Counter[tuple[str, int]] = field(default_factory=Counter)
    #: pid → runs it started and never finished (it was killed mid-activity).
    interrupted: Counter[int] = field(default_factory=Counter)
    torn_lines: int = 0

    @property
    def total_runs(self) -> int:
        return sum(self.runs.values())


def read_marks(directory: Path) -> Marks:
    marks = Marks()
    for path in sorted(directory.glob("*.log")):
        pid = int(path.stem) if path.stem.isdigit() else -1
        open_runs: Counter[tuple[str, int]] = Counter()
        for line in path.read_text(errors="replace").splitlines():
            parts = line.split()
            if len(parts) != 4 or parts[0] not in ("S", "E") or not parts[2].isdigit():
                marks.torn_lines += 1
                continue
            key = (parts[1], int(parts[2]))
            if parts[0] == "S":
                marks.runs[key] += 1
                open_runs[key] += 1
            else:
                marks.ends[key] += 1
                open_runs[key] -= 1
        marks.interrupted[pid] = sum(n for n in open_runs.values() if n > 0)
    return marks
