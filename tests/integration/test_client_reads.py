"""The Python client's status view reads only the partitions of the instances it is asked about."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaProducer

from engine.core.state import InstanceState
from engine.core.values import RuntimeStatus
from engine.read.status import StatusFollower
from engine.settings import Settings
from engine.topics import Topics, ensure_topics
from engine.wire.records import encode_state

pytestmark = pytest.mark.kafka

INSTANCES = 4000


async def test_a_client_reads_only_the_partitions_it_touches(kafka_bootstrap: str) -> None:
    settings = Settings.from_env(bootstrap_servers=kafka_bootstrap, topic_prefix=f"reads-{uuid.uuid4().hex[:8]}.",
                                 partitions=8)
    await ensure_topics(settings)
    topic = Topics.for_settings(settings).status
    producer = AIOKafkaProducer(**settings.client_kwargs(), linger_ms=20)
    await producer.start()
    try:
        for n in range(INSTANCES):
            state = InstanceState(instance_id=f"wf-{n}", name="wf", status=RuntimeStatus.COMPLETED,
                                  execution_id=f"e{n}", run_id=f"e{n}")
            await producer.send(topic, encode_state(state), key=state.instance_id.encode())
        await producer.flush()
    finally:
        await producer.stop()

    view = StatusFollower(settings, partitions=())  # as the Python client makes it
    started = time.monotonic()
    await view.start()
    made = time.monotonic() - started
    try:
        assert view.states == {}  # creating a client reads nothing
        await view.follow_instance("wf-7")
        first = time.monotonic() - started - made
        assert view.states["wf-7"].run_id == "e7"
        mine = view.partition_of("wf-7")
        same = {f"wf-{n}" for n in range(INSTANCES) if view.partition_of(f"wf-{n}") == mine}
        assert set(view.states) == same  # that partition, all of it, and nothing else
        assert len(same) < INSTANCES / 4
        # A second partition joins without reading the first one again.
        other = next(f"wf-{n}" for n in range(INSTANCES) if view.partition_of(f"wf-{n}") != mine)
        await view.follow_instance(other)
        assert other in view.states and same <= set(view.states)
    finally:
        await view.stop()

    whole = StatusFollower(settings)  # every partition, as the REST API follows them
    started = time.monotonic()
    await whole.start()
    await whole.caught_up.wait()
    everything = time.monotonic() - started
    await whole.stop()
    assert len(whole.states) == INSTANCES
    print(f"\nclient view over {INSTANCES} instances in 8 partitions: created in {made * 1000:.0f} ms, first look-up "
          f"read {len(same)} states in {first * 1000:.0f} ms; the whole-topic view read {INSTANCES} in "
          f"{everything * 1000:.0f} ms")


async def test_a_client_view_from_the_end_reads_back_only_what_it_is_asked(kafka_bootstrap: str) -> None:
    """As `DaprWorkflowClient` follows: partitions from their end, older states looked up by key."""
    settings = Settings.from_env(bootstrap_servers=kafka_bootstrap, topic_prefix=f"ends-{uuid.uuid4().hex[:8]}.",
                                 partitions=4)
    await ensure_topics(settings)
    topic = Topics.for_settings(settings).status
    producer = AIOKafkaProducer(**settings.client_kwargs(), linger_ms=20)
    await producer.start()

    async def put(iid: str, run_id: str, status: RuntimeStatus = RuntimeStatus.COMPLETED) -> None:
        state = InstanceState(instance_id=iid, name="wf", status=status, execution_id=run_id, run_id=run_id)
        await producer.send_and_wait(topic, encode_state(state), key=iid.encode())

    view = StatusFollower(settings, partitions=(), from_end=True)
    try:
        for n in range(INSTANCES):
            await producer.send(topic, encode_state(InstanceState(
                instance_id=f"wf-{n}", name="wf", status=RuntimeStatus.RUNNING, execution_id=f"e{n}",
                run_id=f"e{n}")), key=f"wf-{n}".encode())
        await put("wf-0", "e0")  # the latest of wf-0 comes after 4,000 others: it must win
        await producer.send_and_wait(topic, None, key=b"wf-5")  # purged
        await view.start()

        newest = await view.look_up("wf-3999")
        assert newest is not None and newest.run_id == "e3999"
        assert set(view.states) == {"wf-3999"}  # nothing else of the partition was kept
        oldest = await view.look_up("wf-0")
        assert oldest is not None and (oldest.run_id, oldest.status) == ("e0", RuntimeStatus.COMPLETED)
        assert await view.look_up("wf-5") is None  # its latest record is a tombstone
        assert await view.look_up("never-written") is None

        # What happens after the look-up, the follower reads: a new run of wf-0, and a late start.
        await put("wf-0", "e0-again", RuntimeStatus.RUNNING)
        await put("never-written", "late")
        await view.wait_for("wf-0", lambda s: s is not None and s.run_id == "e0-again", timeout=30)
        state = await view.wait_for("never-written", lambda s: s is not None, timeout=30)
        assert state is not None and state.run_id == "late"
        assert (await view.look_up("wf-0")).run_id == "e0-again"  # type: ignore[union-attr]
    finally:
        await view.stop()
        await producer.stop()


class _Partitions:
    """A status topic of its own, a producer that writes states to it, and a client's view of it
    (made, not started)."""

    def __init__(self, kafka_bootstrap: str, partitions: int) -> None:
        self.settings = Settings.from_env(bootstrap_servers=kafka_bootstrap,
                                          topic_prefix=f"view-{uuid.uuid4().hex[:8]}.", partitions=partitions)
        self.topic = Topics.for_settings(self.settings).status
        self.producer = AIOKafkaProducer(**self.settings.client_kwargs(), linger_ms=5)
        self.view = StatusFollower(self.settings, partitions=(), from_end=True)  # as the Python client makes it

    async def put(self, iid: str, run_id: str = "r", status: RuntimeStatus = RuntimeStatus.RUNNING) -> None:
        state = InstanceState(instance_id=iid, name="wf", status=status, execution_id=run_id, run_id=run_id)
        await self.producer.send(self.topic, encode_state(state), key=iid.encode())


@contextlib.asynccontextmanager
async def _partitions(kafka_bootstrap: str, partitions: int) -> AsyncIterator[_Partitions]:
    made = _Partitions(kafka_bootstrap, partitions)
    await ensure_topics(made.settings)
    await made.producer.start()
    try:
        yield made
    finally:
        await made.view.stop()
        await made.producer.stop()


async def test_a_client_view_keeps_only_the_instances_it_was_asked_about(kafka_bootstrap: str) -> None:
    """A long-lived client that asked about one instance must not go on decoding and keeping the
    state of every other workflow written to that partition: its memory and CPU would grow with the
    whole system's traffic, not with what it asks about."""
    async with _partitions(kafka_bootstrap, 2) as kafka:
        view = kafka.view
        await kafka.put("asked", "r1")
        await kafka.producer.flush()
        await view.start()
        assert (await view.look_up("asked")).run_id == "r1"  # type: ignore[union-attr]
        mine = view.partition_of("asked")
        others = [f"other-{n}" for n in range(3000) if view.partition_of(f"other-{n}") == mine]
        assert len(others) > 1000
        for iid in others:
            await kafka.put(iid, "x")
        await kafka.put("asked", "r1", RuntimeStatus.COMPLETED)
        await kafka.producer.flush()
        done = await view.wait_for("asked", lambda s: s is not None and s.is_terminal, timeout=30)
        assert done is not None and done.run_id == "r1"
        assert set(view.states) == {"asked"}
        # Asked about later, another instance is read back then, and followed from there on.
        later = await view.look_up(others[10])
        assert later is not None and later.run_id == "x"
        await kafka.put(others[10], "y")
        await kafka.producer.flush()
        await view.wait_for(others[10], lambda s: s is not None and s.run_id == "y", timeout=30)
        assert set(view.states) == {"asked", others[10]}


