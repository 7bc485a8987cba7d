"""The read side on a real broker: the read-to-end rule and the status follower (engine/read)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from engine.core.orchestrator import Orchestrator
from engine.core.state import InstanceState
from engine.core.values import RuntimeStatus
from engine.errors import ReadStalledError
from engine.read.consumer import committed_reader
from engine.read.index import StatusIndex
from engine.read.status import StatusFollower
from engine.read.to_end import latest_by_key, read_to_end, reading
from engine.runtime.partition import PartitionOwner
from engine.sdk.registry import Registry
from engine.settings import Settings
from engine.topics import Topics, ensure_topics
from engine.wire.records import STORE_HEADER, encode_state, state_snapshot_key

pytestmark = pytest.mark.kafka

PARTITIONS = 3


@pytest.fixture
async def settings(kafka_bootstrap: str) -> Settings:
    made = Settings.from_env(bootstrap_servers=kafka_bootstrap, topic_prefix=f"read-{uuid.uuid4().hex[:8]}.",
                             partitions=PARTITIONS)
    await ensure_topics(made)
    return made


@pytest.fixture
async def producer(settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    made = AIOKafkaProducer(**settings.client_kwargs(), transactional_id=f"test-{uuid.uuid4().hex}")
    await made.start()
    try:
        yield made
    finally:
        await made.stop()


def _state(iid: str, status: RuntimeStatus = RuntimeStatus.RUNNING, run: str = "r1") -> InstanceState:
    return InstanceState(instance_id=iid, name="wf", status=status, execution_id=run, run_id=run)


class _Abort(Exception):
    pass


async def _commit(producer: AIOKafkaProducer, topic: str, records: list[tuple[bytes | None, bytes | None]],
                  partition: int = 0, *, abort: bool = False) -> None:
    """Write `records` to one partition in one transaction, committed (or aborted)."""
    try:
        async with producer.transaction():
            for key, value in records:
                await producer.send(topic, value, key=key, partition=partition)
            if abort:
                raise _Abort
    except _Abort:
        pass


# -- reading to the end ----------------------------------------------------------------------------


async def test_a_read_ends_at_the_end_it_found_over_transaction_markers(settings: Settings,
                                                                       producer: AIOKafkaProducer) -> None:
    topic = Topics.for_settings(settings).history
    await _commit(producer, topic, [(b"a", b"1"), (b"b", b"2")])
    await _commit(producer, topic, [(b"x", b"aborted")], abort=True)
    await _commit(producer, topic, [(b"c", b"3")], partition=2)
    # The last offsets of partition 0 are transaction markers. Reaching the end over them is the
    # only way a read ends without raising (`ReadStalledError` when positions stop short of it).
    async with reading(settings, topic) as batches:
        values = [r.value async for records in batches for r in records]
    assert sorted(values) == [b"1", b"2", b"3"]  # committed only, aborted never


async def test_a_read_starts_where_told_and_stops_at_the_ends_given(settings: Settings,
                                                                    producer: AIOKafkaProducer) -> None:
    topic = Topics.for_settings(settings).history
    await _commit(producer, topic, [(b"k", str(n).encode()) for n in range(10)])
    consumer = committed_reader(settings)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        got = [r.offset async for records in read_to_end(consumer, {tp: 4}) for r in records]
        assert got[0] == 4 and got[-1] == 9
        # An end that will never be reached (no such offset yet): the read yields what there is,
        # then refuses to pass it off as the whole.
        tail: list[int] = []

        async def read_tail() -> None:
            async for records in read_to_end(consumer, {tp: 8}, ends={tp: 1000}, stall_s=0.5):
                tail.extend(r.offset for r in records)

        started = time.monotonic()
        # Stopped at 11: past the ten records and their commit's marker.
        with pytest.raises(ReadStalledError, match=r"no progress for 0.5 s at \{0: 11\} \(ends \{0: 1000\}\)"):
            await read_tail()
        assert tail == [8, 9]
        assert time.monotonic() - started >= 0.5
    finally:
        await consumer.stop()


async def test_a_restore_that_stalls_fails_instead_of_taking_the_part_it_read(
        settings: Settings, producer: AIOKafkaProducer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A partition owner built on part of its partition could forget a running instance (its older
    records compacted away, its latest unread): a restore whose read stops moving raises, and the
    engine claims the partition again later (`Engine._retry_claim`)."""
    topics = Topics.for_settings(settings)
    async with producer.transaction():
        await producer.send(topics.history_store, encode_state(_state("kept")), key=state_snapshot_key("kept"),
                            partition=0, headers=[STORE_HEADER])

    def owner() -> PartitionOwner:
        return PartitionOwner(0, settings, topics, Orchestrator(Registry().get_workflow), f"g-{uuid.uuid4().hex}")

    whole = owner()
    await whole.start()  # the premise: a read that moves restores the instance
    try:
        assert set(whole.states) == {"kept"}
    finally:
        await whole.stop()

    async def stalled(self: AIOKafkaConsumer, *tps: TopicPartition, timeout_ms: int = 0,
                      max_records: int | None = None) -> dict[TopicPartition, list[object]]:
        await asyncio.sleep(timeout_ms / 1000)  # a broker that stopped answering fetches
        return {}

    monkeypatch.setattr(AIOKafkaConsumer, "getmany", stalled)
    for read in (reading.__wrapped__, read_to_end):  # type: ignore[attr-defined]
        monkeypatch.setitem(read.__kwdefaults__, "stall_s", 0.5)  # not 10 s
    cut = owner()
    try:
        with pytest.raises(ReadStalledError, match="history-store"):
            await cut.start()
        assert cut.states == {}
    finally:
        await cut.stop()


