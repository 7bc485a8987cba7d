"""Read-your-writes across API replicas: a GET right after a 202, sent to another API process,
finds the instance, even when no engine has applied the start yet."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from engine.runtime.host import RuntimeHost
from engine.settings import Settings
from engine.topics import Topics, partition_for
from tests.api.conftest import new_id, wait_status
from tests.api.support import ApiServer, two_replicas
from tests.api.workflows import runtime

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def replicas(settings: Settings, log_dir: Path) -> Iterator[tuple[ApiServer, ApiServer]]:
    # No engine yet: the API processes create the topics; the tests start engines themselves.
    # With no engine, no command can show its effect: each waits this long, then is answered 202.
    with two_replicas(settings, log_dir, {"HEADRACE_API_APPLY_WAIT_S": "0.2"}) as pair:
        yield pair


@pytest.fixture(scope="module")
def clients(replicas: tuple[ApiServer, ApiServer]) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    with replicas[0].client() as a, replicas[1].client() as b:
        yield a, b


def start_engine(settings: Settings) -> RuntimeHost:
    host = RuntimeHost(runtime.registry, settings)
    host.start(timeout=90)
    return host


def test_starts_nobody_applied_yet_are_visible_on_every_replica(clients, settings) -> None:
    a, b = clients
    ids = [new_id("ryw") for _ in range(10)]
    for iid in ids:
        assert (
            a.post(
                f"/v1.0/workflows/dapr/api_gate/start?instanceID={iid}", content=b'"in"'
            ).status_code
            == 202
        )
        # Another process, right away, with no engine running: only the commands topic has it.
        body = b.get(f"/v1.0/workflows/dapr/{iid}").json()
        assert body["runtimeStatus"] == "PENDING", body
        assert body["workflowName"] == "api_gate"
        assert body["properties"] == {"dapr.workflow.input": '"in"'}
        assert a.get(f"/v1.0/workflows/dapr/{iid}").json()["runtimeStatus"] == "PENDING"
    # The other replica refuses a second start of a pending instance, and accepts commands for it.
    assert b.post(f"/v1.0/workflows/dapr/api_gate/start?instanceID={ids[0]}").status_code == 409
    for iid in ids:
        assert b.post(f"/v1.0/workflows/dapr/{iid}/raiseEvent/go", content=b"2").status_code == 202

    host = start_engine(settings)
    try:
        for iid in ids:
            done = wait_status(b, iid, "COMPLETED", timeout=60)
            assert orjson.loads(done["properties"]["dapr.workflow.output"]) == {
                "input": "in",
                "doubled": 4,
            }
    finally:
        host.stop()


def test_restart_over_a_finished_instance_is_visible_on_the_other_replica(
    clients, settings
) -> None:
    a, b = clients
    iid = new_id("again")
    host = start_engine(settings)
    try:
        a.post(f"/v1.0/workflows/dapr/api_echo/start?instanceID={iid}", content=b'"one"')
        wait_status(b, iid, "COMPLETED", timeout=60)
    finally:
        host.stop()
    # The engine is gone: B's view shows the finished run; only the barrier knows about the new one.
    assert (
        a.post(
            f"/v1.0/workflows/dapr/api_echo/start?instanceID={iid}", content=b'"two"'
        ).status_code
        == 202
    )
    body = b.get(f"/v1.0/workflows/dapr/{iid}").json()
    assert body["runtimeStatus"] == "PENDING"
    assert body["properties"] == {"dapr.workflow.input": '"two"'}
    host = start_engine(settings)
    try:
        done = wait_status(b, iid, "COMPLETED", timeout=60)
        assert orjson.loads(done["properties"]["dapr.workflow.output"]) == {"received": "two"}
    finally:
        host.stop()


def test_get_after_start_on_the_other_replica_with_the_engine_running(clients, settings) -> None:
    a, b = clients
    host = start_engine(settings)
    timings: list[float] = []
    try:
        for i in range(30):
            first, second = (a, b) if i % 2 == 0 else (b, a)
            iid = first.post("/v1.0/workflows/dapr/api_echo/start", content=b"1").json()[
                "instanceID"
            ]
            t0 = time.perf_counter()
            response = second.get(f"/v1.0/workflows/dapr/{iid}")
            timings.append(time.perf_counter() - t0)
            assert response.status_code == 200, response.text
            assert response.json()["runtimeStatus"] in {"PENDING", "RUNNING", "COMPLETED"}
    finally:
        host.stop()
    timings.sort()
    print(
        f"\ncross-replica GET right after start: p50 {timings[len(timings) // 2] * 1000:.1f} ms, "
        f"max {timings[-1] * 1000:.1f} ms"
    )


class _OpenTransaction:
    """A transactional producer, on a loop of its own, that writes to a partition and leaves the
    transaction open: an engine that died mid-transaction, as the status topic's readers see it."""

    def __init__(self, settings: Settings) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.settings = settings
        self.producer: AIOKafkaProducer | None = None

    def run(self, coroutine: Coroutine[Any, Any, None]) -> None:
        future: Future[None] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        future.result(timeout=60)

    def open(self, topic: str, partition: int) -> None:
        async def go() -> None:
            self.producer = producer = AIOKafkaProducer(
                **self.settings.client_kwargs(), transactional_id=f"dead-{uuid.uuid4().hex}",
                transaction_timeout_ms=60_000)
            await producer.start()
            await producer.begin_transaction()
            await (await producer.send(topic, b"{}", key=b"nobody", partition=partition))

        self.run(go())

    def close(self) -> None:
        async def go() -> None:
            if self.producer is not None:
                await self.producer.abort_transaction()
                await self.producer.stop()

        try:
            self.run(go())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


def test_a_transaction_left_open_on_the_status_topic_delays_a_barrier_but_fails_nothing(
    clients, settings
) -> None:
    """The barrier waits for the status partition's high watermark (a committed transaction's
    marker may reach it after the group's offsets), but a transaction still open after half its
    budget is a dead writer's: the read settles for what has committed, rather than a 500."""
    a, b = clients
    iid = new_id("open-txn")
    assert a.post(f"/v1.0/workflows/dapr/api_gate/start?instanceID={iid}").status_code == 202
    open_txn = _OpenTransaction(settings)
    try:
        open_txn.open(Topics.for_settings(settings).status, partition_for(iid.encode(), settings.partitions))
        t0 = time.monotonic()
        response = b.get(f"/v1.0/workflows/dapr/{iid}")
        waited = time.monotonic() - t0
        assert response.status_code == 200, response.text
        assert response.json()["runtimeStatus"] == "PENDING"
        # It waited for the open transaction (the replicas' budget is 60 s: 5 s) before settling
        # for the LSO.
        assert waited >= 4.5, waited
        p = partition_for(iid.encode(), settings.partitions)
        never = next(i for i in (new_id("never") for _ in range(1000))
                     if partition_for(i.encode(), settings.partitions) == p)
        t0 = time.monotonic()
        missing = b.get(f"/v1.0/workflows/dapr/{never}")
        assert missing.status_code == 404, missing.text
        # The view still stands where the first read gave up: this one settles without the grace.
        assert time.monotonic() - t0 < 4.5
    finally:
        open_txn.close()
