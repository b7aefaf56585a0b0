"""The gateway's shortcut for plain requests: forwarded from the server protocol's callbacks, no ASGI task.

Every request to a service of yours crosses the gateway, and on two shared cores the gateway's CPU per
request is the stack's HTTP throughput (the bench's ``gateway`` figure). Through uvicorn, a request is
an asyncio task that runs the ASGI layers, and the forwarder awaits the upstream's answer: tasks,
futures and turns of the event loop that cost more than parsing and forwarding the bytes (a version
forwarding from callbacks only, with the same timeline record, measured ~40 us per request against
~80 us, and Toxiproxy + it 0.8x Toxiproxy alone against 0.55x). So a request that nothing but
forwarding and recording applies to goes from ``on_headers_complete`` straight to a pooled upstream
connection, and its answer is written from that connection's ``data_received``, with uvicorn's own
``RequestResponseCycle.send``.

It is taken only where it changes nothing a client, the upstream or the timeline sees: no fault in
force (one active fault of any kind sends every request the ordinary way), no recording, no replay, a
request without a body (no Content-Length, Transfer-Encoding or Expect), not HEAD, kept alive, no
X-Forwarded-For/-Proto (uvicorn's proxy-headers layer would rewrite the client), not the admin API,
not waiting behind a pipelined request, and an idle pooled connection at hand. Any other request,
and any failure before the answer's head, goes the ordinary way (which retries on a new connection
and answers 502 when the upstream does not answer). An answer that is not complete when its head
arrives, or a client that is not taking what is written, continues in an ASGI task as before.
"""
from __future__ import annotations

import time

from .common import close_record, open_record, recording_send
from .control import ADMIN_PREFIX
from .forward import UpstreamError, forward_headers, request_target, stream_body

# A request carrying any of these takes the ordinary path (see the module docstring).
ORDINARY = frozenset({b"content-length", b"transfer-encoding", b"expect", b"x-forwarded-for", b"x-forwarded-proto"})


class Shortcut:
    """Set on the gateway as ``asgi_shortcut``; the gateway's server protocol offers it every request."""

    def __init__(self, gateway):
        self.gateway = gateway

    def __call__(self, cycle, start_task) -> bool:
        """Forward ``cycle``'s request and return True, or return False to have it run as usual.
        ``start_task(cycle, app)`` runs an ASGI app for the cycle as uvicorn does."""
        gateway, scope = self.gateway, cycle.scope
        if (gateway.book.any_active() or scope["method"] == "HEAD" or not cycle.keep_alive
                or cycle.flow.write_paused or scope["path"].startswith(ADMIN_PREFIX)
                or any(k in ORDINARY for k, _ in scope["headers"])):
            return False
        conn = gateway.http.pooled()
        if conn is None:
            return False
        _Exchange(gateway, cycle, start_task, conn)
        return True


class _Exchange:
    """One request on the shortcut, from the request written upstream to the answer written back."""

    __slots__ = ("gateway", "cycle", "start_task", "t0", "rec")

    def __init__(self, gateway, cycle, start_task, conn):
        self.gateway, self.cycle, self.start_task = gateway, cycle, start_task
        scope = cycle.scope
        self.rec, _ = open_record(gateway.timeline, scope)
        self.t0 = time.perf_counter()
        method = scope["method"].encode()
        head, _ = gateway.http.request_head(method, request_target(scope), forward_headers(scope), False)
        conn.begin(method)
        conn.listener = self.answered
        conn.transport.write(head)

    def answered(self, conn) -> None:
        """The upstream connection has news: the answer's head, body, end, or a failure. Each is
        written to the client at once while it takes what is written; else an ASGI task goes on."""
        if conn.failed():                    # before any answer: forwarded the ordinary way, from the start
            conn.listener = None
            conn.close()
            return self.start_task(self.cycle, _Again(self))
        if conn.status is None:
            return
        cycle, pending = self.cycle, []
        if not cycle.response_started:
            self.rec.status = conn.status
            pending.append({"type": "http.response.start", "status": conn.status, "headers": conn.response_headers()})
        broken = conn.error is not None or (conn.eof and not conn.complete)
        if not broken and (conn.body or conn.complete):
            data = conn.take_body() if conn.body else b""
            pending.append({"type": "http.response.body", "body": data, "more_body": not conn.complete})
        while pending and _send_now(cycle, pending[0]):
            pending.pop(0)
        if broken or pending:                # the rest is the ordinary path's: an ASGI task
            conn.listener = None
            return self.start_task(cycle, _Rest(self, conn, pending))
        if conn.complete:
            conn.listener = None
            self.gateway.http.release(conn)
            self.done()

    def done(self) -> None:
        close_record(self.gateway.timeline, self.rec, self.t0)


class _Again:
    """A shortcut's request whose pooled connection failed before any answer, forwarded as the
    ordinary path forwards it (retried on another connection, 502 when the upstream does not answer),
    recorded in the record it already has."""

    def __init__(self, exchange: _Exchange):
        self.exchange = exchange

    async def __call__(self, scope, receive, send) -> None:
        try:
            await self.exchange.gateway.forward_http(scope, receive, recording_send(self.exchange.rec, send))
        finally:
            self.exchange.done()


class _Rest:
    """The rest of a shortcut's answer as an ASGI app, once it cannot be written at once: the messages
    not yet written, then the body as it arrives, as the ordinary path writes it."""

    def __init__(self, exchange: _Exchange, conn, pending: list[dict]):
        self.exchange, self.conn, self.pending = exchange, conn, pending

    async def __call__(self, scope, receive, send) -> None:
        conn = self.conn
        try:
            for message in self.pending:
                await send(message)
            if not (self.pending and self.pending[-1].get("more_body") is False):
                await stream_body(conn, send)   # what arrived since, to the end (the last message included)
            self.exchange.gateway.http.release(conn)
            conn = None
        except (UpstreamError, OSError):
            pass                             # the client sees the answer cut short, as on the ordinary path
        finally:
            if conn is not None:
                conn.close()
            self.exchange.done()


def _send_now(cycle, message: dict) -> bool:
    """``cycle.send(message)`` without a task, unless the client's writes are paused (False): uvicorn's
    send awaits only then, so checked first, it returns without suspending."""
    if cycle.flow.write_paused and not cycle.disconnected:
        return False
    coro = cycle.send(message)
    try:
        coro.send(None)
    except StopIteration:
        return True
    coro.close()
    raise RuntimeError("uvicorn's send suspended with the client's writes not paused")
