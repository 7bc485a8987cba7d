"""The one way to make a consumer that reads what the engine committed.

Every reader outside a consumer group (the status follower, a restore, the REST API's history, the
tools) assigns its partitions itself: no group, no committed offsets, and `read_committed`, because
the engine writes everything inside transactions and an aborted turn must never be seen (Kafka's
transactional guarantees: https://kafka.apache.org/documentation/#semantics).
"""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer

from ..settings import FETCH_MAX_WAIT_MS, Settings

__all__ = ["committed_reader"]


def committed_reader(
    settings: Settings,
    *,
    fetch_max_wait_ms: int = FETCH_MAX_WAIT_MS,
    max_partition_fetch_bytes: int | None = None,
    fetch_max_bytes: int | None = None,
    request_timeout_ms: int | None = None,
    committed: bool = True,
) -> AIOKafkaConsumer:
    """A group-less consumer for `assign()`, not started yet.

    `committed=False` reads uncommitted records too: only for a scan that must see a command as
    soon as its producer was acknowledged (the REST API's backlog scan), never for engine output.
    The fetch wait defaults to `FETCH_MAX_WAIT_MS`: committed records become visible when their
    transaction's marker lands, which does not wake a fetch the broker is holding.
    """
    options: dict[str, Any] = {}
    if max_partition_fetch_bytes is not None:
        options["max_partition_fetch_bytes"] = max_partition_fetch_bytes
    if fetch_max_bytes is not None:
        options["fetch_max_bytes"] = fetch_max_bytes
    if request_timeout_ms is not None:
        options["request_timeout_ms"] = request_timeout_ms
    return AIOKafkaConsumer(
        **settings.client_kwargs(),
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed" if committed else "read_uncommitted",
        auto_offset_reset="earliest",
        fetch_max_wait_ms=fetch_max_wait_ms,
        **options,
    )
