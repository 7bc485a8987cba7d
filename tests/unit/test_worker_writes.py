"""A worker finishes a work item only once what it owes for it is written: a dead letter for an
item it cannot read is tried again while Kafka refuses it, as a result is, instead of ending the
item's handling with its offset never finished (which held the partition's commit point there)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError
from support import input_record

from engine.runtime import worker as worker_module
from engine.runtime.worker import ActivityWorker, _Partition
from engine.sdk.registry import Registry
from engine.settings import Settings


class _FlakyProducer:
    """`send_and_wait` refuses the first `failures` writes, as a producer does while Kafka is away."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.written: list[tuple[str, bytes | None, dict[str, Any]]] = []

    async def send_and_wait(self, topic: str, value: bytes | None = None, **kwargs: Any) -> None:
        if self.failures:
            self.failures -= 1
            raise KafkaConnectionError("broker away")
        self.written.append((topic, value, kwargs))


async def test_a_dead_letter_is_tried_again_until_written_then_the_item_is_finished(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker_module, "WRITE_RETRY_S", 0.0)
    worker = ActivityWorker(Registry(), Settings.from_env({}))
    tp = TopicPartition(worker.topics.tasks, 0)
    state = _Partition(0, set())
    state.running.add(7)
    producer = _FlakyProducer(failures=3)
    record = input_record(tp.topic, 7, b"wf-1", b"\x01 not a work item")
    await worker._handle(tp, state, record, producer)  # type: ignore[arg-type]
    assert producer.failures == 0
    [(topic, value, kwargs)] = producer.written
    assert topic == worker.topics.dead_letter and kwargs["key"] == b"wf-1"
    letter = orjson.loads(value or b"")
    assert (letter["topic"], letter["offset"]) == (tp.topic, 7) and "not valid JSON" in letter["reason"]
    assert 7 in state.finished and 7 not in state.running
