"""HTTP/1.1 connections for the REST API: parsed by llhttp (httptools) for speed, with read
deadlines and a bounded header block, and any method token answered as daprd answers it.

**Why httptools, and the h11 fallback.** uvicorn's httptools protocol parses in C (llhttp): it
costs the API 10-14 % less CPU per start than uvicorn's pure-Python h11 protocol (`headrace bench
chain-5 --via api`, docs/performance.md). But llhttp knows only its own list of methods and fails
any other token, so uvicorn would answer `BREW /v1.0/...` with a 400 before the app sees it, where
daprd (Go's net/http) hands every token method to its router: 401 without a token, else 405 on a
known path, 404 on an unknown one (RFC 9110 section 9.1: a method is any token). So whatever
llhttp refuses while it reads a request's headers (a method, or anything else it finds malformed),
and what it reads in a way uvicorn would mishandle (an `Upgrade` or `CONNECT` request, whose body
uvicorn drops: `curl --http2 -d ...` sends `Upgrade: h2c`; HTTP/1.1 without `Host`, which h11 and
Go refuse), moves its connection, from that request on, to the h11 protocol, which answers as it
did before llhttp (`_hand_over`). That needs the request's bytes from its first one, which are
known when it begins a read with every earlier request answered (a new connection, or a
keep-alive one whose client waited for its answer, as clients do); otherwise it is a 400.

**Read deadlines.** uvicorn's only timeout is keep-alive (idle between two requests), and it is
cancelled by the first byte of the next request; a fresh connection has none. So a client that
connects and sends nothing, or half its headers, or headers and then a body one byte a minute,
would hold a connection, a task and its buffers for good. Both protocols have two deadlines:

- **headers**: from the connection opening (or the first byte after a keep-alive pause) until the
  request's headers are complete: `header_timeout_s`;
- **body**: from the headers until the body is complete: `body_timeout_s`.

Each deadline is armed once per request and not extended by further bytes, so trickling does not
help. When one passes, the connection is answered `408 ERR_REQUEST_TIMEOUT` if nothing was answered
yet, and closed; a handler still reading the body sees the client gone (logged as one info line).
A request pipelined behind others owes nothing until the answers before it are written (as with
h11, which reads no further until then). A connection handed over to h11 starts its headers
deadline afresh: a request's headers can take at most twice `header_timeout_s`.

**Write deadline.** A client that asks for a large answer (or pipelines many) and reads none of
it fills the transport's buffer: uvicorn's flow control pauses the handler's next send until the
buffer drains, and a connection closing with bytes unsent waits for them, so without a bound the
connection, the handler and the answer's bytes are held for good. While bytes wait for the client
and nothing else can move them (writing paused, or the connection closing), none of them going
out for `write_timeout_s` aborts the connection: its buffer is dropped and a pending send ends as
for a client gone. As with nginx's `send_timeout`, the deadline is on a stall, not on the whole
answer: a slow reader on a bad link gets an answer of any size, as long as its reads keep it moving
(and one that reads a few bytes at each deadline keeps its connection; its buffer is bounded by
the answer). The buffer is looked at every quarter of the deadline, so a stall is ended between one
and one and a quarter deadlines after it began, never before one.

**Stopping.** On SIGTERM uvicorn closes idle connections and lets the others finish their request;
a connection still open `shutdown_grace_s` later is dropped as for a write deadline (a handler
waiting on its client then ends), and uvicorn cancels the handlers still running
`SHUTDOWN_MARGIN_S` later (`uvicorn_options`): whatever its clients do, a stopping process is
left with closing its Kafka clients by then.

**Header block size.** At most `MAX_HEADER_BYTES` of request target and header lines: larger is a
`431 Request Header Fields Too Large` on the httptools path (llhttp has no limit of its own; 431 is
what Go's net/http answers). On a connection handed over, h11's own limit: a 400 for a header
block still incomplete past it (one read may bring a larger whole one, as before llhttp). A
header line that never ends is bounded by the bytes read since the request began (the request
line's method, version and line ends allowed beside the bound, so a split never matters). A chunked
body's trailer fields have a bound of their own, the same size (a 400): by the fields llhttp
reports, and by the reads within the body that bring none of it (a trailer line that never ends).

**Keep-alive.** An idle connection is uvicorn's keep-alive timer's to close, not a request's
deadline: when an answer goes out before its request's body is read (a 401, 404 or 405) and the
body comes after it, the read that ends the request arms the timer again (uvicorn arms it only
when an answer completes, and cancels it on every read).

**Pipelining.** Answers go out in request order. At most `MAX_PIPELINED` requests are read ahead
of their answers: the connection closes once those are answered, the rest unread (a pipelining
client must be ready to send them again on a new connection, RFC 9112 section 9.3.2). A request
refused while answers to the ones before it are pending (unparsable, or too large) is answered
after them, then the connection closes; a request whose headers completed in the same read as
its refusal never reaches a handler; a handler already reading a body that turns out unparsable
sees the client gone.

**Inherited from llhttp** (and uvicorn's httptools protocol): a few malformed request lines h11
refuses are served (an `RTSP/1.0` version, a doubled space), and an HTTP/1.0 client is sent
`100 Continue` when it asks for it.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Iterable
from http import HTTPStatus
from typing import Any, Protocol

import h11
import httptools
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .errors import RequestTimeout, error_response
from .settings import ApiSettings

__all__ = ["MAX_HEADER_BYTES", "guarded_protocols", "uvicorn_options"]

log = logging.getLogger(__name__)

#: Largest request line plus headers (h11's default, stated here so it is a decision, not luck).
MAX_HEADER_BYTES = 16 * 1024

#: How long a stopping server lets handlers end after their connections were dropped, before
#: uvicorn cancels them (it looks at its connections and handlers every 0.1 s).
SHUTDOWN_MARGIN_S = 1.0

#: Requests a connection may have read and not yet answered. h11 reads one at a time; llhttp
#: parses every request of a read (256 KiB with uvloop) into a queued request each, and every
#: answer lets another read in: without a bound a pipelining client grows the queue for good.
MAX_PIPELINED = 32


class Owed(enum.Enum):
    """The part of a request its client still owes the server."""

    HEADERS = "headers"
    BODY = "body"


def _closing_answer(status: int, headers: Iterable[tuple[bytes, bytes]], body: bytes) -> bytes:
    """A whole answer as raw HTTP that ends the connection: for where no request cycle can send
    it (headers unfinished, or the request refused before it got one)."""
    lines = [b"HTTP/1.1 %d %s" % (status, HTTPStatus(status).phrase.encode())]
    lines += [name + b": " + value for name, value in headers]
    lines.append(b"connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def _text_answer(status: int, text: str, headers: Iterable[tuple[bytes, bytes]] = ()) -> bytes:
    body = text.encode()
    return _closing_answer(status, [*headers, (b"content-type", b"text/plain; charset=utf-8"),
                                    (b"content-length", b"%d" % len(body))], body)


def _timeout_answer(message: str) -> bytes:
    response = error_response(RequestTimeout(message))
    return _closing_answer(408, response.raw_headers, bytes(response.body))


_UNPARSABLE = "Invalid HTTP request received."  # uvicorn's words for it (and its 400's body)
_HEADERS_TOO_LARGE = _text_answer(431, "Request header fields too large")

#: The bytes of a request line that `MAX_HEADER_BYTES` leaves out (the method, two spaces, the
#: version and the line's end): the bytes read of an unfinished header block are allowed them too,
#: or a block under the bound split across reads was a 431 where read whole it was not.
_REQUEST_LINE_EXTRA = 64


class _StopParsing(Exception):
    """Raised in an llhttp callback to end the parse of a read: `data_received` then answers the
    request (a 431 when its header block is too large, a close when too many are pipelined, else
    the hand-over to h11)."""


class _Cycle(Protocol):
    """What a deadline needs of either protocol's request cycle."""

    response_started: bool
    disconnected: bool
    message_event: asyncio.Event