async def test_a_client_view_lets_the_least_recently_asked_go_but_not_a_watched_one(kafka_bootstrap: str) -> None:
    async with _partitions(kafka_bootstrap, 1) as kafka:
        view = kafka.view
        for iid in ("a", "b", "c", "d"):
            await kafka.put(iid)
        await kafka.producer.flush()
        await view.start()
        view.asked_limit = 2
        told: list[str] = []
        view.subscribe(lambda iid, _: told.append(iid), lambda iid: iid == "a")  # "a" is watched
        # Two look-ups of one instance at once read it back once and both get it.
        first, second = await asyncio.gather(view.look_up("a"), view.look_up("a"))
        assert first is not None and first is second
        for iid in ("b", "c", "d"):
            assert await view.look_up(iid) is not None
        assert set(view.states) == {"a", "d"}  # b and c let go; a kept, its observer wants it
        assert (await view.look_up("b")).run_id == "r"  # type: ignore[union-attr]  # read back again
        await kafka.put("a", "r", RuntimeStatus.COMPLETED)
        await kafka.producer.flush()
        done = await view.wait_for("a", lambda s: s is not None and s.is_terminal, timeout=30)
        assert done is not None and told[-1:] == ["a"]


async def test_a_look_up_at_the_limit_keeps_the_instance_it_answers(kafka_bootstrap: str) -> None:
    """Every older instance watched, the limit reached: the one just read back is still answered
    and kept (it was let go before any watch could claim it)."""
    async with _partitions(kafka_bootstrap, 1) as kafka:
        view = kafka.view
        for iid in ("a", "b"):
            await kafka.put(iid)
        await kafka.producer.flush()
        await view.start()
        view.asked_limit = 1
        view.subscribe(lambda iid, _: None, lambda iid: iid == "a")
        assert await view.look_up("a") is not None
        assert await view.look_up("b") is not None
        assert set(view.states) == {"a", "b"}  # over the limit, but neither may go


