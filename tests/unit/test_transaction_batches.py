"""How a partition owner hands a transaction's records to its producer (`partition.send_all`):
records of its own topics in record batches it builds, one per partition unless one fills, each
partition's records in their order; every other record through `send`, in order; and a record
the broker refuses aborts the transaction (`PartitionOwner._commit`) instead of leaving it out."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.errors import KafkaError, MessageSizeTooLargeError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatch

from engine.core.orchestrator import Orchestrator
from engine.errors import PoisonedInputError
from engine.runtime.partition import PartitionOwner, send_all
from engine.runtime.sink import RecordInput, Send, TransactionSink
from engine.sdk.registry import Registry
from engine.settings import Settings
from engine.topics import Topics, partition_for


class _Producer:
    """What `send_all` uses of an `AIOKafkaProducer`, recording what it was handed."""

    def __init__(self, batch_bytes: int, known: dict[str, set[int]] | None = None) -> None:
        self.batch_bytes = batch_bytes
        self.handed: list[tuple[str, Any, Any]] = []  # ("batch", (topic, partition), builder) | ("send", ...)
        # The cluster metadata it holds: the partitions of the topics it knows.
        self.client = SimpleNamespace(cluster=SimpleNamespace(partitions_for_topic=(known or {}).get))

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(self.batch_bytes, 0, is_transactional=True)

    async def send_batch(self, batch: BatchBuilder, topic: str, *, partition: int) -> asyncio.Future[Any]:
        assert batch.closed(), "a queued batch must take no more records"
        self.handed.append(("batch", (topic, partition), batch))
        return asyncio.get_running_loop().create_future()

    async def send(self, topic: str, *, value: bytes | None, key: bytes, partition: int | None,
                   headers: Any) -> asyncio.Future[Any]:
        self.handed.append(("send", topic, (key, value, partition, headers)))
        return asyncio.get_running_loop().create_future()


def _records(batch: BatchBuilder) -> list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]]:
    batch._set_producer_state(1, 0, 0)
    return [(r.key, r.value, list(r.headers)) for r in DefaultRecordBatch(bytes(batch._build()))]


OWN = ("status", "store", "history")


def _hand(sends: list[Send], batch_bytes: int, known: dict[str, set[int]] | None = None) -> tuple[_Producer, int]:
    producer = _Producer(batch_bytes, known)
    futures: list[asyncio.Future[Any]] = []

    async def main() -> None:
        await send_all(producer, sends, futures, OWN)  # type: ignore[arg-type]

    asyncio.run(main())
    return producer, len(futures)


def test_one_batch_per_chosen_partition_in_order_and_keyed_records_through_send() -> None:
    header = [("h", b"1")]
    sends = [
        Send("status", b"a", b"s1", 3, None),
        Send("tasks", b"a", b"t1", None, None, header),
        Send("store", b"a", b"c1", 3, None, header),
        Send("status", b"b", b"s2", 3, None),
        Send("store", b"a", None, 3, None),  # a tombstone keeps its place
        Send("status", b"a", b"s3", 3, None, header),
    ]
    producer, futures = _hand(sends, 512 * 1024)
    batches = {where: _records(b) for kind, where, b in producer.handed if kind == "batch"}
    assert batches == {
        ("status", 3): [(b"a", b"s1", []), (b"b", b"s2", []), (b"a", b"s3", header)],
        ("store", 3): [(b"a", b"c1", header), (b"a", None, [])],
    }
    assert [h for h in producer.handed if h[0] == "send"] == [("send", "tasks", (b"a", b"t1", None, header))]
    assert futures == len(producer.handed) == 3


def test_a_full_batch_goes_before_the_next_one_of_its_partition() -> None:
    sends = [Send("status", f"k{i}".encode(), b"v" * 100, 0, None) for i in range(7)]
    producer, futures = _hand(sends, 300)  # two or three records to a batch
    handed = [(where, _records(b)) for kind, where, b in producer.handed]
    assert len(handed) > 2 and futures == len(handed)
    assert {where for where, _ in handed} == {("status", 0)}
    keys = [key for _, records in handed for key, _, _ in records]
    assert keys == [f"k{i}".encode() for i in range(7)]  # every record, once, in order


def test_other_topics_go_in_batches_once_their_partitions_are_known() -> None:
    keys = [f"wf-{n}".encode() for n in range(40)]
    sends = [Send("tasks", key, b"item-" + key, None, None) for key in keys]
    # A record forwarded to its home partition of `commands`, then a message keyed to the same
    # instance: one partition, one batch, in their order.
    home = partition_for(b"a", 4)
    sends += [Send("commands", b"a", b"forwarded", home, None), Send("commands", b"a", b"message", None, None)]
    producer, futures = _hand(sends, 512 * 1024, {"tasks": {0, 1, 2}, "commands": {0, 1, 2, 3}})
    assert all(kind == "batch" for kind, _, _ in producer.handed) and futures == len(producer.handed)
    batches = {where: _records(b) for _, where, b in producer.handed}
    # Each on the partition `send` would have given it (aiokafka's default partitioner).
    reference = DefaultPartitioner()
    for key in keys:
        assert (key, b"item-" + key, []) in batches[("tasks", reference(key, [0, 1, 2], [0, 1, 2]))]
    assert sum(len(records) for where, records in batches.items() if where[0] == "tasks") == len(keys)
    assert [value for _, value, _ in batches[("commands", home)]] == [b"forwarded", b"message"]


def test_other_topics_go_through_send_in_order_even_with_a_partition() -> None:
    # A record forwarded to its home partition of `commands` and a message keyed to the same
    # instance land on one partition; while the producer does not know the topic's partitions,
    # both go through `send`, so the first stays first.
    sends = [Send("commands", b"a", b"forwarded", 2, None), Send("commands", b"a", b"message", None, None),
             Send("status", b"a", b"s", 2, None)]
    producer, _ = _hand(sends, 512 * 1024)
    assert [(h[0], h[1]) for h in producer.handed] == [("send", "commands"), ("send", "commands"),
                                                       ("batch", ("status", 2))]
    assert [h[2][1] for h in producer.handed if h[0] == "send"] == [b"forwarded", b"message"]


class _Transactional(_Producer):
    """A producer whose transaction says how it ended, and whose batches the broker refuses."""

    def __init__(self) -> None:
        super().__init__(512 * 1024)
        self.ended: list[str] = []

    async def send_batch(self, batch: BatchBuilder, topic: str, *, partition: int) -> asyncio.Future[Any]:
        future = await super().send_batch(batch, topic, partition=partition)
        asyncio.get_running_loop().call_soon(future.set_exception, KafkaError("refused for good"))
        return future

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        try:
            yield
        except BaseException:
            self.ended.append("aborted")
            raise
        self.ended.append("committed")


def _owner() -> tuple[PartitionOwner, _Transactional, Topics]:
    settings = Settings.from_env({})
    topics = Topics.for_settings(settings)
    owner = PartitionOwner(0, settings, topics, Orchestrator(Registry().get_workflow), "engine", partitions=1)
    producer = _Transactional()
    owner.producer = producer  # type: ignore[assignment]
    return owner, producer, topics


def test_a_record_the_broker_refuses_aborts_the_transaction() -> None:
    owner, producer, topics = _owner()
    pending = TransactionSink(owner)
    pending.add(topics.status, b"wf", b"{}", 0)

    async def main() -> None:
        with pytest.raises(KafkaError, match="refused for good"):
            await owner._commit(pending, {})

    asyncio.run(main())
    assert producer.ended == ["aborted"]


def test_a_record_over_the_limit_with_its_headers_is_refused_before_anything_is_queued() -> None:
    owner, producer, topics = _owner()
    owner.record_limit = 1200
    header = [("trace", b"t" * 200)]

    def commit(source: RecordInput | None, value: bytes) -> None:
        pending = TransactionSink(owner)
        pending.source = source
        pending.add(topics.status, b"wf", value, 0, header)
        asyncio.run(owner._commit(pending, {}))

    # Over the limit only by its headers: refused as the producer's `send` refuses a record.
    with pytest.raises(MessageSizeTooLargeError, match="over the limit of 1200 bytes"):
        commit(None, b"v" * 950)
    # Made by an input: that input is set aside, its instance failed with the reason.
    with pytest.raises(PoisonedInputError, match="over the limit") as raised:
        commit(RecordInput(topics.commands, 7), b"v" * 950)
    assert raised.value.source == RecordInput(topics.commands, 7)
    assert producer.handed == [] and producer.ended == []  # no transaction was begun
