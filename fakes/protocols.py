"""uvicorn's HTTP and WebSocket protocols, with JSON answers where uvicorn writes plain text or nothing.

Selected by ``--http simstack.fakes.protocols:HTTPProtocol --ws simstack.fakes.protocols:WebSocketProtocol``
(see ``simstack/services.py``; the gateway uses ``HTTPToolsProtocol``); everything else is uvicorn's own:

- HTTP: a request uvicorn's h11 parser refuses (``Content-Length: abc``, a broken request
  line, a head over 16 KiB that arrives in pieces) gets a JSON 400 (431 for the head that
  is too large) instead of ``text/plain`` "Invalid HTTP request received.". The httptools
  protocol (the gateway's) answers the same requests the same way; httptools has no limit
  on the head, so the 16 KiB one is counted here.
- WebSocket: an upgrade that websockets' request parser refuses (a header line over
  8 KiB, more than 128 header fields) got no answer at all under ``websockets-sansio`` and
  its socket was held until the client gave up: websockets queues its 431/414 answer, but
  uvicorn only writes what it queued once a request parses. Here such an upgrade gets a
  JSON 431 (414 for a request line, 400 otherwise) at once, and the socket is closed. Every
  other refused handshake (a malformed upgrade, a close before accept: 403, an exception
  before accept: 500) carries a JSON body instead of websockets' ``text/plain`` one.
"""
from __future__ import annotations

import asyncio
import json
from http import HTTPStatus

from uvicorn.protocols.http.h11_impl import DEFAULT_MAX_INCOMPLETE_EVENT_SIZE, H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.datastructures import Headers
from websockets.exceptions import RequestLineTooLong, SecurityError
from websockets.http11 import MAX_LINE_LENGTH, MAX_NUM_HEADERS, Response
from websockets.server import ServerProtocol

from .common import error_body


