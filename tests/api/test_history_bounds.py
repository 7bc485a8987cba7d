"""Issue 11 item 8: a burst of history reads must not grow the API process without bound.

Each read scans the instance's history partition; the partition here holds ~20 MB written by
other instances, so a read that buffers generously (one consumer with an 8 MiB fetch buffer per
request, no cap, as before) multiplies that by the number of concurrent requests. Now at most
`HEADRACE_API_HISTORY_CONCURRENCY` reads run at once; the rest wait up to
`HEADRACE_API_HISTORY_WAIT_S` and are then answered 503 `ERR_API_BUSY` with `Retry-After`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner

from engine.runtime.host import RuntimeHost
from engine.settings import Settings
from tests.api.conftest import new_id, wait_status
from tests.api.support import ApiServer

pytestmark = pytest.mark.kafka

CONCURRENCY = 2
BURST = 100
FILLERS = 16
FILLER_BYTES = 600_000
#: Growth of the API's peak RSS during the burst. Before the bound, 100 reads took it up by
#: well over a gigabyte; bounded, it is the slots' buffers plus the requests' bookkeeping.
RSS_GROWTH_LIMIT_MB = 250


@pytest.fixture(scope="module")
def bounded(host: RuntimeHost, settings: Settings, log_dir: Path) -> Iterator[ApiServer]:
    server = ApiServer(
        settings,
        log_dir,
        "api-bounded",
        env={
            "HEADRACE_API_HISTORY_CONCURRENCY": str(CONCURRENCY),
            # Short, so that most of the burst is answered with the limit's code.
            "HEADRACE_API_HISTORY_WAIT_S": "2",
        },
    ).start()
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def memory_kb(pid: int) -> dict[str, int]:
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0])
    assert set(found) == {"VmRSS", "VmHWM"}, found
    return found


def same_partition_ids(target: str, partitions: int, count: int) -> list[str]:
    every = list(range(partitions))
    pick = DefaultPartitioner()
    wanted = pick(target.encode(), every, every)
    found: list[str] = []
    while len(found) < count:
        candidate = new_id("filler")
        if pick(candidate.encode(), every, every) == wanted:
            found.append(candidate)
    return found


async def burst(url: str, path: str, count: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        return list(await asyncio.gather(*(client.get(path) for _ in range(count))))


def test_concurrent_history_reads_are_bounded(bounded: ApiServer, settings: Settings) -> None:
    pid = bounded.child.pid
    with bounded.client() as http:
        target = new_id("hist")
        assert (
            http.post(
                f"/v1.0/workflows/dapr/api_echo/start?instanceID={target}", content=b'"small"'
            ).status_code
            == 202
        )
        wait_status(http, target, "COMPLETED", timeout=60)
        filler = orjson.dumps("f" * FILLER_BYTES)
        fillers = same_partition_ids(target, settings.partitions, FILLERS)
        for iid in fillers:
            response = http.post(
                f"/v1.0/workflows/dapr/api_echo/start?instanceID={iid}", content=filler
            )
            assert response.status_code == 202, response.text
        for iid in fillers:
            wait_status(http, iid, "COMPLETED", timeout=120)
        path = f"/v1.0/workflows/dapr/{target}/history"
        warm = http.get(path)
        assert warm.status_code == 200, warm.text
        expected = warm.json()
        assert expected["events"], expected  # started, completed: something to compare

    before = memory_kb(pid)
    responses = asyncio.run(burst(bounded.url, path, BURST))
    after = memory_kb(pid)

    answered = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 503]
    assert len(answered) + len(refused) == BURST, sorted({r.status_code for r in responses})
    for response in answered:
        assert response.json() == expected
    for response in refused:
        assert response.json()["errorCode"] == "ERR_API_BUSY", response.text
        assert int(response.headers["retry-after"]) >= 1
    assert len(answered) >= CONCURRENCY
    assert refused, "the limit never answered: the burst did not exceed it"

    growth_mb = (after["VmHWM"] - before["VmRSS"]) / 1024
    print(
        f"\n{BURST} concurrent history reads: {len(answered)} answered, {len(refused)} refused; "
        f"RSS {before['VmRSS'] / 1024:.0f} MB -> peak {after['VmHWM'] / 1024:.0f} MB "
        f"(+{growth_mb:.0f} MB), now {after['VmRSS'] / 1024:.0f} MB"
    )
    assert growth_mb < RSS_GROWTH_LIMIT_MB

    # The refused ones get theirs by retrying as told.
    with bounded.client() as http:
        retried = http.get(path)
        assert retried.status_code == 200, retried.text
        assert retried.json() == expected
