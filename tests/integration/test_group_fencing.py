"""A transaction fenced by the consumer group's generation (`engine.runtime.group_fencing`, KIP-447),
against a real broker: what one transaction per poll relies on instead of a transactional ID per
partition (`engine.runtime.poll_transactions`)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata

from engine.errors import GenerationFenced, ReadStalledError
from engine.read.consumer import committed_reader
from engine.read.to_end import wait_until_settled
from engine.runtime import group_fencing
from engine.runtime.departed import fence_departed, process_transactional_id, process_unique
from engine.runtime.group_fencing import GroupMember
from engine.runtime.membership import describe_group, member
from engine.runtime.poll_transactions import PollTransactions
from engine.settings import Settings
from engine.topics import producer_options

pytestmark = pytest.mark.kafka


@pytest.fixture
async def grouped(kafka_bootstrap: str) -> AsyncIterator[tuple[Settings, AIOKafkaConsumer, TopicPartition]]:
    """A topic of one partition, and a consumer group member that owns it."""
    settings = Settings.from_env(bootstrap_servers=kafka_bootstrap, partitions=1,
                                 topic_prefix=f"fence-{uuid.uuid4().hex[:8]}.")
    topic = settings.topic("input")
    consumer = AIOKafkaConsumer(topic, **settings.client_kwargs(), group_id=settings.topic("group"),
                                enable_auto_commit=False, isolation_level="read_committed")
    await consumer.start()
    try:
        deadline = time.monotonic() + 60
        while not consumer.assignment():
            assert time.monotonic() < deadline, "never assigned"
            await consumer.getmany(timeout_ms=200)
        yield settings, consumer, TopicPartition(topic, 0)
    finally:
        await consumer.stop()


async def _producer(settings: Settings, who: list[GroupMember]) -> AIOKafkaProducer:
    transactional_id = settings.topic(f"tx-{uuid.uuid4().hex[:6]}")
    group_fencing.fence(transactional_id, lambda: who[0])
    producer = AIOKafkaProducer(**producer_options(settings, transactional_id=transactional_id))
    await producer.start()
    return producer


async def _visible(settings: Settings, tp: TopicPartition) -> list[bytes]:
    reader = committed_reader(settings)
    await reader.start()
    try:
        reader.assign([tp])
        await reader.seek_to_beginning(tp)
        end = (await reader.end_offsets([tp]))[tp]
        values: list[bytes] = []
        while await reader.position(tp) < end:
            for records in (await reader.getmany(tp, timeout_ms=500)).values():
                values.extend(r.value for r in records if r.value is not None)
        return values
    finally:
        await reader.stop()


async def test_the_member_commits_and_a_stale_generation_is_refused_and_aborted(
        grouped: tuple[Settings, AIOKafkaConsumer, TopicPartition]) -> None:
    settings, consumer, tp = grouped
    current = member(consumer)
    assert current.generation >= 1 and current.member_id
    who = [current]
    producer = await _producer(settings, who)
    group = settings.topic("group")
    try:
        await _transaction(producer, tp, b"kept", 1, group)
        await _committed_becomes(consumer, tp, 1)

        for stale in (GroupMember(current.generation - 1, current.member_id),
                      GroupMember(current.generation, "somebody-else")):
            who[0] = stale
            began = time.monotonic()
            with pytest.raises(GenerationFenced, match="moved on"):
                await _transaction(producer, tp, b"fenced", 5, group)
            # The abort reached the broker: nothing stays open on the partition (aiokafka's own
            # abortable error would have left it open until the transaction timed out, 60 s).
            await wait_until_settled(settings, [tp], timeout_s=20)
            assert time.monotonic() - began < 20

        # The producer goes on: the member's next transaction commits.
        who[0] = current
        await _transaction(producer, tp, b"after", 2, group)
    finally:
        await producer.stop()
    assert await _visible(settings, tp) == [b"kept", b"after"]
    await _committed_becomes(consumer, tp, 2)  # never 5: the fenced offsets were aborted too


async def _transaction(producer: AIOKafkaProducer, tp: TopicPartition, value: bytes, offset: int, group: str) -> None:
    async with producer.transaction():
        await (await producer.send(tp.topic, value, partition=0))
        await producer.send_offsets_to_transaction({tp: OffsetAndMetadata(offset, "")}, group)


async def _committed_becomes(consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int) -> None:
    """The group's offset is `offset` once the commit's markers reach the offsets topic."""
    deadline = time.monotonic() + 20
    while (found := await consumer.committed(tp)) != offset:
        assert found in (None, *range(offset)), found  # never past it, never a fenced one
        assert time.monotonic() < deadline, found
        await asyncio.sleep(0.05)  # polling the coordinator: nothing announces the markers


async def test_a_new_owner_waits_for_an_open_transaction_to_end(
        grouped: tuple[Settings, AIOKafkaConsumer, TopicPartition]) -> None:
    settings, consumer, tp = grouped
    producer = await _producer(settings, [member(consumer)])
    try:
        await producer.begin_transaction()
        await (await producer.send(tp.topic, b"open", partition=0))
        with pytest.raises(ReadStalledError, match="still open"):
            await wait_until_settled(settings, [tp], timeout_s=1)
        # Waiting while the transaction is open (above, it did not return), then it ends.
        waiting = asyncio.create_task(wait_until_settled(settings, [tp], timeout_s=30))
        await producer.commit_transaction()
        await asyncio.wait_for(waiting, 30)
    finally:
        await producer.stop()
    assert await _visible(settings, tp) == [b"open"]


async def test_a_wait_that_stalls_is_told_once_and_ends_with_the_transaction(
        grouped: tuple[Settings, AIOKafkaConsumer, TopicPartition]) -> None:
    # What a new owner does with it: fence a departed writer (PartitionOwner._fence_departed).
    settings, consumer, tp = grouped
    producer = await _producer(settings, [member(consumer)])
    told: list[float] = []

    async def stalled(left_s: float) -> None:
        told.append(left_s)
        await producer.abort_transaction()

    try:
        await producer.begin_transaction()
        await (await producer.send(tp.topic, b"open", partition=0))
        await wait_until_settled(settings, [tp], timeout_s=30, stalled=stalled, stalled_after_s=0.2)
    finally:
        await producer.stop()
    assert len(told) == 1 and 0 < told[0] <= 30
    assert await _visible(settings, tp) == []


async def _writer_with_an_open_transaction(
        settings: Settings, tp: TopicPartition, group: str, static: str | None = None) -> tuple[str, AIOKafkaProducer]:
    """An engine process's producer that committed `tp`'s offset in `group` (naming itself, as
    engines do) and then left a transaction open on `tp`."""
    writer = process_transactional_id(group, process_unique(static))
    producer = AIOKafkaProducer(**producer_options(settings, transactional_id=writer, transaction_timeout_ms=60_000))
    await producer.start()
    async with producer.transaction():
        await (await producer.send(tp.topic, b"kept", partition=0))
        await producer.send_offsets_to_transaction({tp: OffsetAndMetadata(1, writer)}, group)
    await producer.begin_transaction()
    await (await producer.send(tp.topic, b"left open", partition=0))
    return writer, producer


@contextlib.asynccontextmanager
async def _members(settings: Settings, tp: TopicPartition, group: str, *client_ids: str,
                   static: bool = False) -> AsyncIterator[None]:
    """Engine processes in `group`, each a consumer whose client ID is its transactional ID (and,
    `static`, its group instance ID the same)."""
    consumers = [AIOKafkaConsumer(tp.topic, **settings.client_kwargs(), client_id=client_id, group_id=group,
                                  enable_auto_commit=False, isolation_level="read_committed",
                                  group_instance_id=client_id if static else None)
                 for client_id in client_ids]
    try:
        for consumer in consumers:
            await consumer.start()
        deadline = time.monotonic() + 60
        # Every member has joined once the partition is someone's and the group lists them all.
        while not any(c.assignment() for c in consumers) or \
                len({member(c).member_id for c in consumers if member(c).generation >= 1}) < len(consumers):
            assert time.monotonic() < deadline, "the group never settled"
            await asyncio.gather(*(c.getmany(timeout_ms=200) for c in consumers))
        yield
    finally:
        for consumer in consumers:
            await consumer.stop()


async def test_a_departed_writer_is_fenced_and_the_transaction_it_left_open_aborted(
        grouped: tuple[Settings, AIOKafkaConsumer, TopicPartition]) -> None:
    settings, _, tp = grouped
    group = settings.topic("departed")
    writer, producer = await _writer_with_an_open_transaction(settings, tp, group)
    me = process_transactional_id(group, uuid.uuid4().hex[:12])
    try:
        async with _members(settings, tp, group, me):  # the writer is not a member any more
            with pytest.raises(ReadStalledError):
                await wait_until_settled(settings, [tp], timeout_s=1)
            # A list of members that does not show the asker is not believed.
            stranger = process_transactional_id(group, uuid.uuid4().hex[:12])
            assert await fence_departed(settings, group, stranger, [tp]) == set()
            assert await fence_departed(settings, group, me, [tp]) == {writer}
            # Ended now, not at its 60 s timeout.
            await wait_until_settled(settings, [tp], timeout_s=30)
    finally:
        with contextlib.suppress(Exception):
            await producer.stop()  # fenced: it may say so
    assert await _visible(settings, tp) == [b"kept"]


@pytest.mark.parametrize("static", [False, True], ids=["writer-still-a-member", "static-membership"])
async def test_a_writer_is_left_to_end_its_transaction_when_the_member_list_says_so_or_cannot_be_believed(
        grouped: tuple[Settings, AIOKafkaConsumer, TopicPartition], static: bool) -> None:
    # Under static membership the coordinator keeps a replaced member's client ID, so the list is
    # not believed: there a writer absent from it is left alone too (its own restart fences it).
    settings, _, tp = grouped
    asking = replace(settings, group_instance_id="engine-1") if static else settings
    group = settings.topic("static" if static else "alive")
    writer, producer = await _writer_with_an_open_transaction(settings, tp, group,
                                                               static="engine-0" if static else None)
    me = process_transactional_id(group, process_unique(asking.group_instance_id))
    members = (me,) if static else (me, writer)
    try:
        async with _members(settings, tp, group, *members, static=static):
            assert await fence_departed(asking, group, me, [tp]) == set()
            with pytest.raises(ReadStalledError):
                await wait_until_settled(settings, [tp], timeout_s=1)
            await producer.commit_transaction()  # not fenced: it can still commit
            await wait_until_settled(settings, [tp], timeout_s=30)
    finally:
        await producer.stop()
    assert await _visible(settings, tp) == [b"kept", b"left open"]


async def test_a_restarted_static_member_ends_its_predecessor_s_open_transaction_as_it_starts(
        grouped: tuple[Settings, AIOKafkaConsumer, TopicPartition]) -> None:
    # The crash of a static member is followed by its restart under the same group instance ID,
    # with no rebalance: nobody else takes its partitions, so nobody else could fence it.
    settings, consumer, tp = grouped
    static = replace(settings, group_instance_id="engine-0")
    group = settings.topic("group")
    writer, producer = await _writer_with_an_open_transaction(settings, tp, group, static="engine-0")
    restarted = PollTransactions(static, group, lambda: member(consumer))
    assert restarted.transactional_id == writer
    try:
        with pytest.raises(ReadStalledError):
            await wait_until_settled(settings, [tp], timeout_s=1)
        await restarted.start()
        await wait_until_settled(settings, [tp], timeout_s=30)  # the transaction's own timeout is 60 s
    finally:
        await restarted.stop()
        with contextlib.suppress(Exception):
            await producer.stop()  # fenced: it may say so
    assert await _visible(settings, tp) == [b"kept"]


async def test_a_group_is_described_with_its_state_and_members_client_ids(
        grouped: tuple[Settings, AIOKafkaConsumer, TopicPartition]) -> None:
    settings, _, _ = grouped
    admin = AIOKafkaAdminClient(**settings.client_kwargs())
    await admin.start()
    try:
        described = await describe_group(admin, settings.topic("group"))
        nobody = await describe_group(admin, settings.topic("no-such-group"))
    finally:
        await admin.close()
    # The fixture's one member, under aiokafka's default client ID ("aiokafka-<version>").
    assert described is not None and described.state == "Stable"
    assert len(described.client_ids) == 1 and described.client_ids[0].startswith("aiokafka")
    assert nobody is not None and nobody.client_ids == ()  # the coordinator answers "Dead", empty
