"""`headrace bench --native --tiny`: the engine, worker and API run from a compiled copy of the
checkout (`ops.native`), say so in their logs, and every workflow completes. Speed is never
asserted (see test_bench_tiny.py); the figures are in docs/performance.md, "The compiled build"."""

from __future__ import annotations

from pathlib import Path

import pytest

from ops.native import listed_modules
from tests.bench.test_bench_tiny import bench

pytestmark = pytest.mark.kafka


@pytest.mark.timeout(300)
def test_the_processes_run_the_native_build(kafka_bootstrap: str, tmp_path: Path) -> None:
    code, doc, output = bench(kafka_bootstrap, tmp_path, "chain-5", "--native", "--no-ceiling")

    assert doc["options"]["native"] is True
    (result,) = doc["scenarios"]
    assert "error" not in result, result.get("error")
    assert result["completed"] == result["started"] == result["spec"]["workflows"] + 1
    assert result["failed"] == result["unfinished"] == 0
    (copy,) = tmp_path.glob("native-*")
    for name in listed_modules():
        path = copy / name.replace(".", "/")
        assert list(path.parent.glob(f"{path.name}.*.so")), f"{name} was not compiled in {copy}"
    (log,) = tmp_path.glob("logs-*/chain-5/engine-0.log")
    assert "native build" in log.read_text()
    assert code == 0, output[-3000:]
