"""The REST API's HTTP/1.1 protocol (api/protocol.py): llhttp with h11 for what llhttp refuses,
read deadlines and a header limit, and pipelined requests answered in order.

A small app on a real uvicorn server in a thread, spoken to with raw sockets: the byte sequences
come from a review of the protocol (each failed before its fix).
"""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from api.protocol import MAX_HEADER_BYTES, guarded_protocols

#: The read deadlines: long enough that a loaded machine's client still sends in time where a
#: test expects no deadline to pass.
DEADLINE_S = 2.0
#: How long a test waits for an answer or a close (far beyond the deadline, for a loaded machine).
WAIT_S = 20.0

calls: list[str] = []


async def slow(request: Request) -> Response:
    await asyncio.sleep(float(request.query_params.get("t", "1")))
    return PlainTextResponse("slow")


async def echo(request: Request) -> Response:
    calls.append("echo")
    try:
        body = await request.body()
    except ClientDisconnect:
        calls.append("echo: client gone")
        return Response(status_code=499)  # never sent: the client is gone
    return PlainTextResponse(body)


async def only_get(request: Request) -> Response:
    return PlainTextResponse("x")


app = Starlette(routes=[
    Route("/slow", slow), Route("/echo", echo, methods=["POST"]), Route("/x", only_get, methods=["GET"]),
])


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    protocol, _ = guarded_protocols(DEADLINE_S, DEADLINE_S)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, http=protocol, lifespan="off", log_level="error",
                            h11_max_incomplete_event_size=MAX_HEADER_BYTES, loop="asyncio")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT_S
    while not server.started:
        assert time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.01)
    yield server.servers[0].sockets[0].getsockname()[1]
    server.should_exit = True
    thread.join(WAIT_S)


@pytest.fixture
def sock(port: int) -> Iterator[socket.socket]:
    calls.clear()
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        yield s


def answers(s: socket.socket, count: int) -> list[tuple[int, bytes]]:
    """`count` whole answers (status, body), in the order they came."""
    got: list[tuple[int, bytes]] = []
    buffer = b""
    s.settimeout(WAIT_S)
    while len(got) < count:
        head_end = buffer.find(b"\r\n\r\n")
        if head_end >= 0:
            head = buffer[:head_end]
            length_found = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
            length = int(length_found.group(1)) if length_found else 0
            if len(buffer) >= head_end + 4 + length:
                got.append((int(head.split(b" ", 2)[1]), buffer[head_end + 4:head_end + 4 + length]))
                buffer = buffer[head_end + 4 + length:]
                continue
        chunk = s.recv(65536)
        assert chunk, f"closed after {got} and {buffer!r}"
        buffer += chunk
    return got


def closed(s: socket.socket) -> bool:
    """Whether the server closes the connection (nothing more arrives) within WAIT_S."""
    s.settimeout(WAIT_S)
    try:
        return s.recv(65536) == b""
    except ConnectionResetError:
        return True


