"""The rounds of `engine.runtime.poll_transactions`: which owners' batches share a transaction, and
what each owner is told when it commits or fails. The producer is a stand-in here; the fencing
itself is tested against a broker (tests/integration/test_group_fencing.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import ProducerFenced

from engine.errors import GenerationFenced
from engine.runtime.departed import writers
from engine.runtime.group_fencing import GroupMember
from engine.runtime.poll_transactions import SHARED_MAX_RECORDS, PollTransactions
from engine.settings import Settings

MEMBER = GroupMember(3, "member-1")


class Owner:
    """What the rounds use of a `PartitionOwner`."""

    own_topics = ("status", "history-store", "history")

    def __init__(self, number: int, *, broken: bool = False) -> None:
        self.number = number
        self.positions = {"commands": 10 + number}
        self.broken = broken
        self.events: list[str] = []

    async def prepare_commit(self, pending: Any, offsets: dict[TopicPartition, int], producer: Any) -> Any:
        if self.broken:
            raise ValueError(f"owner {self.number}'s batch is bad")
        # What a `PreparedCommit` holds (the compiled build's class takes only a real sink).
        return SimpleNamespace(pending=pending, sends=[], positions=dict(self.positions))

    def commit_done(self, prepared: Any, began: float) -> None:
        self.events.append("done")

    def commit_failed(self, began: float) -> None:
        self.events.append("failed")

    async def commit_alone(self, pending: Any, offsets: dict[TopicPartition, int]) -> None:
        self.events.append("alone")


class Producer:
    """A transactional producer that records each transaction's offsets."""

    def __init__(self) -> None:
        self.client = SimpleNamespace(cluster=None)
        self.transactions: list[dict[TopicPartition, Any]] = []
        self.refuse: Exception | None = None
        self.fatal = False
        self._txn_manager = SimpleNamespace(is_fatal_error=lambda: self.fatal)
        self._sender = SimpleNamespace(sender_task=SimpleNamespace(done=lambda: False))

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        yield

    async def send_offsets_to_transaction(self, offsets: dict[TopicPartition, Any], group_id: str) -> None:
        await asyncio.sleep(0)  # a broker round trip: other owners run meanwhile
        if self.refuse is not None:
            raise self.refuse
        self.transactions.append(offsets)


def _transactions(member: GroupMember = MEMBER) -> tuple[PollTransactions, Producer]:
    poll = PollTransactions(Settings.from_env(bootstrap_servers="unused:9092"), "engine", lambda: member)
    producer = Producer()
    poll.producer = producer  # type: ignore[assignment]
    return poll, producer


async def _work(poll: PollTransactions, owner: Owner, *, submits: bool = True, raises: bool = False,
                records: int = 4) -> None:
    await asyncio.sleep(0)
    if raises:
        raise RuntimeError("this owner's turn broke before its commit")
    if submits:
        await poll.submit(owner, SimpleNamespace(sends=[None] * records), {})  # type: ignore[arg-type]


def _partitions(offsets: dict[TopicPartition, Any]) -> list[int]:
    return sorted(tp.partition for tp in offsets)


async def test_the_owners_of_a_round_share_one_transaction() -> None:
    poll, producer = _transactions()
    owners = [Owner(n) for n in range(4)]
    await poll.run_round([(o.number, _work(poll, o)) for o in owners])
    assert [_partitions(t) for t in producer.transactions] == [[0, 1, 2, 3]]
    # Each owner's positions are the group's offsets of its partition: the transaction is fenced.
    assert {tp: o.offset for tp, o in producer.transactions[0].items()} == {
        TopicPartition("commands", n): 10 + n for n in range(4)}
    assert all(o.events == ["done"] for o in owners)


async def test_an_owner_that_fails_or_has_nothing_does_not_hold_the_others() -> None:
    poll, producer = _transactions()
    owners = [Owner(n) for n in range(4)]
    work = [(0, _work(poll, owners[0])), (1, _work(poll, owners[1], raises=True)),
            (2, _work(poll, owners[2], submits=False)), (3, _work(poll, owners[3]))]
    with pytest.raises(RuntimeError, match="broke before"):
        await asyncio.wait_for(poll.run_round(work), 5)
    await asyncio.wait_for(asyncio.gather(*poll._tasks), 5)  # the transaction the round began
    assert [_partitions(t) for t in producer.transactions] == [[0, 3]]
    assert owners[0].events == owners[3].events == ["done"]


