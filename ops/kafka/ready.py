"""Waiting until brokers answer metadata requests, with a deadline and a liveness check.

A broker counts as ready when a metadata response lists every node we started: in KRaft a broker
appears there only after it registered with the quorum and was unfenced.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import socket
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, TypeVar

T = TypeVar("T")
_POLL_S = 0.1


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, even when called inside a running loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


async def broker_ids(
    bootstrap: str, request_timeout_ms: int = 5000, security: Mapping[str, Any] | None = None
) -> set[int]:
    """Node ids of the brokers one metadata request reports; raises if the broker cannot answer.

    `security` holds aiokafka's security arguments for a SASL_SSL listener."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=request_timeout_ms, **(security or {})
    )
    try:
        await admin.start()
        cluster = await admin.describe_cluster()
        return {int(broker["node_id"]) for broker in cluster["brokers"]}
    finally:
        await admin.close()


def wait_ready(
    bootstraps: Sequence[str],
    expected_ids: set[int],
    timeout_s: float,
    *,
    check_alive: Callable[[], None],
    security: Mapping[str, Any] | None = None,
) -> float:
    """Block until metadata lists `expected_ids`; return the seconds waited.

    `check_alive` raises when a node process died, so a crash fails fast instead of at the deadline.
    `security` holds aiokafka's security arguments when the listener is SASL_SSL.
    """
    started = time.monotonic()
    deadline = started + timeout_s
    last_error = "no answer yet"
    # aiokafka logs every refused connection at ERROR; while we poll, those are expected.
    quiet = logging.getLogger("aiokafka")
    previous_level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        while time.monotonic() < deadline:
            check_alive()
            for bootstrap in bootstraps:
                host, _, port = bootstrap.rpartition(":")
                if not port_open(host, int(port)):
                    last_error = f"{bootstrap} does not accept connections yet"
                    continue
                try:
                    seen = run_sync(
                        asyncio.wait_for(broker_ids(bootstrap, security=security), timeout=10)
                    )
                except Exception as exc:
                    last_error = f"{bootstrap}: {type(exc).__name__}: {exc}"
                    continue
                if expected_ids <= seen:
                    return time.monotonic() - started
                last_error = f"{bootstrap} reports brokers {sorted(seen)}"
            time.sleep(_POLL_S)
    finally:
        with contextlib.suppress(Exception):
            quiet.setLevel(previous_level)
    raise TimeoutError(f"brokers {sorted(expected_ids)} not ready after {timeout_s}s: {last_error}")
