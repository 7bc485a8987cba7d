"""`headrace bench --tiny` against the session's broker: every scenario runs and every workflow
completes, and the JSON, PNG and Markdown files are written. Speed is never asserted here: CI
machines are noisy, and this test only keeps the harness working.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from engine.settings import Settings
from ops.bench.hops import HOPS
from ops.bench.scenarios import SCENARIO_NAMES

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[2]


def bench(bootstrap: str, out: Path, *scenarios: str, stall_s: float = 30) -> tuple[int, dict[str, Any], str]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ops",
            "bench",
            "--tiny",
            "--no-progress",
            "--bootstrap-servers",
            bootstrap,
            "--out",
            str(out),
            "--stall-timeout",
            str(stall_s),
            "--hops",
            *scenarios,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    files = sorted(out.glob("bench-*.json"))
    assert files, f"no JSON written; exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.returncode, json.loads(files[-1].read_text()), done.stdout + done.stderr


@pytest.mark.timeout(300)
def test_every_scenario_completes_at_tiny_size_and_writes_its_files(kafka_bootstrap: str, tmp_path: Path) -> None:
    code, doc, output = bench(kafka_bootstrap, tmp_path, *SCENARIO_NAMES)

    assert [r["scenario"] for r in doc["scenarios"]] == list(SCENARIO_NAMES)
    for r in doc["scenarios"]:
        assert "error" not in r, f"{r['scenario']}: {r.get('error')}"
        assert r["stalled"] is None, f"{r['scenario']}: {r['stalled']}"
        name = r["scenario"]
        assert r["unfinished"] == 0, name
        assert r["failed"] == 0, name
        # Every start completed: the measured ones plus the probe that runs before them.
        assert r["completed"] == r["started"] == r["spec"]["workflows"] + 1, name
        # Every figure the issue asks for is there (values are whatever this machine gives).
        assert {"p50", "p90", "p99", "max"} <= set(r["latency_ms"]), name
        assert r["workflows_per_s"] > 0, name
        assert r["records"]["per_workflow"] > 0, name
        assert {"engine", "worker", "loadgen"} <= {k for k, v in r["cpu"].items() if v}, name
        # Every process's Kafka requests, scraped from its /metrics (the bench's own counted here):
        # the engine commits transactions and fetches, the worker fetches work and produces results.
        requests = r["kafka_requests"]
        assert {"engine", "worker", "loadgen"} <= set(requests), (name, requests)
        assert {"EndTxn", "Fetch", "Produce"} <= set(requests["engine"]["by_request"]), (name, requests)
        results = {"Fetch", "Produce"} if r["spec"]["activities"] else {"Fetch"}  # timers: no activity
        assert results <= set(requests["worker"]["by_request"]), (name, requests)
        # --hops: a chain's records read back, every measured workflow's hops there (none negative:
        # each record's time stamps what came after the one before it).
        if r["spec"]["workflow"] == "bench_chain":
            hops = r["hops_ms"]
            assert hops["start_to_first_item"]["count"] >= r["spec"]["workflows"], (name, hops)
            assert hops["item_to_result"]["count"] >= r["spec"]["workflows"] * r["spec"]["activities"], (name, hops)
            assert set(hops) == set(HOPS), (name, hops)
            # A chain of one activity has no "result to next work item"; the rest have every hop.
            filled = [hop for hop in HOPS if hops[hop]]
            assert len(filled) == (3 if r["spec"]["activities"] == 1 else 4), (name, hops)
            assert min(hops[hop]["p50"] for hop in filled) >= 0, (name, hops)
        else:
            assert r["hops_ms"] is None, name
    timers = next(r for r in doc["scenarios"] if r["scenario"] == "timers")
    assert {"p50", "p99"} <= set(timers["timer_lateness_ms"])
    assert doc["ceiling"]["records_per_s"] > 0
    for figure in ("transaction_ms", "transaction_with_offsets_ms"):
        assert doc["ceiling"][figure]["count"] == 20 and doc["ceiling"][figure]["p50"] > 0, figure
    assert len(doc["targets"]) == 5
    assert code == 0, output[-3000:]

    # The run's topics were there (every scenario wrote records to them) and are gone: a given
    # broker does not keep every run's topics.
    prefix = f"bench.{doc['run_id']}."
    deleted = re.search(r"deleted the run's (\d+) topics", output)
    assert deleted is not None and int(deleted.group(1)) >= len(SCENARIO_NAMES), output[-3000:]
    assert asyncio.run(_left_with(kafka_bootstrap, prefix)) == []

    stem = tmp_path / f"bench-{doc['run_id']}"
    assert stem.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = stem.with_suffix(".md").read_text()
    assert "## Targets" in report and "## Kafka requests per completed workflow" in report


async def _left_with(bootstrap: str, prefix: str, deadline_s: float = 30) -> list[str]:
    """The topics named `prefix...` once none is left, or those still there at the deadline (a
    broker's metadata may list a deleted topic for a moment after the deletion returned)."""
    admin = AIOKafkaAdminClient(**Settings.from_env(bootstrap_servers=bootstrap).client_kwargs())
    await admin.start()
    try:
        deadline = time.monotonic() + deadline_s
        while True:
            left = [t for t in await admin.list_topics() if t.startswith(prefix)]
            if not left or time.monotonic() > deadline:
                return left
            await asyncio.sleep(0.2)  # polling the broker's metadata: there is no event to await
    finally:
        await admin.close()