async def test_latest_by_key_keeps_the_last_value_and_tombstones(settings: Settings,
                                                                 producer: AIOKafkaProducer) -> None:
    topic = Topics.for_settings(settings).history  # not compacted: it takes a record without a key
    await _commit(producer, topic, [(b"a", b"1"), (b"b", b"1"), (None, b"keyless"), (b"a", b"2"), (b"b", None)],
                  partition=1)
    assert await latest_by_key(settings, topic, 1) == {b"a": b"2", b"b": None}
    assert await latest_by_key(settings, topic, 1, only=b"a") == {b"a": b"2"}
    assert await latest_by_key(settings, topic, 0) == {}


# -- the status follower ---------------------------------------------------------------------------


async def test_the_follower_applies_states_tombstones_and_skips_bad_records(settings: Settings,
                                                                            producer: AIOKafkaProducer) -> None:
    topic = Topics.for_settings(settings).status
    await _commit(producer, topic, [
        (b"a", encode_state(_state("a"))),
        (b"\xff\xfe", encode_state(_state("bad-key"))),  # not UTF-8
        (b"b", b'{"type": "InstanceState", "version": 99}'),  # unreadable
        (b"c", encode_state(_state("c"))),
    ])
    seen: list[tuple[str, RuntimeStatus | None]] = []
    follower = StatusFollower(settings, observer=lambda iid, st: seen.append((iid, None if st is None else st.status)))
    await follower.start()
    try:
        await asyncio.wait_for(follower.caught_up.wait(), 30)
        assert set(follower.states) == {"a", "c"}
        assert follower.following and follower.failure is None
        await _commit(producer, topic, [(b"a", encode_state(_state("a", RuntimeStatus.COMPLETED))), (b"c", None)])
        state = await follower.wait_for("a", lambda st: st is not None and st.is_terminal, 30)
        assert state is not None and state.status is RuntimeStatus.COMPLETED
        await follower.wait_for("c", lambda st: st is None, 30)
        # Every applied state, in order, the transient ones included; bad records are not offered.
        assert seen == [("a", RuntimeStatus.RUNNING), ("c", RuntimeStatus.RUNNING),
                        ("a", RuntimeStatus.COMPLETED), ("c", None)]
    finally:
        await follower.stop()


async def test_positions_cross_transaction_markers_and_waits_have_deadlines(settings: Settings,
                                                                            producer: AIOKafkaProducer) -> None:
    topic = Topics.for_settings(settings).status
    follower = StatusFollower(settings)
    await follower.start()
    try:
        await asyncio.wait_for(follower.caught_up.wait(), 30)
        assert follower.position(0) == 0
        await _commit(producer, topic, [(b"a", encode_state(_state("a")))])
        consumer = committed_reader(settings)
        await consumer.start()
        try:
            tp = TopicPartition(topic, 0)
            end = (await consumer.end_offsets([tp]))[tp]
        finally:
            await consumer.stop()
        assert end == 2  # the record and its commit marker
        await follower.wait_position(0, end, 30)
        assert follower.position(0) == end
        assert await follower.lag() == 0
        with pytest.raises(TimeoutError):
            await follower.wait_for("a", lambda st: st is not None and st.is_terminal, 0.3)
        with pytest.raises(TimeoutError):
            await follower.changed(0.3)
    finally:
        await follower.stop()


async def test_subscribers_come_and_go_and_a_failing_one_costs_no_records(settings: Settings,
                                                                          producer: AIOKafkaProducer) -> None:
    topic = Topics.for_settings(settings).status
    follower = StatusFollower(settings)
    await follower.start()
    seen: list[str] = []

    def broken(iid: str, state: InstanceState | None) -> None:
        raise ValueError("observer bug")

    follower.subscribe(broken)
    unsubscribe = follower.subscribe(lambda iid, st: seen.append(iid))
    try:
        await _commit(producer, topic, [(iid.encode(), encode_state(_state(iid))) for iid in ("a", "b", "c")])
        await follower.wait_for("c", lambda st: st is not None, 30)
        assert seen == ["a", "b", "c"] and set(follower.states) == {"a", "b", "c"}
        unsubscribe()
        await _commit(producer, topic, [(b"d", encode_state(_state("d")))])
        await follower.wait_for("d", lambda st: st is not None, 30)
        assert seen == ["a", "b", "c"]
    finally:
        await follower.stop()


