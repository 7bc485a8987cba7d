"""How an engine or worker process runs: on uvloop when it is installed, with the cyclic garbage
collector tuned for a process that allocates many short-lived objects per turn, and aiokafka's
protocol messages encoded by code written for each (`runtime.kafka_protocol`).

Both together, measured with `headrace bench chain-5 --duration 20 --warmup 5` (issue 17), three
runs each, alternated, on an idle 2-core machine: engine CPU per workflow 1.59-1.61 -> 1.43-1.44 ms,
worker 0.52-0.55 -> 0.41-0.43 ms, throughput 437-453 -> 491-500 wf/s; the engine's peak RSS
150-156 -> 160-165 MiB.

- **uvloop** (https://github.com/MagicStack/uvloop, libuv under asyncio's API; uvicorn picks it
  for the REST API the same way): the event loop's own work (callbacks, futures, socket I/O) in C.
  Without it (Windows, or not installed) the standard loop runs.
- **The collector**: the objects alive at start (modules, classes, the registry) are moved out of
  its reach (`gc.freeze`, https://docs.python.org/3/library/gc.html#gc.freeze), and a young
  collection runs every `_YOUNG` allocations instead of 700. A turn allocates thousands of
  objects (events, states, records, futures) that die young; with the default threshold the
  collector ran every few turns and every tenth run walked the older generation too, where the
  live instances' states and histories are. Garbage in cycles is still collected, only in larger
  batches: memory stays bounded (`headrace bench` reports peak RSS per process).
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from typing import Any, TypeVar

from . import kafka_protocol

__all__ = ["run"]

T = TypeVar("T")

#: Allocations between two young collections (Python's default is 700); the older generations keep
#: their default ratios (every 10 young ones, every 10 of those).
_YOUNG = 10_000


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run `main` to completion as the process's event loop (`asyncio.run`'s contract)."""
    kafka_protocol.install()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(_YOUNG, middle, old)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)
