"""REST: an event raised to an instance that has not started (here: its workflow is known to no
engine, so its start waits for code) is held for the start within a bound; one over it gets a 413
at once, not a 202 after the whole apply wait, and the events held before it are kept."""

from __future__ import annotations

import time

import httpx

from tests.api.conftest import new_id, wait_status

API = "/v1.0/workflows/dapr"


def test_an_early_event_over_the_bound_is_refused_at_once_and_loses_nothing(http: httpx.Client) -> None:
    iid = new_id("early")
    started = http.post(f"{API}/no_engine_knows_this/start", params={"instanceID": iid}, content=b"1")
    assert started.status_code == 202, started.text
    wait_status(http, iid, "PENDING")
    big = b'"' + b"x" * 200_000 + b'"'  # five fit in the engine's bound of 1 MiB
    for n in range(5):
        answer = http.post(f"{API}/{iid}/raiseEvent/e{n}", content=big)
        assert answer.status_code == 202, answer.text
    began = time.monotonic()
    refused = http.post(f"{API}/{iid}/raiseEvent/e5", content=big)
    assert refused.status_code == 413, refused.text
    assert "events held for the start" in refused.json()["message"]
    assert time.monotonic() - began < 3  # not the apply wait: answered from the state seen
    assert http.post(f"{API}/{iid}/raiseEvent/small", content=b"1").status_code == 202
    assert wait_status(http, iid, "PENDING")["runtimeStatus"] == "PENDING"
    assert http.post(f"{API}/{iid}/terminate").status_code == 202
    wait_status(http, iid, "TERMINATED")
    history = http.get(f"{API}/{iid}/history")
    assert history.status_code == 200, history.text
    for name in ("e0", "e4", "small"):  # held for the start, then in the run's history
        assert f'"{name}"' in history.text
    assert '"e5"' not in history.text