async def test_a_first_look_up_cancelled_midway_leaves_the_view_following(kafka_bootstrap: str) -> None:
    async with _partitions(kafka_bootstrap, 2) as kafka:
        view = kafka.view
        await view.start()
        first = "x"
        other = next(f"y{n}" for n in range(100) if view.partition_of(f"y{n}") != view.partition_of(first))
        assert await view.look_up(first) is None
        cancelled = asyncio.create_task(view.look_up(other))  # a new partition: the reading task stops a moment
        await asyncio.sleep(0)  # lets it begin (not a wait for time)
        cancelled.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await cancelled
        await kafka.put(first)
        await kafka.producer.flush()
        state = await view.wait_for(first, lambda s: s is not None, timeout=30)
        assert state is not None and state.run_id == "r"


async def test_an_id_the_client_made_up_is_followed_without_a_read_back(kafka_bootstrap: str,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A start with a generated ID: nothing of it exists, and reading back a key never written reads
    the whole partition. `adopt` reads nothing back; what the engine writes of it is followed."""
    import engine.read.status as status_module

    read_back: list[bytes] = []
    real = status_module.latest_of

    async def counted(*args: object, **kwargs: object) -> bytes | None:
        read_back.append(args[3])  # type: ignore[arg-type]
        return await real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(status_module, "latest_of", counted)
    async with _partitions(kafka_bootstrap, 1) as kafka:
        view = kafka.view
        for n in range(500):
            await kafka.put(f"old-{n}")
        await kafka.producer.flush()
        await view.start()
        await view.adopt("fresh")
        assert await view.look_up("fresh") is None
        assert read_back == []
        await kafka.put("fresh", "mine")
        await kafka.producer.flush()
        state = await view.wait_for("fresh", lambda s: s is not None, timeout=30)
        assert state is not None and state.run_id == "mine"
        assert await view.look_up("old-7") is not None and read_back == [b"old-7"]  # a look-up still reads back