def until_closed(s: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (within WAIT_S)."""
    s.settimeout(WAIT_S)
    received = b""
    while chunk := s.recv(65536):
        received += chunk
    return received


GET_X = b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n"


def test_a_method_llhttp_does_not_know_is_routed(sock: socket.socket) -> None:
    sock.sendall(b"BREW /x HTTP/1.1\r\nHost: t\r\n\r\n")
    assert answers(sock, 1)[0][0] == 405


@pytest.mark.parametrize("method", [b"BREW", b"DESCRIBE", b"PLAY"])
def test_after_a_known_one_split_inside_the_token(sock: socket.socket, method: bytes) -> None:
    # DESCRIBE and PLAY are methods llhttp knows for RTSP only: a plain parse error, not an
    # unknown method, and routed all the same.
    sock.sendall(GET_X)
    assert answers(sock, 1)[0][0] == 200
    sock.sendall(method[:2])
    sock.sendall(method[2:] + b" /x HTTP/1.1\r\nHost: t\r\n\r\n")
    assert answers(sock, 1)[0][0] == 405
    sock.sendall(GET_X)
    assert answers(sock, 1) == [(200, b"x")]


def test_a_made_up_method_pipelined_behind_another_is_a_400_after_its_answer(sock: socket.socket) -> None:
    sock.sendall(b"GET /slow?t=0.3 HTTP/1.1\r\nHost: t\r\n\r\nBREW /x HTTP/1.1\r\nHost: t\r\n\r\n")
    assert answers(sock, 2) == [(200, b"slow"), (400, b"Invalid HTTP request received.")]
    assert closed(sock)


def test_an_upgrade_keeps_its_body(sock: socket.socket) -> None:
    # What `curl --http2 -d ...` sends to an http:// URL.
    sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
                 b"HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\nContent-Length: 10\r\n\r\nhello-body")
    assert answers(sock, 1) == [(200, b"hello-body")]


def test_http_1_1_without_host_is_a_400(sock: socket.socket) -> None:
    sock.sendall(b"GET /x HTTP/1.1\r\n\r\n")
    assert answers(sock, 1)[0][0] == 400


def test_a_transfer_coding_llhttp_refuses_is_a_400_and_runs_nothing(sock: socket.socket) -> None:
    sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n")
    assert answers(sock, 1)[0][0] == 400
    assert closed(sock)
    assert calls == []


def test_a_bad_chunk_later_is_a_400_and_the_handler_sees_the_client_gone(sock: socket.socket) -> None:
    sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{\r\n")
    deadline = time.monotonic() + WAIT_S
    while "echo" not in calls:  # the handler runs, waiting for the rest of the body
        assert time.monotonic() < deadline
        time.sleep(0.01)
    sock.sendall(b"ZZ\r\n")
    assert answers(sock, 1)[0][0] == 400
    assert closed(sock)
    deadline = time.monotonic() + WAIT_S
    while "echo: client gone" not in calls:
        assert time.monotonic() < deadline, calls
        time.sleep(0.01)


def test_a_pipelined_request_owes_nothing_while_the_one_before_is_handled(sock: socket.socket) -> None:
    # The slow answer takes longer than the deadline (and is not cut off by it); the next
    # request's headers and body come in pieces meanwhile. With h11 (and now) its deadlines
    # start once the first is answered.
    sock.sendall(b"GET /slow?t=%g HTTP/1.1\r\nHost: t\r\n\r\nPOST /echo HTTP/1.1\r\nHost: t\r\n" % (DEADLINE_S * 2))
    time.sleep(DEADLINE_S * 1.2)  # the client's own pace, past the deadline: the point of the test
    sock.sendall(b"Content-Length: 5\r\n\r\n")
    assert answers(sock, 1) == [(200, b"slow")]
    sock.sendall(b"hello")
    assert answers(sock, 1) == [(200, b"hello")]


def test_a_header_block_over_the_limit_is_a_431_after_the_answer_before_it(sock: socket.socket) -> None:
    sock.sendall(b"GET /slow?t=0.5 HTTP/1.1\r\nHost: t\r\n\r\nGET /x HTTP/1.1\r\nHost: t\r\n")
    for _ in range(MAX_HEADER_BYTES // 1000 + 2):
        sock.sendall(b"X-Filler: " + b"f" * 988 + b"\r\n")
    assert [status for status, _ in answers(sock, 2)] == [200, 431]
    assert closed(sock)


def test_a_large_body_in_the_headers_read_is_served(sock: socket.socket) -> None:
    body = b"b" * (4 * MAX_HEADER_BYTES)
    sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    assert answers(sock, 1) == [(200, body)]


def test_a_pipelined_request_with_a_bad_body_is_refused_after_the_answer_before_it(sock: socket.socket) -> None:
    sock.sendall(b"GET /slow?t=0.5 HTTP/1.1\r\nHost: t\r\n\r\n"
                 b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{\r\nZZ\r\n")
    assert [status for status, _ in answers(sock, 2)] == [200, 400]
    assert closed(sock)
    assert calls == []  # its handler never ran


class _Transport(asyncio.Transport):
    """What the protocol writes, and whether it closed: reads are handed to it one by one."""

    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closing = False

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)

    def close(self) -> None:
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def _fed_by_hand() -> tuple[asyncio.Protocol, _Transport]:
    """The protocol on a transport of its own, for tests that choose how bytes split into reads
    (over a socket the split is the kernel's, and such a test would be too)."""
    protocol_class, _ = guarded_protocols(WAIT_S, WAIT_S)
    config = uvicorn.Config(app, lifespan="off", log_level="error")
    protocol = protocol_class(config=config, server_state=uvicorn.server.ServerState(), app_state={})
    transport = _Transport()
    protocol.connection_made(transport)
    return protocol, transport


def _reads_until_closed(protocol: asyncio.Protocol, transport: _Transport, most: int) -> int:
    """Hands the protocol 1,000-byte reads until it closes the connection (at most `most`)."""
    reads = 0
    while not transport.closing:
        assert reads < most, "the line grew past the bound"
        protocol.data_received(b"a" * 1000)
        reads += 1
    return reads


#: 1,000-byte reads that take a count past MAX_HEADER_BYTES.
_PAST_THE_BOUND = -(-(MAX_HEADER_BYTES + 1) // 1000)


async def test_a_trailer_line_that_never_ends_is_a_400() -> None:
    # httptools buffers a trailer field until its line ends: the bytes read without body after
    # the last chunk are bounded as a header block is.
    protocol, transport = _fed_by_hand()
    protocol.data_received(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                           b"2\r\nhi\r\n0\r\nX-T: " + b"a" * 30_000)
    # The first read brought body ("hi"): the bound counts the reads after it.
    assert _reads_until_closed(protocol, transport, _PAST_THE_BOUND) == _PAST_THE_BOUND
    assert transport.written.startswith(b"HTTP/1.1 400 "), transport.written[:200]
    protocol.connection_lost(None)


async def test_a_header_line_that_never_ends_is_a_431() -> None:
    # llhttp reports a header line once it ends; until then the bytes read bound it.
    protocol, transport = _fed_by_hand()
    opening = b"GET /x HTTP/1.1\r\nHost: t\r\nX-Long: "
    protocol.data_received(opening)
    assert _reads_until_closed(protocol, transport, _PAST_THE_BOUND) == -(
        -(MAX_HEADER_BYTES + 1 - len(opening)) // 1000)
    assert transport.written.startswith(b"HTTP/1.1 431 "), transport.written[:200]
    protocol.connection_lost(None)


def test_requests_pipelined_past_the_bound_end_the_connection_once_the_rest_are_answered(
        sock: socket.socket) -> None:
    from api.protocol import MAX_PIPELINED

    sock.sendall(GET_X * (MAX_PIPELINED + 8))
    received = until_closed(sock)
    assert received.count(b"HTTP/1.1 ") == MAX_PIPELINED, received[-300:]
    assert received.count(b"HTTP/1.1 200 ") == MAX_PIPELINED


def test_a_repeated_host_is_a_400(sock: socket.socket) -> None:
    sock.sendall(b"GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
    assert answers(sock, 1)[0][0] == 400
