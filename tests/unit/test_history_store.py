"""Chunking of a running instance's history for the history-store topic."""

from __future__ import annotations

import random
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


def _chunk_starts(sizes: list[int]) -> list[int]:
    """The chunking rule, counted from scratch: a chunk closes at HISTORY_CHUNK events, or before
    the event that would take its events over CHUNK_BYTES."""
    starts: list[int] = []
    for index in range(len(sizes)):
        start = starts[-1] if starts else None
        if start is None or index - start >= HISTORY_CHUNK or (
                index > start and sum(sizes[start:index + 1]) > CHUNK_BYTES):
            starts.append(index)
    return starts


def _append_turns(stored: StoredHistory, events: list[ev.EventRaised], at: int, until: int,
                  rng: random.Random) -> int:
    """Append `events[at:until]` in turns of one to six, checking the chunks after each against
    the rule counted from scratch; returns where it stopped."""
    while at < until:
        turn = rng.randint(1, 6)
        stored.append(events[at:at + turn])
        at += turn
        encoded = stored.encoded()
        starts = _chunk_starts([len(e) for e in encoded])
        assert stored.chunk_count == len(starts)
        assert stored.open_bytes() == sum(len(e) + 1 for e in encoded[starts[-1]:])
    return at


def test_chunks_close_by_count_and_size_across_turns_and_a_restore() -> None:
    rng = random.Random(17)
    # Mostly small events, some large ones: chunks close by count and by size.
    payloads = [rng.choice([10, 50, 2_000, CHUNK_BYTES // 5, CHUNK_BYTES // 3]) for _ in range(300)]
    events = [raised(i, size) for i, size in enumerate(payloads)]
    stored = StoredHistory("i", "x")
    at = _append_turns(stored, events, 0, 150, rng)
    # The chunks themselves, against the two bounds: each within both, each sealed one full by one.
    sizes = [len(e) for e in stored.encoded()]
    counts = [len(decode_events(record)[2]) for _, record in stored.dirty_chunks()]
    assert sum(counts) == len(sizes)
    first = 0
    for number, count in enumerate(counts):
        chunk = sizes[first:first + count]
        assert count <= HISTORY_CHUNK
        assert count == 1 or sum(chunk) <= CHUNK_BYTES
        if number < len(counts) - 1:
            assert count == HISTORY_CHUNK or sum(chunk) + sizes[first + count] > CHUNK_BYTES
        first += count
    # Restored with the boundaries its chunks had: counting picks up from there.
    restored = StoredHistory("i", "x", events[:at], chunk_sizes=counts)
    # Its open chunk's size, asked for before any turn, is the restored open chunk's.
    encoded = restored.encoded()
    assert restored.open_bytes() == sum(len(e) + 1 for e in encoded[sum(counts[:-1]):])
    _append_turns(restored, events, at, len(events), rng)
    again = StoredHistory("i", "x", events[:at], chunk_sizes=counts)
    _append_turns(again, events, at, len(events), random.Random(18))
    assert restored.chunk_count > 10  # both rules closed chunks on the way
