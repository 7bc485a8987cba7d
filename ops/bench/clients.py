"""Kafka clients side by side on the engine's hot path (issue 17): aiokafka against librdkafka.

A partition owner's transaction writes about four records, one to each of four topics, and commits;
an engine process runs one such producer per partition it owns, concurrently. This times exactly
that, with aiokafka (as the engine runs it: uvloop, linger 0, the 2 ms retry of a transaction that
follows the previous one's markers) and with confluent-kafka (librdkafka, whose producer runs in C
threads, tuned alike: linger 0, Nagle off, 2 ms retry back-off), then reads one topic back with a
read_committed consumer of each. CPU is the process's, all its threads: librdkafka's included.

    python -m ops.bench.clients --bootstrap-servers 127.0.0.1:9092 --producers 8 --transactions 1000

confluent-kafka is not a dependency of Headrace: install it beside (`pip install confluent-kafka`)
to run its side; without it only aiokafka's is measured. Findings: docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from engine.runtime.eventloop import run as run_loop
from engine.runtime.partition import retry_concurrent_transactions_sooner

from .stats import percentiles

__all__ = ["ClientFigures", "main", "measure"]

#: About the size of an engine record (a status or a history chunk of a short workflow).
VALUE = b"v" * 300
#: What a turn's transaction writes to: status, history, history-store, tasks.
TOPICS_PER_TRANSACTION = 4
PARTITIONS = 8
#: Untimed transactions of each producer first: new topics' leaders settle, connections open.
WARMUP_TRANSACTIONS = 20


#: A side's figures: each transaction's seconds, CPU seconds of the timed transactions, CPU seconds
#: per record read back.
Measured = tuple[list[float], float, float]


@dataclass(frozen=True, slots=True)
class ClientFigures:
    client: str
    producers: int
    transactions: int
    #: Wall time of one transaction (begin, four sends, commit), milliseconds.
    p50_ms: float
    p99_ms: float
    #: Process CPU per transaction while producing, milliseconds.
    cpu_ms_per_transaction: float
    #: Process CPU per record while a read_committed consumer reads one topic back, microseconds.
    cpu_us_per_record_read: float

    def line(self) -> str:
        return (f"{self.client:10} {self.producers} producers x {self.transactions // self.producers} transactions: "
                f"p50 {self.p50_ms:.2f} ms, p99 {self.p99_ms:.2f} ms, CPU {self.cpu_ms_per_transaction:.3f} ms "
                f"per transaction; reading back {self.cpu_us_per_record_read:.1f} us CPU per record")


async def _create_topics(bootstrap: str, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, PARTITIONS, 1) for name in names])
    finally:
        await admin.close()


async def _aiokafka(bootstrap: str, topics: list[str], producers: int, per_producer: int) -> Measured:
    retry_concurrent_transactions_sooner()
    prefix = topics[0]
    latencies: list[float] = []

    # Every producer warms up, then all start timing together (the CPU clock starts there).
    warm = asyncio.Barrier(producers + 1)

    async def one(number: int) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"{prefix}-a{number}",
                                    enable_idempotence=True, linger_ms=0, retry_backoff_ms=5)
        try:
            await producer.start()
            try:
                for n in range(-WARMUP_TRANSACTIONS, per_producer):
                    if n == 0:
                        await warm.wait()
                    began = time.perf_counter()
                    async with producer.transaction():
                        for topic in topics:
                            await producer.send(topic, VALUE, key=f"{number}-{n}".encode(),
                                                partition=number % PARTITIONS)
                    if n >= 0:
                        latencies.append(time.perf_counter() - began)
            finally:
                await producer.stop()
        except BaseException:
            await warm.abort()  # the others (and the timer) stop waiting for this one
            raise

    running = asyncio.gather(*(one(number) for number in range(producers)))
    try:
        await warm.wait()
    except asyncio.BrokenBarrierError:
        await running  # raises the producer's error
        raise
    cpu = time.process_time()
    await running
    produce_cpu = time.process_time() - cpu
    consumer = AIOKafkaConsumer(topics[0], bootstrap_servers=bootstrap, group_id=f"{prefix}-a",
                                isolation_level="read_committed", auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    try:
        read, cpu, deadline = 0, time.process_time(), time.monotonic() + 120
        while read < producers * per_producer and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=1000, max_records=2000)).values():
                for record in records:
                    read += 1
                    _ = (record.key, record.value, record.headers, record.timestamp)
        read_cpu = (time.process_time() - cpu) / max(read, 1)
    finally:
        await consumer.stop()
    return latencies, produce_cpu, read_cpu


def _confluent(bootstrap: str, topics: list[str], producers: int, per_producer: int) -> Measured:
    import confluent_kafka  # type: ignore[import-not-found,unused-ignore]

    prefix = topics[0]
    latencies: list[float] = []
    lock = threading.Lock()
    failures: list[BaseException] = []
    warm = threading.Barrier(producers + 1)

    def one(number: int) -> None:
        try:
            producer = confluent_kafka.Producer({
                "bootstrap.servers": bootstrap, "transactional.id": f"{prefix}-c{number}", "enable.idempotence": True,
                "linger.ms": 0, "socket.nagle.disable": True, "retry.backoff.ms": 2,
            })
            producer.init_transactions()
            for n in range(-WARMUP_TRANSACTIONS, per_producer):
                if n == 0:
                    warm.wait(timeout=300)
                began = time.perf_counter()
                producer.begin_transaction()
                for topic in topics:
                    producer.produce(topic, VALUE, key=f"{number}-{n}".encode(), partition=number % PARTITIONS)
                producer.commit_transaction()
                if n >= 0:
                    with lock:
                        latencies.append(time.perf_counter() - began)
        except BaseException as exc:  # reported by the caller: a thread's exception is otherwise lost
            failures.append(exc)
            warm.abort()

    threads = [threading.Thread(target=one, args=(number,)) for number in range(producers)]
    for thread in threads:
        thread.start()
    warm.wait(timeout=300)
    cpu = time.process_time()
    for thread in threads:
        thread.join()
    produce_cpu = time.process_time() - cpu
    if failures:
        raise failures[0]
    consumer = confluent_kafka.Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"{prefix}-c", "isolation.level": "read_committed",
        "auto.offset.reset": "earliest", "enable.auto.commit": False,
    })
    consumer.subscribe([topics[0]])
    try:
        read, cpu, deadline = 0, time.process_time(), time.monotonic() + 120
        while read < producers * per_producer and time.monotonic() < deadline:
            for message in consumer.consume(500, 1.0):
                if message.error() is None:
                    read += 1
                    _ = (message.key(), message.value(), message.headers(), message.timestamp())
        read_cpu = (time.process_time() - cpu) / max(read, 1)
    finally:
        consumer.close()
    return latencies, produce_cpu, read_cpu


def measure(client: str, bootstrap: str, producers: int, transactions: int) -> ClientFigures:
    """One client's figures, on topics of its own (so neither reads the other's records)."""
    prefix = f"clients-{client}-{uuid.uuid4().hex[:8]}"
    topics = [f"{prefix}-t{n}" for n in range(TOPICS_PER_TRANSACTION)]
    per_producer = max(1, transactions // producers)

    async def side() -> Measured:
        await _create_topics(bootstrap, topics)
        if client == "aiokafka":
            return await _aiokafka(bootstrap, topics, producers, per_producer)
        return await asyncio.to_thread(_confluent, bootstrap, topics, producers, per_producer)

    latencies, produce_cpu, read_cpu = run_loop(side())
    pct = percentiles([s * 1000 for s in latencies])
    return ClientFigures(client, producers, len(latencies), pct["p50"], pct["p99"],
                         produce_cpu * 1000 / len(latencies), read_cpu * 1e6)


def main(argv: list[str] | None = None, out: Callable[[str], Any] = print) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.bench.clients", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap-servers", default="127.0.0.1:9092")
    parser.add_argument("--producers", type=int, default=8, help="transactional producers at once (8)")
    parser.add_argument("--transactions", type=int, default=8000, help="transactions in all (8,000)")
    parser.add_argument("--rounds", type=int, default=2, help="alternated rounds of each client (2)")
    args = parser.parse_args(argv)
    logging.getLogger("aiokafka").setLevel(logging.ERROR)  # a new topic's first sends retry, loudly
    clients = ["aiokafka"]
    if importlib.util.find_spec("confluent_kafka") is not None:
        clients.append("confluent")
    else:
        out("confluent-kafka is not installed: measuring aiokafka only (pip install confluent-kafka)")
    for _ in range(args.rounds):
        for client in clients:
            out(measure(client, args.bootstrap_servers, args.producers, args.transactions).line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