async def test_partitions_are_followed_as_they_are_asked_for(settings: Settings, producer: AIOKafkaProducer) -> None:
    topic = Topics.for_settings(settings).status
    for p in range(PARTITIONS):
        await _commit(producer, topic, [(f"p{p}".encode(), encode_state(_state(f"p{p}")))], partition=p)
    follower = StatusFollower(settings, partitions=())
    await follower.start()
    try:
        assert follower.caught_up.is_set() and follower.states == {}
        await asyncio.wait_for(follower.follow(1), 30)
        assert set(follower.states) == {"p1"}
        await asyncio.wait_for(follower.follow(2), 30)
        assert set(follower.states) == {"p1", "p2"}
        # Partition 1 keeps being followed after partition 2 joined.
        await _commit(producer, topic, [(b"p1", encode_state(_state("p1", RuntimeStatus.COMPLETED)))], partition=1)
        state = await follower.wait_for("p1", lambda st: st is not None and st.is_terminal, 30)
        assert state is not None and "p0" not in follower.states
    finally:
        await follower.stop()


async def test_the_chaos_runs_follower_reports_each_finish_once(settings: Settings, producer: AIOKafkaProducer) -> None:
    from ops.chaos.follower import StatusFollower as ChaosFollower

    topic = Topics.for_settings(settings).status
    follower = ChaosFollower(settings)
    finished: list[str] = []
    follower.on_done.append(finished.append)
    await follower.start()
    try:
        waiting = _state("w")
        busy = InstanceState(instance_id="b", status=RuntimeStatus.RUNNING, pending_tasks={0: "act"})
        await _commit(producer, topic, [(b"w", encode_state(waiting)), (b"b", encode_state(busy)),
                                        (b"d", encode_state(_state("d", RuntimeStatus.FAILED))),
                                        (b"d", encode_state(_state("d", RuntimeStatus.FAILED)))])
        await follower.follower.wait_for("d", lambda st: st is not None, 30)
        assert follower.waiting_for_event("w") and not follower.waiting_for_event("b")
        assert finished == ["d"] and follower.is_done("d") and not follower.is_done("w")
    finally:
        await follower.stop()


async def test_a_kafka_error_rebuilds_the_consumer_at_the_positions_reached(settings: Settings,
                                                                           producer: AIOKafkaProducer) -> None:
    from aiokafka.errors import KafkaConnectionError

    topic = Topics.for_settings(settings).status
    seen: list[str] = []
    follower = StatusFollower(settings, observer=lambda iid, st: seen.append(iid))
    await follower.start()
    try:
        await _commit(producer, topic, [(b"a", encode_state(_state("a")))])
        await follower.wait_for("a", lambda st: st is not None, 30)
        broken = follower._consumer
        assert broken is not None

        async def fail(*args: object, **kwargs: object) -> object:
            raise KafkaConnectionError("the cluster restarted")

        broken.getmany = fail
        # The fetch in flight may still bring `b`; `c` comes after a call that failed.
        for iid in ("b", "c"):
            await _commit(producer, topic, [(iid.encode(), encode_state(_state(iid)))])
            await follower.wait_for(iid, lambda st: st is not None, 30)
        assert follower._consumer is not broken and follower.following
        assert seen == ["a", "b", "c"]  # nothing read twice, nothing lost
    finally:
        await follower.stop()


async def test_a_follower_on_an_index_resumes_at_its_checkpoint_not_the_beginning(
        settings: Settings, producer: AIOKafkaProducer, tmp_path: Path) -> None:
    topic = Topics.for_settings(settings).status
    for partition in range(PARTITIONS):
        iid = f"i{partition}"
        await _commit(producer, topic, [(iid.encode(), encode_state(_state(iid)))], partition)
    path = tmp_path / "status.sqlite"
    index = StatusIndex(path, topic)
    first = StatusFollower(settings, index=index)
    await first.start()
    try:
        await asyncio.wait_for(first.caught_up.wait(), 30)
    finally:
        await first.stop()
        index.close()
    index = StatusIndex(path, topic)
    saved = index.positions()
    assert set(saved) == set(range(PARTITIONS)) and all(saved.values())
    applied: list[str] = []
    second = StatusFollower(settings, index=index, observer=lambda iid, st: applied.append(iid))
    await second.start()
    try:
        # Every partition is at its checkpoint from the start: caught up with nothing read again
        # (aiokafka's seek_to_beginning with no partition seeks every assigned one).
        assert {p: second.position(p) for p in range(PARTITIONS)} == saved
        assert second.caught_up.is_set()
        await _commit(producer, topic, [(b"later", encode_state(_state("later")))])
        await second.wait_for("later", lambda st: st is not None, 30)
        assert applied == ["later"]
    finally:
        await second.stop()
        index.close()
