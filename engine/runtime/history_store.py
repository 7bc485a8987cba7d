"""A running instance's history as the engine keeps it: events, their encodings, and its chunks.

The history-store topic holds a running instance's history in chunks keyed
`instance\\0execution\\0chunk`, so no record holds a whole history and a restart can replay it.
A chunk closes at `HISTORY_CHUNK` events or `CHUNK_BYTES` bytes, whichever comes first, so a turn
rewrites at most the open chunk and a record stays under the topics' size limit even when single
events carry payloads near the payload limit. A running instance's open (last) chunk also carries
its state, so one record per turn is both its history and its restore snapshot (issue 17). Beside
the chunks, the topic holds the state snapshots of instances without an open chunk (pending, or
finished and still needed) and of a turn whose state did not fit beside its chunk, under
`engine.wire.records.state_snapshot_key`, and the partition's marker: all a restore reads
(`PartitionOwner._restore`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from ..core.events import HistoryEvent
from ..wire.records import encode_event, history_chunk_key, join_chunk

__all__ = ["CHUNK_BYTES", "HISTORY_CHUNK", "StoredHistory"]

#: Events per chunk. Each turn rewrites the open chunk, so a larger one costs bytes per turn, a
#: smaller one records (a sealed chunk is written once more and tombstoned at the end): at 32 a
#: five-step chain (24 events) is one chunk, one record per turn (issue 17). Restored chunks keep
#: the boundaries they were written with, so changing it needs no migration.
HISTORY_CHUNK = 32
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
        #: Chunks written to the topic (restored ones were): the only ones a tombstone is owed.
        self._written = len(self._starts)

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

    def append(self, events: Sequence[HistoryEvent], fresh: list[bytes] | None = None) -> list[bytes]:
        """Add a turn's events (encoded as `fresh`, if given); returns their encodings (for the audit
        record)."""
        encoded = self.encoded()
        first = len(self.events)
        self.events.extend(events)
        if fresh is None:
            fresh = [encode_event(e) for e in events]
        encoded.extend(fresh)
        if self._dirty_from is None or first < self._dirty_from:
            self._dirty_from = first
        # The open chunk's size counted once per turn, then added to (summing the chunk again for
        # each new event was quadratic in a chunk's events).
        start = self._starts[-1] if self._starts else None
        size = sum(len(b) for b in encoded[start:first]) if start is not None else 0
        for index in range(first, len(encoded)):
            length = len(encoded[index])
            if start is None or index - start >= HISTORY_CHUNK or (index > start and size + length > CHUNK_BYTES):
                self._starts.append(index)
                start, size = index, 0
            size += length
        return fresh

    def dirty_chunks(self, state: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """(key, record) of every chunk touched since the last call. With the instance's encoded
        `state`, the open (last) chunk is written even if untouched, and carries the state: the
        instance's restore snapshot (`join_chunk`)."""
        first, self._dirty_from = self._dirty_from, None
        if state is not None and self._starts:
            first = min(first, self._starts[-1]) if first is not None else self._starts[-1]
        if first is None:
            return
        encoded = self.encoded()
        last = len(self._starts) - 1
        for number, start in enumerate(self._starts):
            end = self._starts[number + 1] if number < last else len(encoded)
            if end > first:
                self._written = max(self._written, number + 1)
                yield (history_chunk_key(self.instance_id, self.execution_id, number),
                       join_chunk(self.instance_id, self.execution_id, encoded[start:end],
                                  state if number == last else None))

    def open_bytes(self) -> int:
        """Size of the open (last) chunk's events, encoded."""
        if not self._starts:
            return 0
        return sum(len(e) + 1 for e in self.encoded()[self._starts[-1]:])

    def chunk_keys(self) -> list[bytes]:
        """Keys of the chunks written so far (an execution that ends in the turn that opened a chunk
        never wrote it: no tombstone for it)."""
        return [history_chunk_key(self.instance_id, self.execution_id, n) for n in range(self._written)]
