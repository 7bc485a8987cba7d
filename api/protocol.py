"""HTTP/1.1 connections with read deadlines: a client cannot hold a connection open by sending
half a request.

uvicorn's only timeout is keep-alive (idle between two requests), and it is cancelled by the first
byte of the next request; a fresh connection has none. So a client that connects and sends nothing,
or half its headers, or headers and then a body one byte a minute, holds a connection, a task and
its buffers for good. `uvicorn_options` gives uvicorn an h11 protocol with two deadlines:

- **headers**: from the connection opening (or the first byte after a keep-alive pause) until the
  request's headers are complete: `header_timeout_s`;
- **body**: from the headers until the body is complete: `body_timeout_s`.

Each deadline is armed once per request and not extended by further bytes, so trickling does not
help. When one passes, the connection is answered `408 ERR_REQUEST_TIMEOUT` if nothing was answered
yet, and closed; a handler still reading the body sees the client gone (logged as one info line).
The header block is also limited in size (`MAX_HEADER_BYTES`; larger is a 400 from h11).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from .errors import RequestTimeout, error_response
from .settings import ApiSettings

__all__ = ["MAX_HEADER_BYTES", "guarded_protocol", "uvicorn_options"]

log = logging.getLogger(__name__)

#: Largest request line plus headers (h11's default, stated here so it is a decision, not luck).
MAX_HEADER_BYTES = 16 * 1024


def _timeout_bytes(message: str) -> bytes:
    """The 408 as raw HTTP: no request cycle may exist to send it through (headers unfinished)."""
    response = error_response(RequestTimeout(message))
    lines = [b"HTTP/1.1 408 Request Timeout"]
    lines += [name + b": " + value for name, value in response.raw_headers]
    lines.append(b"connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + bytes(response.body)


def guarded_protocol(header_timeout_s: float, body_timeout_s: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol with the two read deadlines of the module docstring."""

    class GuardedH11Protocol(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None
        _phase: str | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._watch()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            self._watch()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._watch()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _waiting_for(self) -> str | None:
            """What part of a request the client owes now, if any."""
            if self.transport.is_closing():
                return None
            state = self.conn.their_state
            if state is h11.SEND_BODY:
                return "body"
            if state is h11.IDLE and (
                # A new connection, or bytes of the next request arrived (uvicorn then cancels
                # its keep-alive timer); an idle keep-alive connection is uvicorn's to close.
                self.timeout_keep_alive_task is None or self.conn.trailing_data[0]
            ):
                return "headers"
            return None  # the request is in: the handler's time is not the client's

        def _watch(self) -> None:
            phase = self._waiting_for()
            if phase == self._phase:
                return  # still the same deadline: more bytes do not extend it
            self._disarm()
            self._phase = phase
            if phase is not None:
                limit = header_timeout_s if phase == "headers" else body_timeout_s
                self._deadline = self.loop.call_later(limit, self._expired, phase, limit)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None
            self._phase = None

        def _expired(self, phase: str, limit: float) -> None:
            self._deadline = None
            self._phase = None
            if self.transport.is_closing():
                return
            client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
            message = f"the request {phase} did not arrive within {limit:g}s"
            log.info("closing the connection from %s: %s", client, message)
            cycle = self.cycle if phase == "body" else None
            if cycle is None or not cycle.response_started:
                if cycle is not None:
                    # The handler's sends are dropped from now on, and its body read ends.
                    cycle.disconnected = True
                    cycle.message_event.set()
                self.transport.write(_timeout_bytes(message))
            self.transport.close()

    return GuardedH11Protocol


def uvicorn_options(settings: ApiSettings) -> dict[str, Any]:
    """The keyword arguments of `uvicorn.run` that bound what one connection can hold."""
    return {
        "http": guarded_protocol(settings.header_timeout_s, settings.body_timeout_s),
        "h11_max_incomplete_event_size": MAX_HEADER_BYTES,
    }
