"""The status follower decodes a record only for an observer interested in its instance: with the
on-disk index, the rest are filed by their summary (`engine.read.status.Interest`)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import TopicPartition

from engine.core.state import InstanceState
from engine.core.values import RuntimeStatus
from engine.read.index import IndexFilter, StatusIndex
from engine.read.status import StatusFollower
from engine.settings import Settings
from engine.wire.records import decode_partial_state, decode_state, encode_state

TP = TopicPartition("t.status", 0)


@dataclass
class _Record:
    key: bytes
    value: bytes | None
    offset: int


class _OneBatch:
    """What `StatusFollower._round` asks of its consumer, with one batch of records to give."""

    def __init__(self, records: list[_Record]) -> None:
        self.records = records

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[_Record]]:
        batch, self.records = self.records, []
        return {TP: batch} if batch else {}

    def assignment(self) -> set[TopicPartition]:
        return {TP}

    async def position(self, tp: TopicPartition) -> int:
        return 3


def _state(iid: str) -> InstanceState:
    return InstanceState(instance_id=iid, name="wf", status=RuntimeStatus.RUNNING)


@pytest.fixture
def index(tmp_path: Path) -> Iterator[StatusIndex]:
    opened = StatusIndex(tmp_path / "status.sqlite", "t.status")
    yield opened
    opened.close()


class _CountingDecode:
    """The follower's decode, keeping what it was asked to decode."""

    def __init__(self) -> None:
        self.calls: list[bytes] = []

    def __call__(self, data: bytes) -> InstanceState:
        self.calls.append(data)
        return decode_state(data)


@pytest.fixture
def decode() -> _CountingDecode:
    return _CountingDecode()


def _round(follower: StatusFollower) -> None:
    records = [_Record(b"wanted", encode_state(_state("wanted")), 0),
               _Record(b"other", encode_state(_state("other")), 1),
               _Record(b"purged", None, 2)]
    asyncio.run(follower._round(_OneBatch(records)))  # type: ignore[arg-type]


def test_only_the_instances_an_observer_wants_are_decoded(index: StatusIndex, decode: _CountingDecode) -> None:
    told: list[tuple[str, InstanceState | None]] = []
    follower = StatusFollower(Settings(topic_prefix="t."), index=index, decode=decode)
    follower.subscribe(lambda iid, state: told.append((iid, state)), lambda iid: iid == "wanted")
    _round(follower)
    assert told == [("wanted", _state("wanted")), ("purged", None)]  # every removal is told
    assert decode.calls == [encode_state(_state("wanted"))]
    # The index filed both, from their summaries.
    assert [s.instance_id for s in index.page(IndexFilter(), 10)] == ["other", "wanted"]
    assert index.positions() == {0: 3}


def test_an_observer_without_an_interest_gets_every_state(index: StatusIndex, decode: _CountingDecode) -> None:
    told: list[str] = []
    follower = StatusFollower(Settings(topic_prefix="t."), index=index, decode=decode)
    follower.subscribe(lambda iid, state: told.append(iid))
    _round(follower)
    assert told == ["wanted", "other", "purged"]
    assert len(decode.calls) == 2


def test_an_interest_that_fails_counts_as_wanted(index: StatusIndex, decode: _CountingDecode) -> None:
    told: list[str] = []

    def broken(iid: str) -> bool:
        raise RuntimeError("bug")

    follower = StatusFollower(Settings(topic_prefix="t."), index=index, decode=decode)
    follower.subscribe(lambda iid, state: told.append(iid), broken)
    _round(follower)
    assert told == ["wanted", "other", "purged"]
    assert len(decode.calls) == 2


def test_with_no_observer_and_an_index_nothing_is_decoded(index: StatusIndex, decode: _CountingDecode) -> None:
    _round(StatusFollower(Settings(topic_prefix="t."), index=index, decode=decode))
    assert decode.calls == []
    assert len(index) == 2


def test_an_index_files_partially_decoded_states_by_their_records(index: StatusIndex) -> None:
    follower = StatusFollower(Settings(topic_prefix="t."), index=index,
                              decode=lambda data: decode_partial_state(data, ("status",)))
    follower.subscribe(lambda iid, state: None)
    _round(follower)
    # The states told were partial (no name); the rows are filed by what the records hold.
    assert [s.instance_id for s in index.page(IndexFilter(workflow_name="wf"), 10)] == ["other", "wanted"]
