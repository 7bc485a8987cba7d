"""How a partition owner hands a transaction's records to its producer (`partition._send_all`):
records of a chosen partition in record batches it builds, one per partition unless one fills,
each partition's records in their order; records partitioned by key through `send`."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatch

from engine.runtime.partition import _send_all
from engine.runtime.sink import Send


class _Producer:
    """What `_send_all` uses of an `AIOKafkaProducer`, recording what it was handed."""

    def __init__(self, batch_bytes: int) -> None:
        self.batch_bytes = batch_bytes
        self.handed: list[tuple[str, Any, Any]] = []  # ("batch", (topic, partition), builder) | ("send", ...)

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(self.batch_bytes, 0, is_transactional=True)

    async def send_batch(self, batch: BatchBuilder, topic: str, *, partition: int) -> asyncio.Future[Any]:
        assert batch.closed(), "a queued batch must take no more records"
        self.handed.append(("batch", (topic, partition), batch))
        return asyncio.get_running_loop().create_future()

    async def send(self, topic: str, *, value: bytes | None, key: bytes, headers: Any) -> asyncio.Future[Any]:
        self.handed.append(("send", topic, (key, value, headers)))
        return asyncio.get_running_loop().create_future()


def _records(batch: BatchBuilder) -> list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]]:
    batch._set_producer_state(1, 0, 0)
    return [(r.key, r.value, list(r.headers)) for r in DefaultRecordBatch(bytes(batch._build()))]


def _hand(sends: list[Send], batch_bytes: int) -> tuple[_Producer, int]:
    producer = _Producer(batch_bytes)
    futures: list[asyncio.Future[Any]] = []

    async def main() -> None:
        await _send_all(producer, sends, futures)  # type: ignore[arg-type]

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
    assert [h for h in producer.handed if h[0] == "send"] == [("send", "tasks", (b"a", b"t1", header))]
    assert futures == len(producer.handed) == 3


def test_a_full_batch_goes_before_the_next_one_of_its_partition() -> None:
    sends = [Send("status", f"k{i}".encode(), b"v" * 100, 0, None) for i in range(7)]
    producer, futures = _hand(sends, 300)  # two or three records to a batch
    handed = [(where, _records(b)) for kind, where, b in producer.handed]
    assert len(handed) > 2 and futures == len(handed)
    assert {where for where, _ in handed} == {("status", 0)}
    keys = [key for _, records in handed for key, _, _ in records]
    assert keys == [f"k{i}".encode() for i in range(7)]  # every record, once, in order
