"""HTTP/1.1 forwarding for the gateway: one request from an ASGI scope to the upstream, its answer
streamed back, on a pool of keep-alive connections.

Each connection is an asyncio protocol whose bytes httptools (llhttp, the parser uvicorn serves the
gateway with) parses as they arrive; the request is framed here (Content-Length as given, else
chunked). Neither httpx nor h11: per request, httpx's client, pool and transport layers cost the
gateway ~20x the CPU of the upstream call itself (cProfile under load: its pool re-imported a
missing module on every request), and h11 over asyncio streams, which replaced it, spent ~40 us of
Python per request in its state machine and header validation (py-spy under the bench's load).
This module only moves bytes, drops hop-by-hop headers and knows what ends a response
(Content-Length, chunked, 204/304, HEAD, the upstream closing).
"""
from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable

import httptools

# Hop-by-hop headers (RFC 9110 §7.6.1) and Host, which the gateway sets for the upstream.
HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te",
                        b"trailer", b"trailers", b"transfer-encoding", b"upgrade", b"host"})
BUFFERED = 256 * 1024   # response bytes read ahead of the client before the upstream is paused


def request_target(scope) -> bytes:
    """The request's path and query as the client sent them."""
    target = scope.get("raw_path") or scope["path"].encode()
    if scope.get("query_string"):
        target += b"?" + scope["query_string"]
    return target


def forward_headers(scope, drop: frozenset = frozenset(), decode: bool = False) -> list:
    """The client's headers for the upstream: less ``drop``, plus X-Forwarded-For and -Host. HTTP
    passes none to drop: :meth:`Upstream.request_head` drops the hop-by-hop ones as it writes them."""
    client = scope.get("client")
    headers = [(k, v) for k, v in scope["headers"] if k not in drop]
    host = next((v for k, v in scope["headers"] if k == b"host"), None)
    if client:
        headers.append((b"x-forwarded-for", client[0].encode()))
    if host:
        headers.append((b"x-forwarded-host", host))
    if decode:
        return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers]
    return headers


class UpstreamError(Exception):
    """The upstream did not answer (refused, reset, closed). ``started``: after the response began."""

    def __init__(self, message: str, started: bool = False):
        super().__init__(message)
        self.started = started


class _Replayable:
    """A request body that can be sent again from its start: the chunks already read are kept
    (up to ``limit`` bytes; a longer body is not replayable once past it)."""

    def __init__(self, source: AsyncIterator[bytes], limit: int = 8 * 1024 * 1024):
        self.source, self.kept, self.size, self.limit = source, [], 0, limit
        self.complete = True      # every chunk read so far is kept

    def __aiter__(self):
        return self._chunks()

    async def _chunks(self):
        for chunk in list(self.kept):
            yield chunk
        async for chunk in self.source:
            self.size += len(chunk)
            if self.size <= self.limit:
                self.kept.append(chunk)
            else:
                self.complete = False
            yield chunk


