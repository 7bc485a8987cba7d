"""`headrace bench scale --tiny` against the session's broker: the topics are filled through the
engine's codecs, and every figure of issue 16's table is there and consistent with what was filled.
Speed is never asserted (see test_bench_tiny.py): the targets live in the benchmark."""

from __future__ import annotations

from pathlib import Path

import pytest

from ops.bench.scale import TERMINATED_EVERY, TINY_FINISHED, TINY_RETENTION, TINY_RUNNING
from tests.bench.test_bench_tiny import bench

pytestmark = pytest.mark.kafka


@pytest.mark.timeout(300)
def test_scale_fills_through_the_codecs_and_reports_every_figure(kafka_bootstrap: str, tmp_path: Path) -> None:
    code, doc, output = bench(kafka_bootstrap, tmp_path, "scale")
    assert code == 0, output[-3000:]
    finished, running, partitions = TINY_FINISHED[0], TINY_RUNNING, doc["options"]["partitions"]
    [size] = doc["sizes"]
    assert (size["fill"]["finished"], size["fill"]["running"]) == (finished, running)
    assert size["fill"]["records"]["status"] == finished + running

    # The engine restored the running instances only: the finished ones cost it nothing.
    engine = size["engine"]
    assert engine["partitions_restored"] == partitions
    assert engine["read_at_restore"] == engine["running_restored"] == running
    # What was filled is what an engine writes: its restore found every history whole.
    assert engine["engine_errors"] == 0

    # A second engine joined: the partitions the first kept were not restored again, the others
    # moved, and every probe workflow started across the join completed.
    join = size["join"]
    assert join["kept_by_first"], join
    assert join["restored_by_first"] == [], join
    assert sorted(join["kept_by_first"] + join["moved_to_second"]) == list(range(partitions)), join
    assert join["probes"]["sent"] == join["probes"]["completed"] > 0, join
    assert join["kept_max_stop_s"] is not None and join["moved_max_stop_s"] is not None, join

    # The API's index holds what was filled (plus the probes, all completed), lists it by status,
    # and finds every instance looked up, after a restart from its checkpoint.
    api = size["api"]
    counts = api["counts"]["counts"]
    assert counts["RUNNING"] == running
    assert counts["TERMINATED"] == finished // TERMINATED_EVERY
    assert counts["COMPLETED"] == finished - finished // TERMINATED_EVERY + join["probes"]["completed"]
    assert api["listed_running"] == running
    assert api["get_by_id"]["found"] == api["get_by_id"]["requests"] > 0
    assert api["cold_start_s"] > 0 and api["warm_start_s"] > 0 and api["rss_mib"] > 0
    for name, query in api["list"].items():
        assert {"p50", "p99"} <= set(query["ms"]), name
        assert query["mean_page"] > 0, name
        assert {"p50", "p99"} <= set(api["index_page_ms"][name]), name

    client = size["client"]
    assert "error" not in client, client
    assert client["found"] == [True, True]
    assert client["constructor_s"] > 0

    # Retention purged every due instance, one tombstone each on the status topic.
    assert doc["retention"]["purged"] == TINY_RETENTION
    assert doc["retention"]["purges_per_s"] > 0

    figures = {row["figure"] for row in doc["targets"]}
    assert {"engine cold start to ready (s)", "API warm start from its checkpoint (s)",
            "DaprWorkflowClient() (s)", "purges/s (all due, one engine)"} <= figures
    assert (tmp_path / f"bench-scale-{doc['run_id']}.md").read_text().count("\n|") >= len(doc["targets"])
