"""`--hops`: where a chain's time goes, hop by hop, from the records' own timestamps.

Every record carries its producer's creation time (Kafka's CreateTime, in milliseconds): the
start (the load generator, at its send), each work item (the engine's turn, before its commit),
each result (the worker, at its send) and each status record (the engine's turn). Read back once a
scenario is over, an instance's records in time order split its time into:

- `start_to_first_item`: the engine's fetch of the start and its first turn;
- `item_to_result`: the engine's commit and its markers, the worker's fetch, the activity;
- `result_to_next_item`: the engine's fetch of the result, the wait for the round under way, the
  turn (at moderate load, most of a step's time: docs/performance.md, "A step's time");
- `last_result_to_last_status`: the same for the last result, up to the final state.

What follows the last status record (its commit, and the load generator reading it) is the
end-to-end latency's remainder. Only chains have these hops: their work items come one at a time,
so an instance's n-th result answers its n-th work item; in a fan-out it need not. One machine's
clock stamps every record, so the differences are not skewed, but they are whole milliseconds.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from engine.read.to_end import reading
from engine.settings import Settings
from engine.topics import Topics

from .stats import percentiles

__all__ = ["HOPS", "hop_rows", "hops_of", "read_hops"]

HOPS = ("start_to_first_item", "item_to_result", "result_to_next_item", "last_result_to_last_status")

#: Instance ID -> its records' timestamps (ms) on one topic, in any order.
Stamps = Mapping[str, Sequence[int]]


def hops_of(starts: Stamps, items: Stamps, results: Stamps, states: Stamps) -> dict[str, list[int]]:
    """Every instance's hops (milliseconds), by hop. An instance whose records do not make a whole
    chain (as many results as work items, at least one, a start and a state) is left out: one
    still running when the scenario ended, or a start that never completed."""
    out: dict[str, list[int]] = {hop: [] for hop in HOPS}
    for iid, began in starts.items():
        sent, answered, shown = sorted(items.get(iid, ())), sorted(results.get(iid, ())), states.get(iid, ())
        if not sent or len(sent) != len(answered) or not shown:
            continue
        out["start_to_first_item"].append(sent[0] - min(began))
        out["item_to_result"].extend(r - s for s, r in zip(sent, answered, strict=True))
        out["result_to_next_item"].extend(s - r for r, s in zip(answered, sent[1:], strict=False))
        out["last_result_to_last_status"].append(max(shown) - answered[-1])
    return out


async def _stamps(settings: Settings, topic: str) -> dict[str, list[int]]:
    found: dict[str, list[int]] = defaultdict(list)
    async with reading(settings, topic) as batches:
        async for records in batches:
            for record in records:
                if record.key is not None:
                    found[record.key.decode("utf-8", "replace")].append(record.timestamp)
    return found


async def read_hops(settings: Settings) -> dict[str, dict[str, float]]:
    """Each hop's percentiles (ms) over the chains on `settings`' topics (see the module docstring)."""
    topics = Topics.for_settings(settings)
    reads = [await _stamps(settings, t) for t in (topics.commands, topics.tasks, topics.results, topics.status)]
    return {hop: _rounded(percentiles(values)) for hop, values in hops_of(*reads).items()}


def _rounded(found: Mapping[str, float]) -> dict[str, float]:
    return {k: round(v, 2) for k, v in found.items()}


def hop_rows(results: Iterable[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """The report's table: each chain scenario's hops, p50 / p99 in milliseconds."""
    head = ["scenario", *HOPS]
    body = [
        [r["scenario"], *(_cell(r["hops_ms"].get(hop) or {}) for hop in HOPS)]
        for r in results if r.get("hops_ms")
    ]
    return head, body


def _cell(found: Mapping[str, float]) -> str:
    if not found:
        return "-"
    return f"{found['p50']:g} / {found['p99']:g}"
