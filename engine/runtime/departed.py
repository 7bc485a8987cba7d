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

Fencing a live member would cost it a rebalance (`Engine._recover`), so the member list is only
believed when it can be: the group's description carries no error, and it lists the asking
engine itself.

With static membership (`group_instance_id`, KIP-345) a restarted process takes its predecessor's
place in the group without a rebalance, and the coordinator keeps the predecessor's client ID (its
`replaceStaticMember` changes the member ID and leaves the rest), so the member list can name a
process that is gone and miss the live one that replaced it (one that ran an older version, or
the per-partition mode, named itself otherwise): nothing is fenced by other engines then. What
ends a static member's open transaction is its own restart: the ID's 12 digits come from the
group instance ID (`process_unique`), which one live process holds at a time (the coordinator
fences a second with FENCED_INSTANCE_ID), so the restarted process registers the ID its
predecessor held, and that aborts the transaction as it starts. A static member that never comes
back leaves its transaction to the broker's timeout, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import re
import uuid
from collections.abc import Collection

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from ..settings import Settings
from ..topics import producer_options
from .membership import describe_group

__all__ = ["fence_departed", "process_transactional_id", "process_unique", "writers"]

log = logging.getLogger(__name__)

#: Fences under way in this process, by writer: the partitions a departed engine owned are taken
#: over at once, and one registration of its ID ends its transaction for all of them.
_FENCING: dict[str, asyncio.Task[None]] = {}


def process_transactional_id(group_id: str, unique: str) -> str:
    """The transactional ID of an engine process (`unique`: 12 hex digits of its own)."""
    return f"{group_id}-{unique}"


def process_unique(group_instance_id: str | None) -> str:
    """The 12 hex digits of an engine process's transactional ID: its own, or under static
    membership its group instance ID's, so that a restart fences its predecessor (see above)."""
    if group_instance_id is None:
        return uuid.uuid4().hex[:12]
    return hashlib.sha256(group_instance_id.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def writers(group_id: str, metadata: Collection[object]) -> set[str]:
    """The process transactional IDs of the group among committed offsets' `metadata`: anything
    else (another group's, a partition's own `<group>-p<n>`, a tool's note) is ignored."""
    pattern = re.compile(re.escape(group_id) + r"-[0-9a-f]{12}")
    return {m for m in metadata if isinstance(m, str) and pattern.fullmatch(m)}


async def fence_departed(settings: Settings, group_id: str, me: str, inputs: list[TopicPartition]) -> set[str]:
    """Fence the engine processes that committed `inputs`' offsets last and are no longer members
    of the group, as seen by member `me` (its client ID); the IDs fenced (see the module docstring).
    Raises what the lookups raise; the caller then waits for the transaction's timeout instead."""
    if settings.group_instance_id is not None or not me:
        return set()
    admin = AIOKafkaAdminClient(**settings.client_kwargs())
    try:
        await admin.start()
        coordinator = await admin.find_coordinator(group_id)
        committed = await admin.list_consumer_group_offsets(group_id, coordinator, inputs)
        last = writers(group_id, [o.metadata for o in committed.values() if o is not None and o.offset >= 0])
        if not last - {me}:
            return set()
        group = await describe_group(admin, group_id, coordinator)
    finally:
        await admin.close()
    if group is None or me not in group.client_ids:
        return set()  # a list that does not show the asker is not one to fence by
    departed = last - set(group.client_ids)
    for writer in sorted(departed):
        task = _FENCING.get(writer)
        if task is None:
            task = _FENCING[writer] = asyncio.create_task(_fence(settings, writer))
            task.add_done_callback(functools.partial(_done, writer))
        await asyncio.shield(task)
    return departed


def _done(writer: str, _: asyncio.Task[None]) -> None:
    _FENCING.pop(writer, None)


async def _fence(settings: Settings, writer: str) -> None:
    # Registering the ID aborts the transaction its departed holder left open, and fences it.
    producer = AIOKafkaProducer(**producer_options(settings, transactional_id=writer))
    try:
        await producer.start()
    finally:
        with contextlib.suppress(Exception):
            await producer.stop()
    log.warning("fenced %s, a departed engine that left a transaction open", writer)
