"""A turn whose records Kafka would refuse sets aside the input that made them too large, and only
that one, when a transaction collapses several turns of one instance into its last state's records
(`TransactionSink.records`) or applies a fan-in's results in one turn (`PartitionOwner._apply_results`).

Without Kafka: the partition owner's real `_commit` (which measures every record) to a producer that
keeps what it is handed; a failed batch is handled as the engine handles it (`Engine._recover`):
the partition is rebuilt from what was committed, keeping what it learnt of the inputs that broke a
turn, and the batch is read again."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from aiokafka import TopicPartition
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.structs import ConsumerRecord
from support import input_record

from engine import when_all
from engine.core import commands as cmd
from engine.core.cache import ExecutionCache
from engine.core.codec import encode
from engine.core.orchestrator import Orchestrator
from engine.core.values import RuntimeStatus
from engine.errors import PoisonedInputError
from engine.runtime.partition import RECORD_OVERHEAD, PartitionOwner
from engine.settings import Settings
from engine.topics import Topics

#: The record limit of these tests' partition (the real one is over 1 MiB; what matters is the ratio).
LIMIT = 40_000


def loud_on_event(ctx: Any, args: list[Any]) -> Any:
    yield ctx.wait_for_external_event("a")
    ctx.set_custom_status("s" * args[0])
    yield ctx.wait_for_external_event("b")
    yield ctx.wait_for_external_event("c")
    return "done"


def loud_then_done(ctx: Any, args: list[Any]) -> Any:
    yield ctx.wait_for_external_event("a")
    ctx.set_custom_status("s" * args[0])
    return "done"


def loud_then_waits(ctx: Any, args: list[Any]) -> Any:
    yield ctx.wait_for_external_event("z")
    ctx.set_custom_status("s" * args[0])
    yield ctx.wait_for_external_event("never")


def fan_out(ctx: Any, n: Any) -> Any:
    return len((yield when_all([ctx.call_activity("a", input=i) for i in range(n)])))


WORKFLOWS = {"loud_on_event": loud_on_event, "fan_out": fan_out, "loud_then_done": loud_then_done,
             "loud_then_waits": loud_then_waits}


class _Producer:
    """What `_commit` uses of a transactional `AIOKafkaProducer`; every record is accepted."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None]] = []  # (topic, value) of records sent one by one
        # It knows no topic's partitions: records of other topics than the owner's go through `send`.
        self.client = SimpleNamespace(cluster=SimpleNamespace(partitions_for_topic=lambda topic: None))

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(1024 * 1024, 0, is_transactional=True)

    def _done(self) -> asyncio.Future[Any]:
        future = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    async def send_batch(self, batch: BatchBuilder, topic: str, *, partition: int) -> asyncio.Future[Any]:
        return self._done()

    async def send(self, topic: str, *, value: bytes | None, key: bytes, partition: int | None,
                   headers: Any) -> asyncio.Future[Any]:
        self.sent.append((topic, value))
        return self._done()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        yield


