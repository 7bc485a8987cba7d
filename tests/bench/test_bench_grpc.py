"""`headrace bench --via grpc --tiny`: the workflows run in a connected Dapr SDK app (dapr-ext-workflow
from PyPI, `ops.bench.grpc_app`) through `headrace grpc`, every workflow completes, and the cost table
counts the front end and the app. Speed is never asserted (see test_bench_tiny.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ops.dapr_sdk import pypi_reachable, sdk_installed
from tests.bench.test_bench_tiny import bench

pytestmark = pytest.mark.kafka


@pytest.mark.timeout(300)
def test_workflows_run_in_a_connected_sdk_app(kafka_bootstrap: str, tmp_path: Path) -> None:
    if not sdk_installed() and not pypi_reachable():
        pytest.skip("Dapr's Python SDK is not cached and pypi.org is unreachable")
    code, doc, output = bench(kafka_bootstrap, tmp_path, "chain-5", "parallel-5", "--via", "grpc", "--no-ceiling")

    assert doc["options"]["via"] == "grpc"
    assert [r["scenario"] for r in doc["scenarios"]] == ["chain-5", "parallel-5"]
    for r in doc["scenarios"]:
        name = r["scenario"]
        assert "error" not in r, f"{name}: {r.get('error')}"
        assert r["via"] == "grpc", name
        assert r["completed"] == r["started"] == r["spec"]["workflows"] + 1, name
        assert r["failed"] == r["unfinished"] == 0, name
        # The workflows ran in the app, not in a Headrace worker: no worker process at all.
        assert r["cpu"]["worker"] is None, name
        assert {"engine", "grpc", "app"} <= {k for k, v in r["cpu"].items() if v}, name
    assert code == 0, output[-3000:]
