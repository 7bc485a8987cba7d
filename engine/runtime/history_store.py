"""A running instance's history as the engine keeps it: events, their encodings, and its chunks.

The history-store topic holds a running instance's history in chunks keyed
`instance\\0execution\\0chunk`, so no record holds a whole history and a restart can replay it.
A chunk closes at `HISTORY_CHUNK` events or `CHUNK_BYTES` bytes, whichever comes first, so a turn
rewrites at most the open chunk and a record stays under the topics' size limit even when single
events carry payloads near the payload limit. Beside the chunks, the topic holds each running
instance's state snapshot and the partition's marker (`engine.wire.records.state_snapshot_key`):
all a restore reads (`PartitionOwner._restore`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from ..core.events import HistoryEvent
from ..wire.records import encode_event, history_chunk_key, join_events

__all__ = ["CHUNK_BYTES", "HISTORY_CHUNK", "StoredHistory"]

HISTORY_CHUNK = 16
CHUNK_BYTES = 256 * 1024


class StoredHistory:
    def __init__(self, instance_id: str, execution_id: str, events: Sequence[HistoryEvent] = (),
                 chunk_sizes: Sequence[int] = ()) -> None:
        self.instance_id = instance_id
        self.execution_id = execution_id
        self.events: list[HistoryEvent] = list(events)
        self._encoded: list[bytes] = []
        self._dirty_from: int | None = None
        # Index of each chunk's first event; restored chunks keep the boundaries they were written with.
        self._starts: list[int] = []
        position = 0
        for size in chunk_sizes:
            self._starts.append(position)
            position += size

    def __len__(self) -> int:
        return len(self.events)

    @property
    def chunk_count(self) -> int:
        return len(self._starts)

    def encoded(self) -> list[bytes]:
        """Every event encoded once (events restored after a restart are encoded on first need)."""
        if len(self._encoded) < len(self.events):
            self._encoded.extend(encode_event(e) for e in self.events[len(self._encoded):])
        return self._encoded

    def append(self, events: Sequence[HistoryEvent]) -> list[bytes]:
        """Add a turn's events; returns their encodings (for the audit record)."""
        encoded = self.encoded()
        first = len(self.events)
        self.events.extend(events)
        fresh = [encode_event(e) for e in events]
        encoded.extend(fresh)
        if self._dirty_from is None or first < self._dirty_from:
            self._dirty_from = first
        for index in range(first, len(encoded)):
            start = self._starts[-1] if self._starts else None
            if start is None or index - start >= HISTORY_CHUNK or (
                index > start and sum(len(b) for b in encoded[start:index + 1]) > CHUNK_BYTES
            ):
                self._starts.append(index)
        return fresh

    def dirty_chunks(self) -> Iterator[tuple[bytes, bytes]]:
        """(key, record) of every chunk touched since the last call."""
        first, self._dirty_from = self._dirty_from, None
        if first is None:
            return
        encoded = self.encoded()
        for number, start in enumerate(self._starts):
            end = self._starts[number + 1] if number + 1 < len(self._starts) else len(encoded)
            if end > first:
                yield (history_chunk_key(self.instance_id, self.execution_id, number),
                       join_events(self.instance_id, self.execution_id, encoded[start:end]))

    def chunk_keys(self) -> list[bytes]:
        return [history_chunk_key(self.instance_id, self.execution_id, n) for n in range(self.chunk_count)]
