"""`headrace bench --hops`: a chain's hops from its records' timestamps (`ops.bench.hops`)."""

from __future__ import annotations

from ops.bench.hops import HOPS, hop_rows, hops_of


def test_a_chain_s_records_split_into_its_hops() -> None:
    # b: two steps. Times in ms, as Kafka stamps records; the lists need not be in order.
    starts = {"b": [100], "half": [100], "nothing": [100]}
    items = {"b": [110, 103], "half": [101, 105]}
    results = {"b": [115, 109], "half": [104]}  # "half" was cut off by the end of the scenario
    states = {"b": [104, 117, 112], "half": [102]}
    hops = hops_of(starts, items, results, states)
    assert hops == {
        "start_to_first_item": [3],
        "item_to_result": [6, 5],
        "result_to_next_item": [1],
        "last_result_to_last_status": [2],
    }


def test_only_scenarios_with_hops_get_a_row() -> None:
    found = {hop: {"p50": 2.0, "p99": 9.5} for hop in HOPS}
    head, body = hop_rows([{"scenario": "chain-1", "hops_ms": found}, {"scenario": "parallel-5", "hops_ms": None}])
    assert head == ["scenario", *HOPS]
    assert body == [["chain-1", "2 / 9.5", "2 / 9.5", "2 / 9.5", "2 / 9.5"]]
