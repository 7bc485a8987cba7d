"""Every producer places a keyed record where the Java client's default partitioner does
(`engine.topics.java_partitioner`): instances live on the partition their ID hashes to, and the
engine forwards a record that is anywhere else (`PartitionOwner._misplaced`)."""

from __future__ import annotations

import random

from aiokafka.partitioner import DefaultPartitioner

from engine.settings import Settings
from engine.topics import java_partitioner, partition_for, producer_options


def test_keys_land_where_aiokafkas_default_partitioner_puts_them() -> None:
    rng = random.Random(17)
    keys = [rng.randbytes(rng.randrange(0, 80)) for _ in range(2_000)]
    keys += [f"order-{n}".encode() for n in range(500)] + ["ünïcode-ид".encode(), b""]
    reference = DefaultPartitioner()
    for partitions in (1, 3, 8, 12, 50):
        every = list(range(partitions))
        placed = [java_partitioner(key, every, every) for key in keys]
        assert placed == [reference(key, every, every) for key in keys]
        assert placed == [partition_for(key, partitions) for key in keys]
        # Twice (the cache answers the second time) with the same answers.
        assert [java_partitioner(key, every, every) for key in keys] == placed
    assert len({partition_for(key, 8) for key in keys}) == 8  # the keys spread over every partition


def test_a_record_without_a_key_goes_to_an_available_partition() -> None:
    for _ in range(50):
        assert java_partitioner(None, [0, 1, 2, 3], [2]) == 2
        assert java_partitioner(None, [0, 1], []) in (0, 1)


def test_every_producer_is_made_with_it() -> None:
    assert producer_options(Settings.from_env({}))["partitioner"] is java_partitioner