class Partition:
    """Partition 0 of one engine, fed batches of records (see the module docstring)."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self.settings = Settings.from_env(dict(env or {}))
        self.topics = Topics.for_settings(self.settings)
        self.producer = _Producer()
        self.committed: list[dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]] = []
        self.rebuilds = 0
        self.offset = 0
        self.owner = self._owner()

    def _owner(self) -> PartitionOwner:
        owner = PartitionOwner(0, self.settings, self.topics, Orchestrator(WORKFLOWS.get, ExecutionCache(10)),
                               "engine", partitions=1)
        # The limits `PartitionOwner` derives from the record limit, as it would for this one.
        owner.record_limit, owner.audit_bytes, owner.store_bytes = LIMIT, LIMIT // 2, LIMIT - RECORD_OVERHEAD
        owner.producer = self.producer  # type: ignore[assignment]
        return owner

    def record(self, topic: str, message: cmd.InstanceMessage) -> ConsumerRecord[bytes, bytes]:
        self.offset += 1
        return input_record(topic, self.offset, message.instance_id.encode(), encode(message))

    async def batch(self, *messages: cmd.InstanceMessage | bytes) -> None:
        """One batch of `messages` (bytes: a record of that value on the commands topic)."""
        batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = {}
        for message in messages:
            if isinstance(message, bytes):
                self.offset += 1
                record = input_record(self.topics.commands, self.offset, b"i", message)
                batch.setdefault(TopicPartition(self.topics.commands, 0), []).append(record)
                continue
            topic = self.topics.results if isinstance(message, cmd.ActivityResult) else self.topics.commands
            batch.setdefault(TopicPartition(topic, 0), []).append(self.record(topic, message))
        for _ in range(10):
            try:
                await self.owner.process(batch)
            except PoisonedInputError:
                await self._rebuild()
                continue
            self.committed.append(batch)
            return
        raise AssertionError(f"the batch kept failing: {self.rebuilds} rebuilds")

    async def _rebuild(self) -> None:
        """A new owner that reads the committed batches again, keeping what the old one learnt of
        the inputs that broke a turn (the engine keeps the same owner object across a rebuild)."""
        self.rebuilds += 1
        old, self.owner = self.owner, self._owner()
        self.owner.poisoned, self.owner.one_by_one = old.poisoned, old.one_by_one
        sent = len(self.producer.sent)
        for batch in self.committed:
            await self.owner.process(batch)
        del self.producer.sent[sent:]  # what was committed before is not written twice

    def dead_letters(self) -> list[tuple[int, str]]:
        """(offset, reason) of each input set aside."""
        letters = [orjson.loads(value) for topic, value in self.producer.sent
                   if topic == self.topics.dead_letter and value is not None]
        return [(letter["offset"], letter["reason"]) for letter in letters]


def raise_event(name: str, iid: str = "i") -> cmd.RaiseEvent:
    return cmd.RaiseEvent(instance_id=iid, command_id=f"r-{name}", name=name, input="1")


def start(name: str, input: str | None = None, iid: str = "i") -> cmd.StartWorkflow:
    return cmd.StartWorkflow(instance_id=iid, command_id="c1", name=name, input=input)


@pytest.mark.parametrize("audit", ["turn", "execution"])
@pytest.mark.parametrize("what", ["event", "state"])
async def test_the_turn_that_made_a_record_too_large_is_blamed_not_the_last(what: str, audit: str) -> None:
    p = Partition({"HEADRACE_AUDIT": audit})
    # "event": the custom status alone is over the limit (in its event, and in every state after);
    # "state": the input and the custom status are each under it, and together over it in a state.
    size = LIMIT + 1000 if what == "event" else LIMIT * 6 // 10
    padding = "" if what == "event" else "p" * size
    await p.batch(start("loud_on_event", f'[{size}, "{padding}"]'))
    # Three turns of the instance in one transaction: only the last one's state is written, and
    # every state after "a" is over the limit.
    await p.batch(raise_event("a"), raise_event("b"), raise_event("c"))
    first = p.offset - 2
    letters = p.dead_letters()
    assert [offset for offset, _ in letters] == [first]
    assert "over the limit" in letters[0][1]
    state = p.owner.states["i"]
    assert state.status is RuntimeStatus.FAILED
    assert state.failure is not None and "over the limit" in state.failure.message
    assert p.rebuilds == 1


async def test_a_state_of_a_run_a_purge_ended_is_not_blamed() -> None:
    p = Partition()
    size = LIMIT * 6 // 10
    args = f'[{size}, "{"p" * size}"]'
    await p.batch(start("loud_then_done", args))
    # "a" makes the first run's state too large, but it is purged in the same transaction, so that
    # state is never written; the restarted run's "z" makes a state too large that would be.
    await p.batch(raise_event("a"), cmd.PurgeWorkflow(instance_id="i", command_id="purge"),
                  cmd.StartWorkflow(instance_id="i", command_id="c2", name="loud_then_waits", input=args),
                  raise_event("z"))
    assert [offset for offset, _ in p.dead_letters()] == [p.offset]
    state = p.owner.states["i"]
    assert state.execution_id == "c2" and state.status is RuntimeStatus.FAILED
    assert p.rebuilds == 1


async def test_a_too_large_turn_of_results_applied_together_is_read_again_one_at_a_time() -> None:
    p = Partition()
    await p.batch(start("fan_out", "3"))
    big = '"' + "r" * (LIMIT + 1000) + '"'
    # The result in the middle is over the limit alone (a worker checks its results against the
    # payload limit; this one came straight on the topic): it alone is set aside.
    results = [cmd.ActivityResult(instance_id="i", execution_id="c1", task_id=task,
                                  result=big if task == 1 else str(task)) for task in range(3)]
    await p.batch(*results)
    letters = p.dead_letters()
    assert [offset for offset, _ in letters] == [p.offset - 1]
    assert "over the limit" in letters[0][1]
    assert p.owner.states["i"].status is RuntimeStatus.FAILED
    # Once for the turn of three (read again one at a time), once for the one that broke its own.
    assert p.rebuilds == 2


async def test_a_dead_letter_fits_in_a_record_whatever_its_value_holds() -> None:
    # Control bytes take six bytes each in the dead letter's JSON, and the setting allows far more
    # than the record limit: the copy is cut so that the dead letter is written, once.
    p = Partition({"HEADRACE_DEAD_LETTER_VALUE_BYTES": str(10 * 1024 * 1024)})
    await p.batch(b"\x01" * LIMIT)
    assert [offset for offset, _ in p.dead_letters()] == [p.offset]
    assert p.rebuilds == 0


async def test_an_instance_is_failed_even_when_its_fail_turn_was_rolled_back_for_another() -> None:
    # Two instances made too large in one batch: the first input's fail turn is applied while the
    # second input is still to be found, and that transaction is not committed; read again, the
    # first instance is failed again, not only its input dead-lettered.
    p = Partition()
    size = LIMIT * 6 // 10
    args = f'[{size}, "{"p" * size}"]'
    await p.batch(start("loud_on_event", args, iid="A"), start("loud_on_event", args, iid="B"))
    await p.batch(raise_event("a", "A"), raise_event("a", "B"))
    assert [offset for offset, _ in p.dead_letters()] == [p.offset - 1, p.offset]
    assert p.owner.states["A"].status is RuntimeStatus.FAILED
    assert p.owner.states["B"].status is RuntimeStatus.FAILED
    assert p.rebuilds == 2
