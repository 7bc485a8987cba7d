"""`python -m ops.bench.clients` (the aiokafka / librdkafka side-by-side of docs/performance.md)
against the session's broker, at tiny size: every transaction of every producer is timed, and what
they wrote is read back. Speed is never asserted (see test_bench_tiny.py)."""

from __future__ import annotations

import importlib.util

import pytest

from ops.bench.clients import main, measure

pytestmark = pytest.mark.kafka


@pytest.mark.timeout(300)
def test_the_aiokafka_side_times_every_transaction_and_reads_everything_back(kafka_bootstrap: str) -> None:
    figures = measure("aiokafka", kafka_bootstrap, producers=2, transactions=30)
    assert (figures.producers, figures.transactions) == (2, 30)
    assert 0 < figures.p50_ms <= figures.p99_ms
    assert figures.cpu_ms_per_transaction > 0
    assert figures.cpu_us_per_record_read > 0


@pytest.mark.timeout(300)
def test_the_command_prints_a_line_per_client_and_round(kafka_bootstrap: str) -> None:
    lines: list[str] = []
    code = main(["--bootstrap-servers", kafka_bootstrap, "--producers", "1", "--transactions", "10",
                 "--rounds", "2"], out=lines.append)
    assert code == 0
    clients = ["aiokafka"] + (["confluent"] if importlib.util.find_spec("confluent_kafka") else [])
    measured = [line.split()[0] for line in lines if "per transaction" in line]
    assert measured == clients * 2, lines
