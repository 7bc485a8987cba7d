"""One transaction for every partition a poll touched (`HEADRACE_TRANSACTIONS=poll`, issue 17).

By default each owned partition commits its own transaction, under a transactional ID of its own
(`runtime.partition`). At moderate load that is most of what a workflow costs: a poll of eight
partitions commits up to eight transactions of a turn or two each, and each transaction costs
requests of the engine, the broker (markers, verification, the transaction log) and every reader
it wakes. Measured at `constant-30` on eight partitions: 2.6 transactions per workflow, about 4 ms
of CPU each across the processes (`docs/performance.md`, "Transactions per poll").

Here the owners of a poll hand their batches to one transaction of a producer of the process. A
transactional ID of the process cannot fence a partition's earlier owner, so the group does: the
transaction commits its partitions' input offsets with the member's generation
(`runtime.group_fencing`, KIP-447), and is aborted if the group has moved on. Two things make that
enough, as in Kafka Streams' "exactly_once_v2":

- A transaction's records are all delivered before its offsets are sent, and the offsets before it
  commits. So a transaction whose offsets the coordinator accepted has its records in the log
  before the group's next generation exists, and one that writes after that is refused.
- A new owner does not read a partition while a transaction is open on it (`wait_until_settled`):
  one accepted before the rebalance is then committed or aborted first (at the latest when the
  producer's transaction timeout aborts it), and its outcome is in the restore.

An owner's per-partition producer is still registered at its start, which fences an engine that
commits per partition (an earlier version in a rolling upgrade, or one configured so).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, ProducerFenced
from aiokafka.structs import OffsetAndMetadata

from ..errors import GenerationFenced
from ..settings import Settings
from ..topics import producer_options
from . import group_fencing
from .departed import process_transactional_id, process_unique
from .group_fencing import GroupMember
from .partition import (
    PRODUCER_RETRY_BACKOFF_MS,
    TRANSACTION_TIMEOUT_MS,
    PartitionOwner,
    PreparedCommit,
    _consume_exception,
    retry_concurrent_transactions_sooner,
    send_all,
)
from .sink import TransactionSink

__all__ = ["PollTransactions"]

log = logging.getLogger(__name__)

#: A round's batches share a transaction when there are several and together they buffer at most
#: this many records; otherwise each owner commits its own, side by side. One owner alone (a quiet
#: engine: one workflow's next step) saves nothing by sharing and would pay the offsets' two round
#: trips; at full load each partition's transaction is already large (chain-5 at 1,000 in flight:
#: ~300 records), and eight producers send them in parallel where one would send them in turn.
#: `constant-30` on eight partitions: ~90 records a round (docs/performance.md).
SHARED_MAX_RECORDS = 512


@dataclass(slots=True)
class _Share:
    owner: PartitionOwner
    pending: TransactionSink
    offsets: dict[TopicPartition, int]
    done: asyncio.Future[None]


@dataclass(slots=True)
class _Round:
    """The owners working on one poll (or one timer firing), by partition: a transaction goes once
    every owner still working has handed its batch over (or is waiting for an earlier one's)."""

    working: set[int]
    handed: list[_Share] = field(default_factory=list)
    #: Owners whose batch is in a transaction under way.
    sending: set[int] = field(default_factory=set)


class PollTransactions:
    """The process's transactional producer, and the rounds of owners whose batches it commits."""

    def __init__(self, settings: Settings, group_id: str, member: Callable[[], GroupMember]) -> None:
        self.settings = settings
        self.group_id = group_id
        #: Also the metadata of every offset the engine commits, and its consumer's client ID: how
        #: a partition's next owner finds and fences it if it departs with a transaction open
        #: (`runtime.departed`).
        self.transactional_id = process_transactional_id(group_id, process_unique(settings.group_instance_id))
        self._member = member
        #: Told the group offsets each shared transaction committed (`GroupOffsets.committed_in_transaction`).
        self.offsets_committed: Callable[[dict[TopicPartition, int]], None] | None = None
        #: The member as the transaction being committed names it (checked before it is sent).
        self._committing_as = GroupMember(-1, "")
        #: Owners whose last shared transaction failed for a reason of its own (not fencing): each
        #: commits its next batch alone, so that one partition's bad batch fails only its own.
        self._alone: set[int] = set()
        self.producer: AIOKafkaProducer | None = None
        self._round: _Round | None = None
        #: Transactions under way (a task is kept referenced until it ends), one at a time.
        self._tasks: set[asyncio.Task[None]] = set()
        self._one_at_a_time = asyncio.Lock()

    async def start(self) -> AIOKafkaProducer:
        retry_concurrent_transactions_sooner()
        group_fencing.fence(self.transactional_id, lambda: self._committing_as)
        producer = AIOKafkaProducer(**producer_options(
            self.settings, transactional_id=self.transactional_id, retry_backoff_ms=PRODUCER_RETRY_BACKOFF_MS,
            transaction_timeout_ms=TRANSACTION_TIMEOUT_MS,
        ))
        try:
            await producer.start()
        except BaseException:
            with contextlib.suppress(Exception):
                await producer.stop()
            raise
        self.producer = producer  # only a started one: a transaction on an unstarted one waits forever
        return producer

    async def stop(self) -> None:
        # The transactions under way end first: their offsets are sent fenced, or not at all.
        await asyncio.gather(*self._tasks, return_exceptions=True)
        producer, self.producer = self.producer, None
        if producer is not None:
            await producer.stop()
        group_fencing.unfence(self.transactional_id)

    def leave(self, number: int) -> None:
        """Owner `number` is out of the round under way (its batch failed and it is restoring): the
        others' batches do not wait for it."""
        round_ = self._round
        if round_ is not None:
            round_.working.discard(number)
            round_.sending.discard(number)
            self._maybe_commit(round_)

    async def _usable(self) -> AIOKafkaProducer:
        """The process's producer, a new one if it is gone or done for (its sender ended on an error
        aiokafka does not recover from, or it never started); raises if none can be started."""
        producer = self.producer
        if producer is not None and not producer._txn_manager.is_fatal_error() \
                and not producer._sender.sender_task.done():
            return producer
        log.warning("the engine's transactional producer is unusable; starting a new one")
        self.producer = None
        if producer is not None:
            with contextlib.suppress(Exception):
                await producer.stop()
        try:
            return await self.start()
        except Exception as exc:
            raise KafkaError(f"the engine's transactional producer could not be started: {exc!r}") from exc

    def commit_for(self, owner: Callable[[], PartitionOwner]) -> Callable[[Any, dict[TopicPartition, int]], Any]:
        """The `commit` an owner is made with: its batches go into the round under way."""

        async def commit(pending: Any, offsets: dict[TopicPartition, int]) -> None:
            await self.submit(owner(), pending, offsets)

        return commit

    async def run_round(self, work: list[tuple[int, Any]]) -> None:
        """Run the owners' coroutines `work` (partition, coroutine) side by side, their batches
        committed together."""
        self._round = round_ = _Round({number for number, _ in work})
        try:
            outcomes = await asyncio.gather(*(self._one_of(round_, number, coroutine) for number, coroutine in work),
                                            return_exceptions=True)
        finally:
            self._round = None
        for outcome in outcomes:  # every owner is done with the round; then the first failure is told
            if isinstance(outcome, BaseException):
                raise outcome

    async def _one_of(self, round_: _Round, number: int, coroutine: Any) -> None:
        try:
            await coroutine
        finally:
            round_.working.discard(number)
            round_.sending.discard(number)
            self._maybe_commit(round_)

    async def submit(self, owner: PartitionOwner, pending: Any, offsets: dict[TopicPartition, int]) -> None:
        round_ = self._round
        share = _Share(owner, pending, offsets, asyncio.get_running_loop().create_future())
        # Alone: after its last shared transaction failed, or outside a round.
        if owner.number in self._alone or round_ is None or owner.number not in round_.working:
            await self._commit_alone(share)
        else:
            round_.handed.append(share)
            self._maybe_commit(round_)
        await share.done
        self._alone.discard(owner.number)

    def _maybe_commit(self, round_: _Round) -> None:
        if round_.handed and len(round_.handed) + len(round_.sending) >= len(round_.working):
            shares, round_.handed = round_.handed, []
            round_.sending.update(share.owner.number for share in shares)
            if len(shares) > 1 and sum(len(share.pending.sends) for share in shares) <= SHARED_MAX_RECORDS:
                self._spawn(self._commit(shares))
            else:  # one owner, or batches large enough to be worth a transaction each
                for share in shares:
                    self._spawn(self._commit_alone(share))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _commit_alone(self, share: _Share) -> None:
        try:
            await share.owner.commit_alone(share.pending, share.offsets)
        except BaseException as exc:
            share.done.set_exception(exc)
        else:
            share.done.set_result(None)

    async def _commit(self, shares: list[_Share]) -> None:
        try:
            async with self._one_at_a_time:
                await self._transaction(shares)
        except BaseException as exc:
            for share in shares:
                if not share.done.done():
                    share.done.set_exception(exc)
        else:
            for share in shares:
                if not share.done.done():
                    share.done.set_result(None)

    async def _transaction(self, shares: list[_Share]) -> None:
        producer = await self._usable()
        prepared: list[tuple[_Share, PreparedCommit]] = []
        for share in shares:
            try:
                got = await share.owner.prepare_commit(share.pending, share.offsets, producer)
            except Exception as exc:  # that owner's batch only (a record over the limit): the rest go on
                share.done.set_exception(exc)
                continue
            if got is None:
                share.done.set_result(None)
            else:
                prepared.append((share, got))
        if not prepared:
            return
        offsets = _offsets([(share.owner, got) for share, got in prepared], self.transactional_id)
        if not offsets:
            # Nothing to fence with (an owner that has read no input yet): each commits alone, as
            # an owner of its own transactional ID.
            for share, _ in prepared:
                await self._commit_alone(share)
            return
        futures: list[asyncio.Future[Any]] = []
        began = time.monotonic()
        sends = [send for _, got in prepared for send in got.sends]
        try:
            async with producer.transaction():
                await send_all(producer, sends, futures, prepared[0][0].owner.own_topics)
                await asyncio.gather(*futures)  # delivered before the offsets fence the transaction
                who = self._member()
                if who.generation < 0 or not who.member_id:
                    # Out of the group (rejoining): the coordinator skips the check for an unknown
                    # generation, so such a commit would not be fenced at all. Aborted instead.
                    raise GenerationFenced("the engine is not a member of its group at the moment")
                self._committing_as = who
                await producer.send_offsets_to_transaction(offsets, self.group_id)
        except BaseException as exc:
            for future in futures:
                future.add_done_callback(_consume_exception)
            for share, _ in prepared:
                share.owner.commit_failed(began)
            if not isinstance(exc, (GenerationFenced, ProducerFenced)):
                self._alone.update(share.owner.number for share, _ in prepared)
            if isinstance(exc, ProducerFenced):
                # The process's ID was registered again: by a new owner that took this engine for
                # departed (`runtime.departed`), or by the broker aborting a transaction open past
                # its timeout. Either way the engine may be out of its group, and a restore would
                # register the partitions' own IDs and fence their new owners: the owners are
                # released instead, and the engine rejoins (`Engine._recover`). The next shared
                # transaction gets a new producer (`_usable`).
                raise GenerationFenced(
                    "the engine's transactional ID was fenced (taken for departed, or a transaction "
                    "was open past its timeout): its partitions may be another engine's now") from exc
            raise
        if self.offsets_committed is not None:
            self.offsets_committed({tp: o.offset for tp, o in offsets.items()})
        for share, got in prepared:
            share.owner.commit_done(got, began)


def _offsets(prepared: list[tuple[PartitionOwner, PreparedCommit]],
             writer: str) -> dict[TopicPartition, OffsetAndMetadata]:
    """The input positions the transaction's states include, as the group's offsets: every owner's,
    so that each transaction is fenced even when it consumed nothing (a timer's). Each names the
    `writer` (`runtime.departed`)."""
    out: dict[TopicPartition, OffsetAndMetadata] = {}
    for owner, got in prepared:
        for topic, offset in got.positions.items():
            out[TopicPartition(topic, owner.number)] = OffsetAndMetadata(offset, writer)
    return out
