"""A partition owner's input record built in memory, as its consumer hands one over: for what
drives `PartitionOwner.process` without a broker (`ops.bench.turns`, the fill of `bench scale`,
the unit tests' owner harnesses)."""

from __future__ import annotations

from aiokafka.structs import ConsumerRecord

__all__ = ["input_record"]


def input_record(topic: str, offset: int, key: bytes | None, value: bytes,
                 partition: int = 0) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(topic=topic, partition=partition, offset=offset, timestamp=0, timestamp_type=0, key=key,
                          value=value, checksum=None, serialized_key_size=len(key or b""),
                          serialized_value_size=len(value), headers=[])
