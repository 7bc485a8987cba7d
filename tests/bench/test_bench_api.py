"""`headrace bench --via api`: the starts go through the REST API, POSTed by the compiled load
generator (`ops/bench/loadgen`, Go's standard library only) built on demand; without Go the bench
says so and falls back to the Python client. Speed is never asserted (see test_bench_tiny.py)."""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from ops.bench import httpload
from ops.bench.httpload import build, parse_reply
from tests.bench.test_bench_tiny import bench

HAVE_GO = shutil.which("go") is not None


class _Recorder(BaseHTTPRequestHandler):
    """Answers every start 202, or 409 for an ID starting with "dup", and keeps what came."""

    protocol_version = "HTTP/1.1"  # keep-alive, as the API answers
    seen: ClassVar[list[tuple[str, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"] or 0))
        self.seen.append((self.path, body))
        status, answer = (409, b'{"errorCode":"ERR_INSTANCE_EXISTS"}') if "=dup" in self.path else (202, b"{}")
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[str]:
    _Recorder.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_without_go_the_build_says_why_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(httpload, "_built", {})
    notes: list[str] = []
    assert build(notes.append) is None
    assert build(notes.append) is None  # the next scenario of the run: no second note
    assert len(notes) == 1
    assert "`go` is not on PATH" in notes[0] and "Python HTTP client" in notes[0]


@pytest.mark.timeout(300)
def test_the_go_load_generator_posts_starts_and_reports_each(recorder: str, tmp_path: Path) -> None:
    notes: list[str] = []
    binary = build(notes.append)
    if not HAVE_GO:  # CI has Go; a machine without it gets the fallback (as tested above)
        assert binary is None and "`go` is not on PATH" in notes[0]
        return
    assert binary is not None, notes
    built_at = binary.stat().st_mtime_ns
    httpload._built.clear()  # as a new bench process: the binary on disk is used, not rebuilt
    assert build(notes.append) == binary
    assert binary.stat().st_mtime_ns == built_at
    body = tmp_path / "body"
    body.write_text('{"steps":5}')
    done = subprocess.run(
        [str(binary), "-urls", recorder, "-workflow", "bench_chain", "-body", str(body), "-connections", "4"],
        input="a1\na2 [1.5]\ndup1\nstop\nnever\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    replies = {r.instance_id: r for r in map(parse_reply, done.stdout.encode().splitlines())}
    # "stop" ends the starts: what follows it is never sent.
    assert sorted(replies) == ["a1", "a2", "dup1"]
    assert replies["a1"].status == replies["a2"].status == 202
    assert replies["a1"].error == ""
    assert replies["dup1"].status == 409 and "ERR_INSTANCE_EXISTS" in replies["dup1"].error
    assert all(0 < r.sent <= r.done for r in replies.values())
    seen = dict(_Recorder.seen)
    assert seen["/v1.0/workflows/dapr/bench_chain/start?instanceID=a1"] == b'{"steps":5}'
    assert seen["/v1.0/workflows/dapr/bench_chain/start?instanceID=a2"] == b"[1.5]"


@pytest.mark.kafka
@pytest.mark.timeout(300)
def test_chain_through_the_api_completes_and_counts_the_load_generator(kafka_bootstrap: str, tmp_path: Path) -> None:
    code, doc, output = bench(kafka_bootstrap, tmp_path, "chain-5", "--via", "api", "--no-ceiling")

    assert doc["options"]["via"] == "api"
    (r,) = doc["scenarios"]
    assert "error" not in r, r.get("error")
    assert r["via"] == "api"
    assert r["completed"] == r["started"] == r["spec"]["workflows"] + 1
    assert r["failed"] == r["unfinished"] == 0
    assert r["send_errors"] == []
    assert {"p50", "p99"} <= set(r["api_start_latency_ms"])
    assert r["cpu"]["api"] and r["cpu"]["loadgen"]
    # The API's starts are produce requests it sent (read off its own /metrics).
    assert r["kafka_requests"]["api"]["by_request"]["Produce"] > 0, r["kafka_requests"]
    if HAVE_GO:
        # The loadgen column is the Go process; this harness (following completions) is apart.
        assert r["loadgen"] == "go"
        assert r["cpu"]["harness"]
    else:
        assert r["loadgen"] == "python"
        assert "`go` is not on PATH" in output
    assert code == 0, output[-3000:]