def json_response_bytes(status: int, message: str) -> bytes:
    """A complete HTTP/1.1 error response with a JSON body, as every stand-in error is (CONTRACT §2)."""
    body = json.dumps(error_body(status, message)).encode()
    head = (f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n")
    return head.encode("ascii") + body


LINGER_S = 2.0   # how long a refused client may go on sending before its socket is closed


class _LingeringRefusal:
    """Answer, then half-close and discard what the client is still sending.

    Closing a socket with unread bytes in its receive buffer makes the kernel send a reset, and a
    client that is still writing its oversized request then sees ECONNRESET (or no answer at all)
    instead of the 431: measured, 117 of 200 upgrades with a 400 KB header lost their answer. So the
    answer is followed by a FIN only; the socket is closed when the client closes its side, or
    after LINGER_S."""

    _refused = False

    def _answer_and_close(self, response: bytes) -> None:
        self._refused = True
        self.transport.write(response)
        if self.transport.can_write_eof():
            self.transport.write_eof()
            asyncio.get_running_loop().call_later(LINGER_S, self.transport.close)
        else:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if not self._refused:
            super().data_received(data)

    def eof_received(self):
        if self._refused:
            self.transport.close()
            return None
        return super().eof_received()


def _head_limit(config) -> int:
    return config.h11_max_incomplete_event_size or DEFAULT_MAX_INCOMPLETE_EVENT_SIZE


def _refusal(msg: str, limit: int, too_large: bool) -> bytes:
    if too_large:
        status, why = 431, f"the request head is larger than {limit // 1024} KiB"
    else:
        status, why = 400, "malformed HTTP request (e.g. a Content-Length that is not a number)"
    return json_response_bytes(status, f"{msg} {why}")


class HTTPProtocol(_LingeringRefusal, H11Protocol):
    """uvicorn's h11 protocol; a request it cannot parse is answered with JSON."""

    def send_400_response(self, msg: str) -> None:
        limit = _head_limit(self.config)
        self._answer_and_close(_refusal(msg, limit, len(self.conn.trailing_data[0]) > limit))


def _shortcut(app):
    """The ``asgi_shortcut`` of the app uvicorn serves, looked up through uvicorn's wrappers (which
    keep what they wrap as ``.app``); None for any other app (and for the 503 app of --limit-concurrency)."""
    while app is not None:
        found = getattr(app, "asgi_shortcut", _MISSING)
        if found is not _MISSING:
            return found
        app = getattr(app, "app", None)
    return None


_MISSING = object()


class _HeadTooLarge(Exception):
    """Raised from a parser callback: httptools stops parsing and uvicorn calls send_400_response."""


class _Corked:
    """A response's view of the client's transport: what it writes in one step of the event loop goes
    out as one write at the end of that step. uvicorn writes a response's head and body separately;
    as two TCP segments they cost every hop after the gateway (Toxiproxy, the client) a second read
    and wake-up: measured, the gateway figure's throughput ratio went from ~0.6 to ~0.8 with one write
    per answer (a callback-only forwarder, bench harness rounds)."""

    __slots__ = ("transport", "loop", "pending")

    def __init__(self, transport, loop):
        self.transport, self.loop, self.pending = transport, loop, []

    def write(self, data: bytes) -> None:
        if not data:
            return
        if not self.pending:
            self.loop.call_soon(self.flush)
        self.pending.append(data)

    def flush(self) -> None:
        if self.pending:
            data = b"".join(self.pending) if len(self.pending) > 1 else self.pending[0]
            self.pending = []
            if not self.transport.is_closing():
                self.transport.write(data)

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def close(self) -> None:
        self.flush()
        self.transport.close()


class HTTPToolsProtocol(_LingeringRefusal, HttpToolsProtocol):
    """uvicorn's httptools protocol (the gateway's: it parses in C, where h11 spends ~50 us of Python
    per request); a request it cannot parse is answered with JSON, and a head over the limit h11 has
    (16 KiB, ``--h11-max-incomplete-event-size``) with a JSON 431, as :class:`HTTPProtocol` does.

    The head is measured twice: while it is incomplete, by the bytes read for it (those of the chunk
    it began in count less the body bytes of the request before it), so a head that never ends is
    refused once it passes the limit; once complete, by its request target and header lines."""

    _in_head = True      # no request head has completed since the last one began
    _head_bytes = 0      # bytes read for the incomplete head
    _chunk_body = 0      # body bytes in the chunk being parsed (not head bytes)
    _too_large = False

    def data_received(self, data: bytes) -> None:
        self._chunk_body = 0
        super().data_received(data)
        if self._in_head and not self._refused and not self.transport.is_closing():
            self._head_bytes += len(data) - self._chunk_body
            if self._head_bytes > _head_limit(self.config):
                self._too_large = True
                self.send_400_response("Invalid HTTP request received.")

    def on_message_begin(self) -> None:
        self._in_head, self._head_bytes = True, 0
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._in_head = False
        if len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers) > _head_limit(self.config):
            self._too_large = True
            raise _HeadTooLarge()
        super().on_headers_complete()
        if self.cycle is not None and self.cycle.scope is self.scope:
            self.cycle.transport = _Corked(self.transport, self.loop)

    def on_body(self, body: bytes) -> None:
        self._chunk_body += len(body)
        super().on_body(body)

    def send_400_response(self, msg: str) -> None:
        self._answer_and_close(_refusal(msg, _head_limit(self.config), self._too_large))

    def _start_asgi_task(self, cycle, app) -> None:
        """A request is ready: offered first to the app's ``asgi_shortcut`` (the gateway's, for plain
        requests: fakes/shortcut.py), which may answer it without a task; else run as uvicorn runs it."""
        shortcut = _shortcut(app)
        if shortcut is None or not shortcut(cycle, self._start_task):
            self._start_task(cycle, app)

    def _start_task(self, cycle, app) -> None:
        super()._start_asgi_task(cycle, app)


class _JSONRejects(ServerProtocol):
    """websockets' server protocol; a refused handshake carries a JSON body."""

    def reject(self, status, text: str) -> Response:
        response = super().reject(status, text)
        body = json.dumps(error_body(response.status_code, text.strip() or response.reason_phrase)).encode()
        kept = [(k, v) for k, v in response.headers.raw_items() if k.lower() not in ("content-type", "content-length")]
        response.headers = Headers([*kept, ("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        response.body = body
        return response


class WebSocketProtocol(_LingeringRefusal, WebSocketsSansIOProtocol):
    """uvicorn's websockets-sansio protocol; an upgrade request it cannot parse is answered at once,
    and every refused handshake is answered with JSON."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.conn.__class__ = _JSONRejects   # the protocol uvicorn built, with only reject() changed

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._refused:
            return
        refused = self.conn.handshake_exc
        if refused is not None and not self.handshake_initiated and not self.transport.is_closing():
            self._refuse(refused)

    def _refuse(self, exc: Exception) -> None:
        if isinstance(exc, RequestLineTooLong):
            status, why = 414, f"the request line is longer than {MAX_LINE_LENGTH} bytes"
        elif isinstance(exc, SecurityError):
            status, why = 431, (f"a header line is longer than {MAX_LINE_LENGTH} bytes or there are more than "
                                f"{MAX_NUM_HEADERS} header fields")
        else:
            status, why = 400, f"the upgrade request is not valid HTTP ({exc.__cause__ or exc})"
        self.conn.data_to_send()   # drop websockets' own text/plain answer, queued but never written
        self.close_sent = self.handshake_complete = True
        self._answer_and_close(json_response_bytes(status, f"WebSocket upgrade refused: {why}"))