class _Connection(Protocol):
    """What a deadline needs of either protocol."""

    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    client: tuple[str, int] | None
    _writes: _WriteDeadline

    @property
    def cycle(self) -> _Cycle | None: ...


class _ReadDeadline:
    """A connection's one read deadline at a time (module docstring), for either protocol."""

    def __init__(self, connection: _Connection, header_timeout_s: float, body_timeout_s: float) -> None:
        self._connection = connection
        self._transport = connection.transport
        self._limits = {Owed.HEADERS: header_timeout_s, Owed.BODY: body_timeout_s}
        self._handle: asyncio.TimerHandle | None = None
        self._owed: Owed | None = None

    def watch(self, owed: Owed | None) -> None:
        if self._transport.is_closing():
            owed = None
        if owed is self._owed:
            return  # still the same deadline: more bytes do not extend it
        self.disarm()
        self._owed = owed
        if owed is not None:
            self._handle = self._connection.loop.call_later(self._limits[owed], self._expired, owed)

    def disarm(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._owed = None

    def _expired(self, owed: Owed) -> None:
        self._handle = None
        self._owed = None
        if self._transport.is_closing():
            return
        peer = self._connection.client
        client = f"{peer[0]}:{peer[1]}" if peer else "a client"
        message = f"the request {owed.value} did not arrive within {self._limits[owed]:g}s"
        log.info("closing the connection from %s: %s", client, message)
        cycle = self._connection.cycle if owed is Owed.BODY else None
        if cycle is None or not cycle.response_started:
            if cycle is not None:
                # The handler's sends are dropped from now on, and its body read ends.
                cycle.disconnected = True
                cycle.message_event.set()
            self._transport.write(_timeout_answer(message))
        self._transport.close()
        self._connection._writes.watch()  # the 408 may wait behind answers its client does not read


class _WriteDeadline:
    """A connection's write deadline, and its end when a stopping server's grace is over (module
    docstring), for either protocol. It belongs to the transport, not to a protocol: a connection
    handed over to h11 keeps it, and a stall or a grace goes on."""

    #: Looks at the buffer this many times per deadline.
    CHECKS = 4

    def __init__(self, connection: _Connection, timeout_s: float, shutdown_grace_s: float) -> None:
        self._loop = connection.loop
        self._transport = connection.transport
        self._client = connection.client
        self._timeout_s = timeout_s
        self._shutdown_grace_s = shutdown_grace_s
        self._handle: asyncio.TimerHandle | None = None
        self._grace: asyncio.TimerHandle | None = None
        self._paused = False
        #: The bytes waiting for the client when they last went down, or None when nothing waits
        #: on the client alone (the handler may write more: their count may grow, and no one waits).
        self._unsent: int | None = None
        #: Checks since `_unsent` went down.
        self._stalled = 0

    def paused(self) -> None:
        self._paused = True
        self.watch()

    def resumed(self) -> None:
        self._paused = False
        self._unsent = None  # the client read what was waiting: a later stall starts from nothing

    def watch(self) -> None:
        """Look at the buffer while it holds bytes: after a pause, and after anything that may
        close the connection with bytes unsent (no callback tells when a closing one is stuck)."""
        if self._handle is None and self._transport.get_write_buffer_size():
            self._handle = self._loop.call_later(self._timeout_s / self.CHECKS, self._check)

    def stopping(self) -> None:
        """The server stops: the connection ends by the grace's end, whatever its client does."""
        if self._grace is None:
            self._grace = self._loop.call_later(self._shutdown_grace_s, self._abort, "still open {:g}s after the "
                                                "server began to stop", self._shutdown_grace_s)

    def disarm(self) -> None:
        for handle in (self._handle, self._grace):
            if handle is not None:
                handle.cancel()
        self._handle = self._grace = None

    def _abort(self, why: str, *args: object) -> None:
        client = f"{self._client[0]}:{self._client[1]}" if self._client else "a client"
        log.info("closing the connection from %s: %s", client, why.format(*args))
        # close() would wait for the unsent bytes; abort() drops them, and uvicorn's
        # connection_lost then ends a handler's pending send or body read.
        self._transport.abort()

    def _check(self) -> None:
        self._handle = None
        unsent = self._transport.get_write_buffer_size()
        if not unsent:
            return  # all of it is the kernel's
        if not (self._paused or self._transport.is_closing()):
            self._unsent = None
        elif self._unsent is None or unsent < self._unsent:
            self._unsent, self._stalled = unsent, 0
        else:
            self._stalled += 1
            if self._stalled >= self.CHECKS:
                self._abort("{} bytes of its answers found no room for {:g}s", unsent, self._timeout_s)
                return
        self._handle = self._loop.call_later(self._timeout_s / self.CHECKS, self._check)


def _keep_alive(protocol: HttpToolsProtocol | H11Protocol) -> None:
    """Arm uvicorn's keep-alive timer on an idle connection, as it does when an answer completes."""
    protocol.timeout_keep_alive_task = protocol.loop.call_later(
        protocol.timeout_keep_alive, protocol.timeout_keep_alive_handler)


class _Guarded(asyncio.Protocol):
    """What both guarded protocols do alike with their deadlines, ahead of uvicorn's protocol in
    their bases (`guarded_protocols`): flow control and a stopping server feed the write deadline,
    and a lost connection disarms both."""

    _deadline: _ReadDeadline
    _writes: _WriteDeadline

    def pause_writing(self) -> None:
        super().pause_writing()
        self._writes.paused()

    def resume_writing(self) -> None:
        super().resume_writing()
        self._writes.resumed()

    def shutdown(self) -> None:
        super().shutdown()  # type: ignore[misc]  # uvicorn's protocol, next in the bases
        self._writes.stopping()

    def connection_lost(self, exc: Exception | None) -> None:
        self._deadline.disarm()
        self._writes.disarm()
        super().connection_lost(exc)


def guarded_protocols(
    header_timeout_s: float, body_timeout_s: float, write_timeout_s: float, shutdown_grace_s: float
) -> tuple[type[HttpToolsProtocol], type[H11Protocol]]:
    """uvicorn's httptools protocol and its h11 fallback, with the module docstring's guards."""

    class GuardedH11Protocol(_Guarded, H11Protocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._writes = _WriteDeadline(self, write_timeout_s, shutdown_grace_s)
            self._deadline = _ReadDeadline(self, header_timeout_s, body_timeout_s)
            self._deadline.watch(self._owed())

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            conn = self.conn
            if (conn.their_state is h11.IDLE and conn.our_state is h11.IDLE and not conn.trailing_data[0]
                    and self.timeout_keep_alive_task is None and not self.transport.is_closing()):
                # The read ended a request whose answer had gone out (a 401, 404 or 405 answered
                # before its body came): idle now, which is uvicorn's keep-alive to end.
                _keep_alive(self)
            self._deadline.watch(self._owed())

        def send_400_response(self, msg: str) -> None:
            super().send_400_response(msg)
            self._writes.watch()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._deadline.watch(self._owed())
            self._writes.watch()

        def _owed(self) -> Owed | None:
            state = self.conn.their_state
            if state is h11.SEND_BODY:
                return Owed.BODY
            if state is h11.IDLE and (
                # A new connection, or bytes of the next request arrived (uvicorn then cancels
                # its keep-alive timer); an idle keep-alive connection is uvicorn's to close.
                self.timeout_keep_alive_task is None or self.conn.trailing_data[0]
            ):
                return Owed.HEADERS
            return None  # the request is in: the handler's time is not the client's

    class GuardedHttpToolsProtocol(_Guarded, HttpToolsProtocol):
        #: Requests llhttp began and completed on this connection.
        _begun = 0
        _completed = 0
        #: Request cycles made (a handler each, or one dropped) and answers completed.
        _cycles = 0
        _answered = 0
        #: What the client owes of the request being read (from llhttp's callbacks).
        _owed_in_request = Owed.HEADERS
        #: The bytes read of the open request while its headers are incomplete: from its first
        #: byte if it began a read (`_replayable`: what `_hand_over` replays), else from the read
        #: after the one it began in. Their length bounds a header line that never ends.
        _head: bytearray
        _replayable = False
        #: The open request's header block as llhttp reported it (request target, whole lines),
        #: and its trailer fields.
        _header_bytes = 0
        _trailer_bytes = 0
        #: Handlers of the requests whose headers completed in the read being parsed: started
        #: once all of it parsed, so that a request refused in the same read never runs.
        _starting: list[tuple[Any, Any]] | None = None
        #: A refusal waiting for the answers to the requests before it; nothing more is read.
        _refusal: bytes | None = None
        #: More than MAX_PIPELINED requests came unanswered: the connection ends after those.
        _overrun = False
        #: Whether the read being parsed brought body bytes, and the bytes read without any.
        _body_seen = False
        _bodyless_bytes = 0

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._head = bytearray()
            self._writes = _WriteDeadline(self, write_timeout_s, shutdown_grace_s)
            self._deadline = _ReadDeadline(self, header_timeout_s, body_timeout_s)
            self._deadline.watch(self._owed())

        def data_received(self, data: bytes) -> None:
            self._unset_keepalive_if_required()
            if self._refusal is not None:
                return  # the connection ends once the answers before the refusal are written
            idle = self._completed == self._begun  # this read begins a request
            if idle:
                self._head, self._replayable = bytearray(), True
            if idle or self._owed_in_request is Owed.HEADERS:
                self._head += data
            head, replayable = self._head, self._replayable
            begun, completed, answered = self._begun, self._completed, self._answered_all()
            in_body = not idle and self._owed_in_request is Owed.BODY  # this read continues a body
            self._starting = []
            self._body_seen = False
            try:
                self.parser.feed_data(data)
            except (httptools.HttpParserError, httptools.HttpParserUpgrade):
                starting, self._starting = self._starting, None
                self._head, self._replayable = bytearray(), False
                if self._header_bytes > MAX_HEADER_BYTES:
                    self._refuse_request(_HEADERS_TOO_LARGE, starting)
                    return
                if self._overrun:
                    log.info("closing a connection with more than %d requests pipelined once they are answered",
                             MAX_PIPELINED)
                    self._refuse_request(b"", starting)
                    return
                # The refused request is the last one begun; `head` holds it from its first byte
                # when no request completed in this read before it.
                if (replayable and self._completed == completed and answered
                        and self._owed_in_request is Owed.HEADERS):
                    self._hand_over(bytes(head))
                else:
                    self.logger.warning(_UNPARSABLE)
                    self._refuse_request(_text_answer(400, _UNPARSABLE, self.server_state.default_headers), starting)
                return
            starting, self._starting = self._starting, None
            for cycle, app in starting:
                super()._start_asgi_task(cycle, app)
            if (in_body and not self._body_seen and self._begun == begun
                    and self._completed != self._begun and self._owed_in_request is Owed.BODY):
                # Reads within one request's body that bring none of it (a chunked body's trailer
                # lines, which httptools buffers until they end) are bounded as a header block is.
                # Only those: a read that ends a request's headers brings no body when the client
                # writes the body apart, and counted across a keep-alive connection's requests
                # such reads once refused a valid request after about fifty.
                self._bodyless_bytes += len(data)
                if self._bodyless_bytes > MAX_HEADER_BYTES:
                    self.logger.warning(_UNPARSABLE)
                    self._refuse_request(_text_answer(400, _UNPARSABLE, self.server_state.default_headers), [])
                    return
            if (self._completed == self._begun or self._owed_in_request is not Owed.HEADERS
                    or self._begun - begun > (1 if idle else 0)):  # or the open one began inside this read
                self._head, self._replayable = bytearray(), False
            elif len(self._head) > MAX_HEADER_BYTES + _REQUEST_LINE_EXTRA:
                self._refuse_request(_HEADERS_TOO_LARGE, [])
                return
            self._deadline.watch(self._owed())

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._begun += 1
            self._owed_in_request = Owed.HEADERS
            self._header_bytes = 0
            self._trailer_bytes = 0
            self._bodyless_bytes = 0
            # A keep-alive timer armed when the request before ended (`on_message_complete`) in
            # this read: the connection is not idle any more.
            self._unset_keepalive_if_required()

        def on_url(self, url: bytes) -> None:
            super().on_url(url)
            self._count_header_bytes(len(url))

        def on_header(self, name: bytes, value: bytes) -> None:
            super().on_header(name, value)
            if self._owed_in_request is Owed.HEADERS:
                self._count_header_bytes(len(name) + len(value) + 4)
                return
            # A chunked body's trailer field (llhttp reports them as headers): bounded on its
            # own, a 400 past it, not counted with the header block (valid requests got a 431).
            self._trailer_bytes += len(name) + len(value) + 4
            if self._trailer_bytes > MAX_HEADER_BYTES:
                raise _StopParsing

        def _count_header_bytes(self, size: int) -> None:
            self._header_bytes += size
            if self._header_bytes > MAX_HEADER_BYTES:
                raise _StopParsing

        def on_headers_complete(self) -> None:
            hosts = sum(1 for name, _ in self.headers if name == b"host")
            if self.parser.should_upgrade() or hosts > 1 or (hosts == 0 and self.parser.get_http_version() == "1.1"):
                # An upgrade or CONNECT (uvicorn would start the handler and drop the body: a
                # `curl --http2` start would lose its input), or a Host missing in HTTP/1.1 or
                # repeated (a 400 in RFC 9112 section 3.2, h11 and Go): h11 answers these.
                raise _StopParsing
            if self._cycles - self._answered >= MAX_PIPELINED:
                self._overrun = True
                raise _StopParsing
            super().on_headers_complete()
            self._cycles += 1
            self._owed_in_request = Owed.BODY

        def _start_asgi_task(self, cycle: Any, app: Any) -> None:
            if self._starting is not None:
                self._starting.append((cycle, app))  # started when the read parsed whole
            else:
                super()._start_asgi_task(cycle, app)

        def on_body(self, body: bytes) -> None:
            super().on_body(body)
            self._body_seen = True
            self._bodyless_bytes = 0

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._completed = self._begun
            if self._answered_all() and self.timeout_keep_alive_task is None and not self.transport.is_closing():
                # Its answer went out before its body came in (a 401, 404 or 405): uvicorn armed
                # its keep-alive timer then, and this read cancelled it. Idle again, the connection
                # is the keep-alive's to end; without it the header deadline took it for a request
                # begun and wrote a 408 nobody asked for.
                _keep_alive(self)

        def on_response_complete(self) -> None:
            self._answered += 1
            super().on_response_complete()
            self._writes.watch()
            if self._refusal is not None:
                if self._answered_all() and not self.transport.is_closing():
                    self._end_with(self._refusal)
                return
            self._deadline.watch(self._owed())

        def _owed(self) -> Owed | None:
            if self._refusal is not None:
                return None
            if self._completed != self._begun:  # a request is being read
                if self._owed_in_request is Owed.BODY:
                    # Its handler runs (nothing queued before it): the body is owed now.
                    return None if self.pipeline else Owed.BODY
                # Its headers: owed from when the answers before it are written, as with h11.
                return Owed.HEADERS if self._answered_all() else None
            if self.timeout_keep_alive_task is None and self._answered_all():
                # A new connection, or bytes after a keep-alive pause (uvicorn then cancels its
                # keep-alive timer); an idle keep-alive connection is uvicorn's to close.
                return Owed.HEADERS
            return None  # the request is in: the handler's time is not the client's

        def _answered_all(self) -> bool:
            return self._answered >= self._cycles

        def _hand_over(self, head: bytes) -> None:
            """This connection continues on h11, from the request llhttp refused."""
            self._deadline.disarm()
            self.connections.discard(self)
            successor = GuardedH11Protocol(config=self.config, server_state=self.server_state,
                                           app_state=self.app_state, _loop=self.loop)
            successor.connection_made(self.transport)
            successor._writes = self._writes  # a stall goes on: a hand-over does not restart it
            if self.flow.write_paused:
                successor.pause_writing()  # the transport will tell only the new protocol to resume
            self.transport.set_protocol(successor)
            successor.data_received(head)

        def _refuse_request(self, response: bytes, starting: list[tuple[Any, Any]]) -> None:
            """Refuse the request being read, after the answers to the ones before it (whose
            handlers, if this read brought them, start now); the connection ends with the refusal.
            uvicorn's own protocol writes it at once, cutting those answers off."""
            self._deadline.disarm()
            # The refused request's handler, if its headers were complete.
            refused = self.cycle if self._owed_in_request is Owed.BODY else None
            for cycle, app in starting:
                if cycle is not refused:
                    super()._start_asgi_task(cycle, app)
            if refused is not None:
                if self.pipeline and self.pipeline[0][0] is refused:
                    self.pipeline.popleft()
                elif all(cycle is not refused for cycle, _ in starting):
                    # Its handler runs, reading a body that will not come whole: it sees the
                    # client gone (its answer is dropped), and the refusal ends the connection.
                    refused.disconnected = True
                    refused.message_event.set()
                    if refused.response_started:
                        self.transport.close()  # a refusal cannot follow half an answer
                        return
                self._cycles -= 1  # no answer of its own will complete
            if self._answered_all():
                self._end_with(response)
            else:
                self._refusal = response
                self.flow.pause_reading()

        def _end_with(self, response: bytes) -> None:
            self._unset_keepalive_if_required()
            self.transport.write(response)
            self.transport.close()
            self._writes.watch()

    return GuardedHttpToolsProtocol, GuardedH11Protocol


def uvicorn_options(settings: ApiSettings) -> dict[str, Any]:
    """The keyword arguments of `uvicorn.run` (or `uvicorn.Config`) that choose the protocol and
    bound what one connection can hold, and how long a stopping process waits for them."""
    protocol, _ = guarded_protocols(settings.header_timeout_s, settings.body_timeout_s, settings.write_timeout_s,
                                    settings.shutdown_grace_s)
    return {
        "http": protocol,
        # The h11 protocol a connection may be handed over to reads this from uvicorn's config.
        "h11_max_incomplete_event_size": MAX_HEADER_BYTES,
        # Without it uvicorn waits on SIGTERM for every connection and handler to end, which a
        # client can put off for as long as its deadlines let it (a body trickling in, an answer
        # read slowly: for good), until a supervisor's SIGKILL ends the process with its Kafka
        # clients unclosed. The connections still open when the grace ends are dropped (their
        # handlers see the client gone and end); a handler still running SHUTDOWN_MARGIN_S later
        # waits on nothing of its client's, and uvicorn cancels it. A setting of its own rather
        # than one derived from the deadlines: those bound what a client may hold, this what a
        # rollout waits for, and it must fit in a supervisor's grace (Kubernetes' default 30 s).
        "timeout_graceful_shutdown": settings.shutdown_grace_s + SHUTDOWN_MARGIN_S,
    }