class _Conn(asyncio.Protocol):
    """One keep-alive connection to the upstream and the response it is reading: the parser's
    callbacks fill ``status``/``headers``/``body``/``complete``, and :meth:`wait` wakes the
    exchange when there is more (or the connection failed)."""

    def __init__(self):
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future | None = None
        self.listener: Callable[[_Conn], None] | None = None   # told instead, when no exchange awaits
        self.eof = self.paused = False
        self.error: str | None = None
        self.begin(b"")

    def begin(self, method: bytes) -> None:
        self.head_only = method == b"HEAD"
        self.status: int | None = None
        self.headers: list = []
        self.body: list[bytes] = []
        self.buffered = 0                 # bytes in ``body``; past BUFFERED, reading pauses until taken
        self.complete = self.informational = self.until_close = False
        self.keep_alive = True

    # ---------------------------------------------------------------- asyncio.Protocol
    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.error = f"the upstream's answer is not valid HTTP/1.1 ({exc})"
        if self.buffered > BUFFERED and not self.paused:
            self.paused = True
            self.transport.pause_reading()   # resumed when the exchange takes the body
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        if self.until_close and not self.complete:
            self.complete, self.keep_alive = True, False   # a body delimited by the close ends with it
        self._wake()
        return False

    def connection_lost(self, exc) -> None:
        self.eof = True
        self._wake()

    # ---------------------------------------------------------------- httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:                  # 1xx: not passed on; the answer follows
            self.informational, self.headers = True, []
            return
        self.status, self.keep_alive = status, self.parser.should_keep_alive()
        if self.head_only:
            self.complete, self.keep_alive = True, False   # the parser would wait for the body a HEAD has not
        elif status not in (204, 304):
            self.until_close = not any(k in (b"content-length", b"transfer-encoding") for k, _ in self.headers)

    def on_body(self, body: bytes) -> None:
        if not self.complete:
            self.body.append(body)
            self.buffered += len(body)

    def on_message_complete(self) -> None:
        if self.informational:
            self.informational = False
        else:
            self.complete = True

    # ---------------------------------------------------------------- the exchange's side
    def _wake(self) -> None:
        if self.waiter is not None:
            if not self.waiter.done():
                self.waiter.set_result(None)
        elif self.listener is not None:
            self.listener(self)

    def failed(self) -> bool:
        """The connection broke (or the answer was not HTTP) before the answer's head arrived."""
        return self.status is None and (self.error is not None or self.eof)

    def response_headers(self) -> list:
        return [(k, v) for k, v in self.headers if k not in HOP_BY_HOP]

    async def wait(self) -> None:
        """Until the parser has more, or raise UpstreamError when the connection failed first."""
        if self.error is None and not self.eof:
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        if self.error is not None:
            raise UpstreamError(self.error)
        if self.eof and not self.complete and not self.body:
            raise UpstreamError("the upstream closed the connection before the response ended")

    def take_body(self) -> bytes:
        data = b"".join(self.body) if len(self.body) != 1 else self.body[0]
        self.body.clear()
        self.buffered = 0
        if self.paused:
            self.paused = False
            self.transport.resume_reading()
        return data

    def reusable(self) -> bool:
        return self.complete and self.keep_alive and not self.eof and not self.transport.is_closing()

    def closed_by_upstream(self) -> bool:
        """The upstream closed it while it sat idle (e.g. its keep-alive timeout): not to be used again."""
        return self.eof or self.error is not None or self.transport.is_closing()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class Upstream:
    """Keep-alive HTTP/1.1 connections to one ``host:port``."""

    def __init__(self, host: str, port: int, tls: bool = False, max_idle: int = 64):
        self.host, self.port, self.max_idle = host, port, max_idle
        self.ssl = ssl.create_default_context() if tls else None
        self.authority = f"{host}:{port}".encode()
        self._idle: list[_Conn] = []

    async def _connect(self) -> _Conn:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(loop.create_connection(_Conn, self.host, self.port, ssl=self.ssl), 10)
        except (OSError, asyncio.TimeoutError) as exc:
            raise UpstreamError(f"{exc.__class__.__name__}: {exc}") from None
        return conn

    def release(self, conn: _Conn) -> None:
        """Back to the pool after a complete exchange, or closed."""
        if conn.reusable() and len(self._idle) < self.max_idle:
            self._idle.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()

    async def forward(self, method: bytes, target: bytes, headers: list, body: AsyncIterator[bytes] | None,
                      send: Callable[[dict], Awaitable[None]]) -> None:
        """Send one request upstream and stream its response to the ASGI ``send``.

        A pooled connection the upstream closed while it sat idle (servers close idle keep-alive
        connections: uvicorn after 5 s) is skipped when the close has already arrived, and otherwise
        retried on another connection, with the body sent so far replayed, as long as no response
        had started; any other failure raises UpstreamError."""
        head, chunked = self.request_head(method, target, headers, body is not None)
        replayable = _Replayable(body) if body is not None else None
        while True:
            conn = self.pooled()
            pooled = conn is not None
            conn = conn or await self._connect()
            started = [False]
            try:
                await self._exchange(conn, method, head, replayable, chunked, send, started)
            except (OSError, UpstreamError) as exc:
                conn.close()
                if pooled and not started[0] and (replayable is None or replayable.complete):
                    continue              # went stale while idle: once more, on another connection
                raise UpstreamError(str(exc) if isinstance(exc, UpstreamError) else f"{exc.__class__.__name__}: {exc}",
                                    started[0]) from None
            except BaseException:
                conn.close()
                raise
            self.release(conn)
            return

    def request_head(self, method: bytes, target: bytes, headers: list, has_body: bool) -> tuple[bytes, bool]:
        """The request line and headers for the upstream, and whether the body goes chunked (it
        has no Content-Length)."""
        lines = [method, b" ", target, b" HTTP/1.1\r\nhost: ", self.authority, b"\r\n"]
        chunked = has_body
        for k, v in headers:
            if k not in HOP_BY_HOP:
                lines += (k, b": ", v, b"\r\n")
                chunked = chunked and k != b"content-length"
        if chunked:
            lines.append(b"transfer-encoding: chunked\r\n")
        lines.append(b"\r\n")
        return b"".join(lines), chunked

    def pooled(self) -> _Conn | None:
        """An idle connection the upstream has not closed meanwhile, if there is one."""
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed_by_upstream():
                return conn
            conn.close()
        return None

    @staticmethod
    async def _exchange(conn: _Conn, method: bytes, head: bytes, body, chunked: bool, send, started: list) -> None:
        conn.begin(method)
        write = conn.transport.write
        write(head)
        if body is not None:
            async for chunk in body:
                if chunk:
                    write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
            if chunked:
                write(b"0\r\n\r\n")
        while conn.status is None:
            await conn.wait()
        started[0] = True
        await send({"type": "http.response.start", "status": conn.status, "headers": conn.response_headers()})
        await stream_body(conn, send)


async def stream_body(conn: _Conn, send) -> None:
    """The answer's body, as it arrives, to the ASGI ``send``; its last message ends the response."""
    while True:
        if conn.body or conn.complete:
            complete = conn.complete      # read with the body taken: more may arrive while send waits
            await send({"type": "http.response.body", "body": conn.take_body(), "more_body": not complete})
            if complete:
                return
        else:
            await conn.wait()
