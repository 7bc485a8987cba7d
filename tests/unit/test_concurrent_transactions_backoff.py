"""Partition owners ask again sooner when the previous transaction is still being completed."""

from __future__ import annotations

from types import SimpleNamespace

import aiokafka.producer.sender as aiokafka_sender
from aiokafka.errors import ConcurrentTransactions

from engine.runtime.partition import CONCURRENT_TRANSACTIONS_BACKOFF_S, retry_concurrent_transactions_sooner


def _first_add_partitions_answered_concurrent() -> float | None:
    """What aiokafka waits when a transaction's first AddPartitionsToTxn is refused as concurrent."""
    sender = SimpleNamespace(_retry_backoff=0.1, _txn_manager=SimpleNamespace(txn_partitions=set()))
    handler = aiokafka_sender.AddPartitionsToTxnHandler(sender, [])
    response = SimpleNamespace(errors=[("t", [(0, ConcurrentTransactions.errno)])])
    wait: float | None = handler.handle_response(response)
    return wait


def test_the_wait_before_asking_again_is_shortened() -> None:
    original = aiokafka_sender.BACKOFF_OVERRIDE  # an owner started in this process may have set it
    try:
        aiokafka_sender.BACKOFF_OVERRIDE = 0.02  # aiokafka's own
        assert _first_add_partitions_answered_concurrent() == 0.02
        retry_concurrent_transactions_sooner()
        assert _first_add_partitions_answered_concurrent() == CONCURRENT_TRANSACTIONS_BACKOFF_S < 0.02
    finally:
        aiokafka_sender.BACKOFF_OVERRIDE = original
