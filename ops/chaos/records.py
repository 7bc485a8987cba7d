"""What the checker reads once a run is over: whole topics, and the activities' run marks."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from engine.read.to_end import reading
from engine.settings import Settings

__all__ = ["Marks", "TopicRecord", "read_marks", "read_topic"]


@dataclass(frozen=True, slots=True)
class TopicRecord:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


async def read_topic(settings: Settings, topic: str) -> list[TopicRecord]:
    """Every committed record of `topic`, in offset order within each partition."""
    found: list[TopicRecord] = []
    async with reading(settings, topic) as batches:
        async for records in batches:
            found.extend(TopicRecord(r.partition, r.offset, r.key, r.value) for r in records)
    return found


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
