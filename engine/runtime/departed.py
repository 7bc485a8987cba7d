"""Ending a departed engine's open transaction at once, rather than at its timeout.

A new owner reads a partition only once no transaction is open on it (`read.to_end.wait_until_settled`).
An engine that commits a poll's partitions in one transaction (`runtime.poll_transactions`) does so
under a transactional ID of its process, `<group>-<12 hex digits>`, which no other process
registers: when it crashes with a transaction open, nothing fences it, and the broker aborts the
transaction only once it is past its timeout and the broker's next check for such transactions has
run (`transaction.abort.timed.out.transaction.cleanup.interval.ms`, 10 s by default): 10-20 s in all,
on top of the group's session timeout, during which the partition's readers and its new owner wait.

Any process that registers a transactional ID aborts the transaction its earlier holder left open
and fences that holder (`InitProducerId`, KIP-98). So the engine says who it is in two places:
every offset it commits to the group carries its transactional ID as the offset's metadata, and
its consumer's client ID is that same ID. A new owner that finds its partition still unsettled
reads the metadata of the partition's committed offsets (who committed last: the partition's last
owner) and the group's members; a writer that is no longer a member is fenced by registering its
ID. A writer still in the group is left alone: its transaction ends when it commits, or when the
coordinator refuses its offsets for the group's new generation (`runtime.group_fencing`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from ..settings import Settings
from ..topics import producer_options

__all__ = ["fence_departed", "process_transactional_id", "writers"]

log = logging.getLogger(__name__)


def process_transactional_id(group_id: str, unique: str) -> str:
    """The transactional ID of an engine process (`unique`: 12 hex digits of its own)."""
    return f"{group_id}-{unique}"


def writers(group_id: str, metadata: Collection[str]) -> set[str]:
    """The process transactional IDs of the group among committed offsets' `metadata`: anything
    else (another group's, a partition's own `<group>-p<n>`, a tool's note) is ignored."""
    pattern = re.compile(re.escape(group_id) + r"-[0-9a-f]{12}")
    return {m for m in metadata if pattern.fullmatch(m)}


async def fence_departed(settings: Settings, group_id: str, inputs: list[TopicPartition]) -> set[str]:
    """Fence the engine processes that committed `inputs`' offsets last and are no longer members
    of the group (see the module docstring); the IDs fenced."""
    admin = AIOKafkaAdminClient(**settings.client_kwargs())
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group_id, partitions=inputs)
        last = writers(group_id, [o.metadata for o in committed.values() if o is not None and o.offset >= 0])
        if not last:
            return set()
        live: set[str] = set()
        for response in await admin.describe_consumer_groups([group_id]):
            for group in response.to_object()["groups"]:
                live.update(member["client_id"] for member in group["members"])
    finally:
        await admin.close()
    departed = last - live
    for writer in sorted(departed):
        # Registering the ID aborts the transaction its departed holder left open, and fences it.
        producer = AIOKafkaProducer(**producer_options(settings, transactional_id=writer))
        await producer.start()
        await producer.stop()
        log.warning("fenced %s, a departed engine that left a transaction open", writer)
    return departed
