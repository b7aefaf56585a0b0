"""HTTP/1.1 forwarding for the gateway: one request from an ASGI scope to the upstream, its answer
streamed back, on a pool of keep-alive connections.

Built on h11 (the HTTP/1.1 state machine uvicorn itself uses) over asyncio streams rather than on
httpx: per request, httpx's client, pool and transport layers cost the gateway ~20x the CPU of the
upstream call itself (measured with cProfile under load: its pool re-imports a missing module on
every request), which is what the benchmark's throughput target is about. h11 frames the messages
(Content-Length, chunked, HEAD, keep-alive); this module only moves bytes and drops hop-by-hop
headers.
"""
from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable

import h11

# Hop-by-hop headers (RFC 9110 §7.6.1) and Host, which the gateway sets for the upstream.
HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te",
                        b"trailer", b"trailers", b"transfer-encoding", b"upgrade", b"host"})
READ_SIZE = 65536


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


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self.h11 = h11.Connection(h11.CLIENT)

    def reusable(self) -> bool:
        return (self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE
                and not self.writer.is_closing())

    def closed_by_upstream(self) -> bool:
        """The upstream closed it while it sat idle (e.g. its keep-alive timeout): not to be used again."""
        return self.reader.at_eof() or self.writer.is_closing()

    def close(self) -> None:
        self.writer.close()


class Upstream:
    """Keep-alive HTTP/1.1 connections to one ``host:port``."""

    def __init__(self, host: str, port: int, tls: bool = False, max_idle: int = 64):
        self.host, self.port, self.max_idle = host, port, max_idle
        self.ssl = ssl.create_default_context() if tls else None
        self.authority = f"{host}:{port}".encode()
        self._idle: list[_Conn] = []

    async def _connect(self) -> _Conn:
        try:
            return _Conn(*await asyncio.wait_for(asyncio.open_connection(self.host, self.port, ssl=self.ssl), 10))
        except (OSError, asyncio.TimeoutError) as exc:
            raise UpstreamError(f"{exc.__class__.__name__}: {exc}") from None

    def _release(self, conn: _Conn) -> None:
        if conn.reusable() and len(self._idle) < self.max_idle:
            conn.h11.start_next_cycle()
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
        headers = [(k, v) for k, v in headers if k not in HOP_BY_HOP]
        headers.insert(0, (b"host", self.authority))
        if body is not None and not any(k == b"content-length" for k, _ in headers):
            headers.append((b"transfer-encoding", b"chunked"))
        request = h11.Request(method=method, target=target, headers=headers)
        replayable = _Replayable(body) if body is not None else None
        while True:
            conn = self._pooled()
            pooled = conn is not None
            conn = conn or await self._connect()
            started = [False]
            try:
                await self._exchange(conn, request, replayable, send, started)
            except (OSError, h11.ProtocolError, asyncio.IncompleteReadError, UpstreamError) as exc:
                conn.close()
                if pooled and not started[0] and (replayable is None or replayable.complete):
                    continue              # went stale while idle: once more, on another connection
                raise UpstreamError(f"{exc.__class__.__name__}: {exc}", started[0]) from None
            except BaseException:
                conn.close()
                raise
            self._release(conn)
            return

    def _pooled(self) -> _Conn | None:
        """An idle connection the upstream has not closed meanwhile, if there is one."""
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed_by_upstream():
                return conn
            conn.close()
        return None

    @staticmethod
    async def _exchange(conn: _Conn, request: h11.Request, body, send, started: list) -> None:
        h, writer = conn.h11, conn.writer
        writer.write(h.send(request))
        if body is not None:
            async for chunk in body:
                writer.write(h.send(h11.Data(data=chunk)))
        writer.write(h.send(h11.EndOfMessage()) or b"")
        while True:
            event = h.next_event()
            if event is h11.NEED_DATA:
                h.receive_data(await conn.reader.read(READ_SIZE))
            elif isinstance(event, h11.Response):
                started[0] = True
                await send({"type": "http.response.start", "status": event.status_code,
                            "headers": [(k, v) for k, v in event.headers if k not in HOP_BY_HOP]})
            elif isinstance(event, h11.Data):
                await send({"type": "http.response.body", "body": bytes(event.data), "more_body": True})
            elif isinstance(event, h11.EndOfMessage):
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            elif isinstance(event, h11.ConnectionClosed):
                raise UpstreamError("the upstream closed the connection before the response ended")
            # h11.InformationalResponse (1xx) is not passed on
