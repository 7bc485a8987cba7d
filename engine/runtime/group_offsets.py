"""The engine group's committed offsets: a report that follows the committed state, not its truth.

Until issue 17 each partition's transaction committed its input offsets to the consumer group
(`send_offsets_to_transaction`): an AddOffsetsToTxn and a TxnOffsetCommit round trip per
transaction, and a transaction on the group coordinator besides. The positions a state includes now
ride in its own records (`wire.records.POSITIONS_HEADER`), and a restore reads on from there. The
group's offsets still matter to others: the API's read-your-writes barrier waits for them to pass a
command, lag tools (`kafka-consumer-groups.sh --describe`) show them, and an engine of an earlier
version in a mixed fleet starts from them. So they follow the commits, outside the transactions:
at most one OffsetCommit in flight, carrying everything committed since the last one. (A
transaction shared by a poll's partitions commits them itself, since they are what fences it:
`runtime.poll_transactions`, which tells `committed_in_transaction`. They are not sent again then,
which was 0.17 requests and a write to `__consumer_offsets` per `constant-30` workflow; what an
earlier batch left due for those partitions is dropped, and where an OffsetCommit under way holds
one of them, the transaction's offset is sent again after it, since that commit could reach the
coordinator after the transaction's markers and leave the group's offset behind, for good on a
partition that gets no more input.)

Pacing (issue 17): sent after every poll, they were one OffsetCommit per poll, each a request and a
write to `__consumer_offsets`: 1.2 of the 18 broker requests per workflow at `constant-30`, and 6 %
of the engine's CPU. Now a commit that only moves results waits until `INTERVAL_S` after the
previous one (a lag tool shows up to that much more lag). One that moves an offset of the
`urgent_topic` (the engine's `commands`) goes at once: the API's barrier takes every command below
the group's offset as applied and decides about the ones above it from the status alone, which
cannot show a start that a later purge removed (`api.consistency`); the window where it could be
wrong must stay one request long. A flush does not wait either.

They are never ahead of the state (they are sent after its transaction committed), so an owner
reads on from the higher of the two (`Engine._seek_owned`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

__all__ = ["INTERVAL_S", "GroupOffsets"]

log = logging.getLogger(__name__)

#: The shortest time between two OffsetCommits (see the module docstring).
INTERVAL_S = 0.1


class GroupOffsets:
    """Commits the offsets `advance` is given to `consumer`'s group, one request at a time; those
    of `urgent_topic` without waiting for the pace."""

    def __init__(self, consumer: AIOKafkaConsumer, urgent_topic: str, interval_s: float = INTERVAL_S,
                 metadata: str = "") -> None:
        self._consumer = consumer
        #: Every offset's metadata: the engine's transactional ID, if it has one of its process
        #: (`runtime.departed`).
        self._metadata = metadata
        self._urgent_topic = urgent_topic
        self._interval_s = interval_s
        self._due: dict[TopicPartition, int] = {}
        self._sending: asyncio.Task[None] | None = None
        self._last_sent = -interval_s
        #: What is due goes without waiting for the pace: an offset of `urgent_topic`, a flush.
        self._urgent = False
        self._flushing = 0
        self._wake = asyncio.Event()
        #: Offsets a transaction committed to the group itself (`committed_in_transaction`).
        self._in_transaction: dict[TopicPartition, int] = {}
        #: The partitions of the OffsetCommit under way.
        self._in_flight: frozenset[TopicPartition] = frozenset()

    def committed_in_transaction(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Offsets a transaction shared by a poll's partitions committed to the group itself
        (`runtime.poll_transactions`): an `advance` to no further is not sent again. Except where
        an OffsetCommit under way holds the partition: it may reach the coordinator after the
        transaction's markers with an older offset, so the transaction's goes again after it."""
        for tp, offset in offsets.items():
            if tp in self._in_flight:
                if offset > self._due.get(tp, -1):
                    self._due[tp] = offset
                continue
            if offset > self._in_transaction.get(tp, -1):
                self._in_transaction[tp] = offset
            due = self._due.get(tp)
            if due is not None and due <= offset:
                del self._due[tp]

    def advance(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Offsets whose state has committed: sent after the request in flight, and, unless one
        is of `urgent_topic`, no sooner than `INTERVAL_S` after the previous one. Those a
        transaction committed already are not (`committed_in_transaction`)."""
        if self._in_transaction:
            offsets = {tp: offset for tp, offset in offsets.items()
                       if offset > self._in_transaction.get(tp, -1)}
            if not offsets:
                return
        self._due.update(offsets)
        if any(tp.topic == self._urgent_topic for tp in offsets):
            self._urgent = True
            self._wake.set()
        if self._sending is None or self._sending.done():
            self._sending = asyncio.create_task(self._send())

    async def flush(self) -> None:
        """Wait until everything advanced so far was sent (before partitions are given up)."""
        self._in_transaction.clear()  # the partitions may be another engine's before they are ours again
        self._flushing += 1
        self._wake.set()
        try:
            await self._flush()
        finally:
            self._flushing -= 1

    async def _flush(self) -> None:
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
            wait = self._last_sent + self._interval_s - time.monotonic()
            if wait > 0 and not (self._urgent or self._flushing):
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
            urgent, self._urgent = self._urgent, False
            self._last_sent = time.monotonic()
            assigned = self._consumer.assignment()
            due, self._due = self._due, {}
            # A partition given up since was committed by its last flush; its new owner commits on.
            offsets = {tp: offset for tp, offset in due.items() if tp in assigned}
            if not offsets:
                continue
            self._in_flight = frozenset(offsets)
            try:
                await self._consumer.commit(
                    {tp: (offset, self._metadata) for tp, offset in offsets.items()} if self._metadata else offsets)
            except KafkaError as exc:
                # A rebalance moved on (the new generation's owners commit), or the coordinator is
                # away: the state's own positions are unaffected, and the next commit carries these.
                log.debug("committing the group's offsets failed (%r); they follow with the next", exc)
                for tp, offset in offsets.items():
                    if offset > self._due.get(tp, -1):
                        self._due[tp] = offset
                # Still urgent when they go again: a commands offset must not wait for the pace.
                self._urgent = self._urgent or urgent
                return
            finally:
                self._in_flight = frozenset()
