"""The engine group's committed offsets: a report that follows the committed state, not its truth.

Until issue 17 each partition's transaction committed its input offsets to the consumer group
(`send_offsets_to_transaction`): an AddOffsetsToTxn and a TxnOffsetCommit round trip per
transaction, and a transaction on the group coordinator besides. The positions a state includes now
ride in its own records (`wire.records.POSITIONS_HEADER`), and a restore reads on from there. The
group's offsets still matter to others: the API's read-your-writes barrier waits for them to pass a
command, lag tools (`kafka-consumer-groups.sh --describe`) show them, and an engine of an earlier
version in a mixed fleet starts from them. So they follow each commit, outside the transactions:
at most one OffsetCommit in flight, carrying everything committed since the last one.

They are never ahead of the state (they are sent after its transaction committed), so an owner
reads on from the higher of the two (`Engine._seek_owned`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

__all__ = ["GroupOffsets"]

log = logging.getLogger(__name__)


class GroupOffsets:
    """Commits the offsets `advance` is given to `consumer`'s group, one request at a time."""

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self._consumer = consumer
        self._due: dict[TopicPartition, int] = {}
        self._sending: asyncio.Task[None] | None = None

    def advance(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Offsets whose state has committed: sent now, or after the request in flight."""
        self._due.update(offsets)
        if self._sending is None or self._sending.done():
            self._sending = asyncio.create_task(self._send())

    async def flush(self) -> None:
        """Wait until everything advanced so far was sent (before partitions are given up)."""
        while self._sending is not None and not self._sending.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(self._sending)
        if self._due:
            self._sending = asyncio.create_task(self._send())
            with contextlib.suppress(Exception):
                await asyncio.shield(self._sending)

    async def close(self) -> None:
        if self._sending is not None and not self._sending.done():
            self._sending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sending

    async def _send(self) -> None:
        while self._due:
            assigned = self._consumer.assignment()
            due, self._due = self._due, {}
            # A partition given up since was committed by its last flush; its new owner commits on.
            offsets = {tp: offset for tp, offset in due.items() if tp in assigned}
            if not offsets:
                continue
            try:
                await self._consumer.commit(offsets)
            except KafkaError as exc:
                # A rebalance moved on (the new generation's owners commit), or the coordinator is
                # away: the state's own positions are unaffected, and the next commit carries these.
                log.debug("committing the group's offsets failed (%r); they follow with the next", exc)
                for tp, offset in offsets.items():
                    if offset > self._due.get(tp, -1):
                        self._due[tp] = offset
                return
