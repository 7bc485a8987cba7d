"""Chunking of a running instance's history for the history-store topic."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from engine.core import events as ev
from engine.runtime.history_store import CHUNK_BYTES, HISTORY_CHUNK, StoredHistory
from engine.wire.records import decode_chunk, decode_events

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def raised(seq: int, size: int = 10) -> ev.EventRaised:
    return ev.EventRaised(timestamp=NOW, seq=seq, name="e", input=orjson.dumps("x" * size).decode())


def test_a_turn_rewrites_only_the_open_chunk() -> None:
    stored = StoredHistory("i", "x")
    stored.append([raised(i) for i in range(HISTORY_CHUNK + 3)])
    first = list(stored.dirty_chunks())
    assert len(first) == 2
    stored.append([raised(HISTORY_CHUNK + 3)])
    second = list(stored.dirty_chunks())
    assert [key for key, _ in second] == [first[1][0]]
    assert len(decode_events(second[0][1])[2]) == 4
    assert list(stored.dirty_chunks()) == []


def test_large_events_close_chunks_by_size() -> None:
    stored = StoredHistory("i", "x")
    big = CHUNK_BYTES // 2
    stored.append([raised(i, big) for i in range(5)])
    chunks = list(stored.dirty_chunks())
    assert len(chunks) >= 3
    assert all(len(record) <= CHUNK_BYTES + big + 1024 for _, record in chunks)
    events = [e for _, record in chunks for e in decode_events(record)[2]]
    assert [e.seq for e in events] == list(range(5))


def test_restored_history_keeps_its_chunk_boundaries() -> None:
    stored = StoredHistory("i", "x", [raised(i) for i in range(20)], chunk_sizes=[16, 4])
    assert stored.chunk_count == 2
    stored.append([raised(20)])
    (key, record), = list(stored.dirty_chunks())
    assert key.endswith(b"00000001")
    assert [e.seq for e in decode_events(record)[2]] == [16, 17, 18, 19, 20]


def test_the_open_chunk_carries_the_state_and_only_written_chunks_are_owed_tombstones() -> None:
    stored = StoredHistory("i", "x")
    stored.append([raised(i) for i in range(HISTORY_CHUNK)])
    (key, record), = list(stored.dirty_chunks(b'{"s":1}'))
    chunk = decode_chunk(record)
    assert (chunk.state, len(chunk.events)) == ({"s": 1}, HISTORY_CHUNK)
    # A state change without events rewrites the open chunk with the new state.
    assert [decode_chunk(r).state for _, r in stored.dirty_chunks(b'{"s":2}')] == [{"s": 2}]
    # The turn that opens a second chunk: the sealed one keeps its events, the open one the state.
    stored.append([raised(HISTORY_CHUNK)])
    written = list(stored.dirty_chunks(b'{"s":3}'))
    assert [decode_chunk(r).state for _, r in written] == [{"s": 3}]
    assert [k for k, _ in written] == [stored.chunk_keys()[1]]
    # An execution that ends in the turn that opened a chunk never wrote it: no tombstone for it.
    stored.append([raised(HISTORY_CHUNK + 1 + i) for i in range(HISTORY_CHUNK)])
    assert stored.chunk_count == 3
    assert stored.chunk_keys() == [key, written[0][0]]
