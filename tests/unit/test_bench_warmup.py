"""The bench warms a fresh broker up before it measures (`--broker-warmup`)."""

from __future__ import annotations

import argparse

import pytest

from ops.bench.scenarios import broker_warmup
from ops.bench.session import DEFAULT_BROKER_WARMUP_S, warmup_seconds


def _args(**given: object) -> argparse.Namespace:
    values: dict[str, object] = {"broker_warmup": None, "tiny": False, "bootstrap_servers": None}
    values.update(given)
    return argparse.Namespace(**values)


def test_a_private_broker_at_full_size_is_warmed_up() -> None:
    assert warmup_seconds(_args()) == DEFAULT_BROKER_WARMUP_S > 0


@pytest.mark.parametrize("given", [{"tiny": True}, {"bootstrap_servers": "127.0.0.1:9092"}])
def test_tiny_runs_and_given_brokers_are_not(given: dict[str, object]) -> None:
    assert warmup_seconds(_args(**given)) == 0.0


def test_the_option_wins_and_is_never_negative() -> None:
    assert warmup_seconds(_args(broker_warmup=12.5, tiny=True)) == 12.5
    assert warmup_seconds(_args(broker_warmup=-3)) == 0.0


def test_the_warm_up_load_is_a_closed_chain_with_no_warm_up_of_its_own() -> None:
    scenario = broker_warmup(20)
    assert (scenario.shape, scenario.workflow, scenario.activities) == ("closed", "bench_chain", 5)
    assert (scenario.concurrency, scenario.duration_s, scenario.warmup_s) == (100, 20, 0.0)