async def test_a_bad_batch_fails_its_owner_only_and_a_failed_transaction_every_owner_in_it() -> None:
    poll, producer = _transactions()
    good, bad = Owner(0), Owner(1, broken=True)
    results = await asyncio.gather(poll.run_round([(0, _work(poll, good)), (1, _work(poll, bad))]),
                                   return_exceptions=True)
    assert isinstance(results[0], ValueError)
    assert [_partitions(t) for t in producer.transactions] == [[0]] and good.events == ["done"]

    producer.refuse = RuntimeError("the broker refused a record")
    owners = [Owner(2), Owner(3)]
    with pytest.raises(RuntimeError, match="refused a record"):
        await poll.run_round([(o.number, _work(poll, o)) for o in owners])
    assert all(o.events == ["failed"] for o in owners)
    # Their next batches commit alone (so a bad one fails only its own partition), then shared again.
    producer.refuse = None
    await poll.run_round([(o.number, _work(poll, o)) for o in owners])
    assert all(o.events == ["failed", "alone"] for o in owners)
    await poll.run_round([(o.number, _work(poll, o)) for o in owners])
    assert [_partitions(t) for t in producer.transactions][-1] == [2, 3]


async def test_a_refused_generation_fails_every_owner_and_none_commits_alone_after() -> None:
    poll, producer = _transactions()
    producer.refuse = GenerationFenced("the group has moved on without this member")
    owners = [Owner(0), Owner(1)]
    with pytest.raises(GenerationFenced):
        await poll.run_round([(o.number, _work(poll, o)) for o in owners])
    assert not poll._alone and all(o.events == ["failed"] for o in owners)


async def test_a_fenced_process_id_releases_its_owners_rather_than_restoring_them() -> None:
    # A new owner took this engine for departed (`runtime.departed`), or the broker aborted a
    # transaction open past its timeout: the engine may be out of its group, so its owners are
    # released (GenerationFenced), and none of them commits alone under its partition's ID.
    poll, producer = _transactions()
    producer.refuse = ProducerFenced()
    owners = [Owner(0), Owner(1)]
    with pytest.raises(GenerationFenced, match="fenced"):
        await poll.run_round([(o.number, _work(poll, o)) for o in owners])
    assert not poll._alone and all(o.events == ["failed"] for o in owners)


async def test_every_offset_names_the_process_that_committed_it() -> None:
    poll, producer = _transactions()
    await poll.run_round([(n, _work(poll, Owner(n))) for n in range(2)])
    assert {o.metadata for o in producer.transactions[0].values()} == {poll.transactional_id}
    assert writers("engine", [poll.transactional_id]) == {poll.transactional_id}


async def test_the_group_offsets_are_told_what_a_shared_transaction_committed() -> None:
    poll, producer = _transactions()
    told: list[dict[TopicPartition, int]] = []
    poll.offsets_committed = told.append
    await poll.run_round([(n, _work(poll, Owner(n))) for n in range(2)])
    producer.refuse = RuntimeError("the broker refused a record")
    with pytest.raises(RuntimeError):
        await poll.run_round([(n, _work(poll, Owner(n))) for n in range(2, 4)])
    assert told == [{TopicPartition("commands", 0): 10, TopicPartition("commands", 1): 11}]


async def test_out_of_the_group_nothing_is_committed() -> None:
    # Generation -1: the coordinator would skip the check for it, so the engine does not send it.
    poll, producer = _transactions(GroupMember(-1, ""))
    with pytest.raises(GenerationFenced, match="not a member"):
        await poll.run_round([(0, _work(poll, Owner(0))), (1, _work(poll, Owner(1)))])
    assert producer.transactions == []


async def test_one_owner_or_large_batches_commit_each_on_its_own() -> None:
    poll, producer = _transactions()
    alone = Owner(5)
    await poll.submit(alone, SimpleNamespace(sends=[None]), {})  # type: ignore[arg-type]  # outside a round
    await poll.run_round([(5, _work(poll, alone))])  # the only owner of its round
    large = [Owner(n) for n in range(3)]
    await poll.run_round([(o.number, _work(poll, o, records=SHARED_MAX_RECORDS // 2)) for o in large])
    assert producer.transactions == []
    assert alone.events == ["alone", "alone"] and all(o.events == ["alone"] for o in large)


async def test_a_producer_done_for_is_replaced_before_the_next_transaction() -> None:
    poll, broken = _transactions()
    fresh = Producer()

    async def start() -> Producer:
        poll.producer = fresh  # type: ignore[assignment]
        return fresh

    poll.start = start  # type: ignore[method-assign]
    broken.fatal = True  # its sender ended on an error aiokafka does not recover from
    await poll.run_round([(o.number, _work(poll, o)) for o in (Owner(0), Owner(1))])
    assert broken.transactions == [] and [_partitions(t) for t in fresh.transactions] == [[0, 1]]
