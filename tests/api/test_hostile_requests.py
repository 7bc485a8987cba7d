"""Issue 11, the REST API's share: requests that must not grow the API's memory, hold its
connections, fill its logs or leak what an open route should not tell.

Most of these need no Kafka at all, so they run against `dark`: an API with a token whose broker
address answers nothing (never ready), and short read deadlines. The ones that reach Kafka use the
module's API on the real broker.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from engine.settings import Settings
from ops.process import free_port
from tests.api.conftest import new_id, wait_status
from tests.api.support import ApiServer, eventually

pytestmark = pytest.mark.kafka

TOKEN = "s3cret-token"
READ_DEADLINE_S = 1.5
#: How long a test waits for the server to close a half-sent request (the deadline plus a margin
#: for a loaded machine). Without deadlines the server never closes it.
CLOSE_WITHIN_S = 20.0


@pytest.fixture(scope="module")
def nowhere() -> str:
    return f"127.0.0.1:{free_port()}"  # nothing listens there


@pytest.fixture(scope="module")
def dark(settings: Settings, log_dir: Path, nowhere: str) -> Iterator[ApiServer]:
    server = ApiServer(
        settings,
        log_dir,
        "api-dark",
        env={
            "KAFKA_BOOTSTRAP_SERVERS": nowhere,
            "DAPR_API_TOKEN": TOKEN,
            "HEADRACE_API_HEADER_TIMEOUT_S": str(READ_DEADLINE_S),
            "HEADRACE_API_BODY_TIMEOUT_S": str(READ_DEADLINE_S),
        },
    ).start()
    try:
        eventually(
            lambda: httpx.get(f"{server.url}/v1.0/healthz", timeout=2).status_code == 204,
            60,
            what="the dark API's liveness",
        )
        yield server
    finally:
        server.stop()


def error_of(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["errorCode"] == code, body
    return str(body["message"])


# -- item 7: metrics cardinality -------------------------------------------------------------------


def _requests_counter(text: str, method: str, code: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith("headrace_api_requests_total{") and (
            f'method="{method}"' in line and f'code="{code}"' in line
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_made_up_methods_do_not_grow_metrics(dark: ApiServer) -> None:
    made_up = [f"M{i:04d}X" for i in range(300)]
    with dark.client(headers={"dapr-api-token": TOKEN}) as authed, dark.client() as anon:
        # The series every request below shares exist before the first measurement.
        assert anon.request("WARMUP", "/v1.0/workflows/dapr/x").status_code == 401
        assert authed.get("/metrics").status_code == 200
        before = authed.get("/metrics")
        assert before.status_code == 200, before.text
        for method in made_up:
            # Unauthenticated, as an attacker would: refused, but still counted.
            assert anon.request(method, "/v1.0/workflows/dapr/x").status_code == 401
        # Authenticated, on a real route and on no route at all.
        assert authed.request("BREW", "/v1.0/workflows/dapr/x/terminate").status_code == 405
        assert authed.request("BREW", f"/nothing/{new_id()}").status_code == 404
        after = authed.get("/metrics").text
    assert "M0001X" not in after
    assert "WARMUP" not in after
    assert "BREW" not in after
    assert _requests_counter(after, "other", "401") - _requests_counter(
        before.text, "other", "401"
    ) == len(made_up)
    # 300 made-up methods used to add a counter and a whole histogram each (~750 KB here); now
    # they share the "other" series: a few lines at most.
    grown = len(after) - len(before.text)
    assert grown < 16_000, f"/metrics grew by {grown} bytes ({len(before.text)} -> {len(after)})"
    print(f"\n/metrics after {len(made_up)} made-up methods: {len(before.text)} -> {len(after)} B")


# -- item 9a: read deadlines -------------------------------------------------------------------


def _until_closed(sock: socket.socket, trickle: bytes = b"") -> tuple[bytes, float]:
    """Read until the server closes the connection; with `trickle`, send it a byte at a time
    meanwhile. Fails if the server keeps the connection past CLOSE_WITHIN_S."""
    started = time.monotonic()
    received = b""
    sock.settimeout(0.2)
    while time.monotonic() - started < CLOSE_WITHIN_S:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            if trickle:
                try:
                    sock.sendall(trickle)
                except OSError:  # closed under us: the server gave up on the request
                    return received, time.monotonic() - started
            continue
        except ConnectionResetError:
            return received, time.monotonic() - started
        if not chunk:
            return received, time.monotonic() - started
        received += chunk
    raise AssertionError(f"the server held a half-sent request for {CLOSE_WITHIN_S}s")


def _connect(server: ApiServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def _assert_408(received: bytes) -> None:
    assert received.startswith(b"HTTP/1.1 408 "), received[:200]
    assert b'"errorCode":"ERR_REQUEST_TIMEOUT"' in received, received


@pytest.mark.parametrize("sent", [
    b"",
    b"POST /v1.0/workflows/dapr/api_echo/start HTTP/1.1\r\nHost: x\r\n",
    # A method llhttp refuses: the connection goes on in h11, which keeps the deadline.
    b"BREW /v1.0/healthz HTTP/1.1\r\nHost: x\r\n",
], ids=["nothing", "half-sent-headers", "half-sent-headers-on-h11"])
def test_a_half_sent_request_is_closed_within_the_deadline(dark: ApiServer, sent: bytes) -> None:
    with _connect(dark) as sock:
        sock.sendall(sent)
        received, _ = _until_closed(sock)
    _assert_408(received)


def test_trickled_headers_do_not_extend_the_deadline(dark: ApiServer) -> None:
    with _connect(dark) as sock:
        sock.sendall(b"GET /v1.0/healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        received, _ = _until_closed(sock, trickle=b"a")
    _assert_408(received)


def test_a_half_sent_body_is_closed_within_the_deadline(dark: ApiServer) -> None:
    with _connect(dark) as sock:
        sock.sendall(
            b"POST /v1.0/workflows/dapr/api_echo/start HTTP/1.1\r\nHost: x\r\n"
            b"dapr-api-token: " + TOKEN.encode() + b"\r\n"
            b"Content-Length: 1000\r\n\r\n" + b'"' + b"x" * 20
        )
        received, _ = _until_closed(sock, trickle=b"x")
    _assert_408(received)


def _exchange(sock: socket.socket) -> bytes:
    sock.sendall(b"GET /v1.0/healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    sock.settimeout(10)
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(4096)
        assert chunk, f"closed after {received!r}"
        received += chunk
    return received


def test_a_kept_alive_connection_is_not_a_half_sent_request(dark: ApiServer) -> None:
    with _connect(dark) as sock:
        assert _exchange(sock).startswith(b"HTTP/1.1 204 ")
        # Idle between two requests for longer than the read deadline (but not uvicorn's
        # keep-alive of 5 s): nothing is owed, so the connection stays.
        time.sleep(READ_DEADLINE_S + 1)
        assert _exchange(sock).startswith(b"HTTP/1.1 204 ")


# -- the protocol: llhttp, with h11 for the methods llhttp does not know (api/protocol.py) ------------


def test_bytes_between_requests_arm_the_headers_deadline(dark: ApiServer) -> None:
    # A bare line ending cancels uvicorn's keep-alive timer and begins no request: the headers
    # deadline must hold the connection to account, or a newline a minute would keep it forever.
    with _connect(dark) as sock:
        assert _exchange(sock).startswith(b"HTTP/1.1 204 ")
        sock.sendall(b"\r\n")
        received, _ = _until_closed(sock)
    _assert_408(received)


def test_a_header_block_over_the_limit_is_a_431(dark: ApiServer) -> None:
    from api.protocol import MAX_HEADER_BYTES

    with _connect(dark) as sock:
        sock.sendall(b"GET /v1.0/healthz HTTP/1.1\r\nHost: x\r\n")
        for _ in range(MAX_HEADER_BYTES // 1000 + 1):
            sock.sendall(b"X-Filler: " + b"f" * 988 + b"\r\n")
        received, _ = _until_closed(sock)
    assert received.startswith(b"HTTP/1.1 431 "), received[:200]
    # Just under the limit is served.
    with dark.client() as client:
        big = {f"x-filler-{i}": "f" * 900 for i in range(MAX_HEADER_BYTES // 1000 - 1)}
        assert client.get("/v1.0/healthz", headers=big).status_code == 204


# -- item 9c: what the open readiness route tells ----------------------------------------------------


def test_unauthenticated_readiness_shows_only_the_status(dark: ApiServer, nowhere: str) -> None:
    kafka = nowhere
    with dark.client(headers={"dapr-api-token": TOKEN}) as authed, dark.client() as anon:

        def detailed() -> str | None:
            message = error_of(authed.get("/v1.0/healthz/ready"), 503, "ERR_HEALTH_NOT_READY")
            return message if kafka in message else None

        # An operator with the token is told where Kafka is and why it fails ...
        eventually(detailed, 60, what="readiness naming the broker for the token holder")
        for path in ("/v1.0/healthz/ready", "/v1.0/healthz/outbound"):
            response = anon.get(path)
            # ... anyone else only that the API is not ready.
            assert response.status_code == 503
            assert response.json() == {"errorCode": "ERR_HEALTH_NOT_READY", "message": "not ready"}
            assert kafka not in response.text
            wrong = anon.get(path, headers={"dapr-api-token": "guess"})
            assert wrong.json() == {"errorCode": "ERR_HEALTH_NOT_READY", "message": "not ready"}
        assert anon.get("/v1.0/healthz").status_code == 204


# -- item 9b: a client that disconnects mid-body -------------------------------------------------------


def test_a_client_disconnecting_mid_body_logs_one_quiet_line(api: ApiServer) -> None:
    offset = api.log_path.stat().st_size
    iid = new_id("gone")
    with socket.create_connection(("127.0.0.1", api.port), timeout=10) as sock:
        sock.sendall(
            f"POST /v1.0/workflows/dapr/api_echo/start?instanceID={iid} HTTP/1.1\r\n".encode()
            + b"Host: x\r\nContent-Length: 100000\r\n\r\n"
            + b'"'
            + b"x" * 1000
        )
    disconnected = re.compile(r"INFO .*disconnected before sending the whole request body")

    def logged() -> list[str]:
        with api.log_path.open("rb") as log:
            log.seek(offset)
            text = log.read().decode(errors="replace")
        return [line for line in text.splitlines() if disconnected.search(line)]

    lines = eventually(logged, 30, what="the disconnect's log line")
    with api.log_path.open("rb") as log:
        log.seek(offset)
        text = log.read().decode(errors="replace")
    assert len(lines) == 1, lines
    assert "Traceback" not in text, text
    assert not [line for line in text.splitlines() if " ERROR " in line], text
    with api.client() as client:
        assert client.get(f"/v1.0/workflows/dapr/{iid}").status_code == 404  # nothing started


# -- item 9d: a repeated instanceID takes the first value, as daprd does ------------------------------


def test_a_repeated_instance_id_takes_the_first_value(http: httpx.Client) -> None:
    first, second = new_id("first"), new_id("second")
    response = http.post(
        "/v1.0/workflows/dapr/api_echo/start",
        params=[("instanceID", first), ("instanceID", second)],
        content=b"1",
    )
    assert response.status_code == 202, response.text
    assert response.json() == {"instanceID": first}
    wait_status(http, first, "COMPLETED")
    assert http.get(f"/v1.0/workflows/dapr/{second}").status_code == 404
    # Only the first is validated, as daprd validates only what it takes.
    good = new_id("good")
    response = http.post(
        "/v1.0/workflows/dapr/api_echo/start",
        params=[("instanceID", good), ("instanceID", "bad$id")],
    )
    assert response.json() == {"instanceID": good}


# -- item 9e: IDs that no instance can have never reach Kafka -------------------------------------------

INSTANCE_ROUTES = [
    ("GET", ""),
    ("GET", "/history"),
    ("POST", "/terminate"),
    ("POST", "/raiseEvent/go"),
    ("POST", "/pause"),
    ("POST", "/resume"),
    ("POST", "/purge"),
]


def _commands_produced(http: httpx.Client) -> float:
    total = 0.0
    for line in http.get("/metrics").text.splitlines():
        if line.startswith("headrace_api_commands_produced_total"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_a_start_with_nul_in_the_instance_id_is_a_400(http: httpx.Client) -> None:
    for raw in ("a%00b", "%00", "tab%09bed", "new%0Aline"):
        response = http.post(f"/v1.0/workflows/dapr/api_echo/start?instanceID={raw}")
        error_of(response, 400, "ERR_INSTANCE_ID_INVALID")


@pytest.mark.parametrize("raw", ["a%01b", "nul%00", "bell%07", "del%7F", "line%0Abreak", "sp%20ace"])
def test_operations_on_an_id_with_control_characters_are_400s(
    http: httpx.Client, raw: str
) -> None:
    produced = _commands_produced(http)
    for method, suffix in INSTANCE_ROUTES:
        response = http.request(method, f"/v1.0/workflows/dapr/{raw}{suffix}", content=b"1")
        message = error_of(response, 400, "ERR_INSTANCE_ID_INVALID")
        assert "\x00" not in message and "\x01" not in message  # shown escaped
    assert _commands_produced(http) == produced


def test_operations_on_an_id_over_the_engine_limit_are_400s(http: httpx.Client) -> None:
    long_id = "a" * 1025
    for method, suffix in INSTANCE_ROUTES:
        response = http.request(method, f"/v1.0/workflows/dapr/{long_id}{suffix}")
        error_of(response, 400, "ERR_INSTANCE_ID_TOO_LONG")


def test_child_style_ids_are_still_accepted_for_existing_instances(http: httpx.Client) -> None:
    # durabletask names children `parent:0001`: not valid for a new instance, valid for the engine.
    iid = f"{new_id('parent')}:0001"
    for method, suffix in INSTANCE_ROUTES:
        response = http.request(method, f"/v1.0/workflows/dapr/{iid}{suffix}")
        error_of(response, 404, "ERR_INSTANCE_ID_NOT_FOUND")


# -- many concurrent uploads: what bounds the memory request bodies can hold -------------------------


@pytest.fixture(scope="module")
def crowded(settings: Settings, log_dir: Path, nowhere: str) -> Iterator[ApiServer]:
    server = ApiServer(
        settings,
        log_dir,
        "api-crowded",
        env={"KAFKA_BOOTSTRAP_SERVERS": nowhere, "HEADRACE_API_MAX_IN_FLIGHT": "3"},
    ).start()
    try:
        eventually(
            lambda: httpx.get(f"{server.url}/v1.0/healthz", timeout=2).status_code == 204,
            60,
            what="the crowded API's liveness",
        )
        yield server
    finally:
        server.stop()


def test_requests_beyond_the_in_flight_limit_are_503s(crowded: ApiServer) -> None:
    held = [_connect(crowded) for _ in range(3)]
    try:
        for sock in held:
            # Headers in, body owed: the request sits in the app, holding what it read so far.
            sock.sendall(
                b"POST /v1.0/workflows/dapr/api_echo/start HTTP/1.1\r\nHost: x\r\n"
                b"Content-Length: 100000\r\n\r\n" + b'"' + b"x" * 1000
            )
        with crowded.client() as client:
            busy = eventually(
                lambda: (r := client.get("/openapi.json")).status_code == 503 and r,
                30,
                what="a 503 while three requests are in flight",
            )
            assert busy.json()["errorCode"] == "ERR_API_BUSY"
            assert int(busy.headers["retry-after"]) >= 1
            assert client.get("/v1.0/healthz").status_code == 204  # alive, and says so
            assert client.get("/metrics").status_code == 200
    finally:
        for sock in held:
            sock.close()
    with crowded.client() as client:
        eventually(
            lambda: client.get("/openapi.json").status_code == 200,
            30,
            what="requests answered again once the held ones are gone",
        )
