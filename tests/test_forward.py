"""The gateway's HTTP/1.1 forwarding (fakes/forward.py) against real sockets: pooled keep-alive
connections the upstream closed are not used, or are retried with the body replayed."""
from __future__ import annotations

import asyncio

from simstack.fakes.forward import Upstream


async def _serve_one_request_per_connection(bodies: list[bytes]):
    """A server that answers the first request on each connection, then reads the next one and
    closes without answering (as a server does when its keep-alive timer fires as a request arrives)."""
    async def handle(reader, writer):
        for answered in (True, False):
            head = await reader.readuntil(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            bodies.append(await reader.readexactly(length))
            if answered:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        writer.close()
    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def _post(upstream: Upstream, body: bytes) -> list[dict]:
    sent = []

    async def chunks():
        yield body

    async def send(message):
        sent.append(message)
    await upstream.forward(b"POST", b"/x", [(b"content-length", str(len(body)).encode())], chunks(), send)
    return sent


async def test_a_request_on_a_connection_the_upstream_drops_is_retried_with_its_body():
    bodies: list[bytes] = []
    server = await _serve_one_request_per_connection(bodies)
    upstream = Upstream("127.0.0.1", server.sockets[0].getsockname()[1])
    try:
        first = await _post(upstream, b"first")
        second = await _post(upstream, b"second")      # the pooled connection is dropped: retried
    finally:
        upstream.close()
        server.close()
        await server.wait_closed()
    assert [m.get("status") for m in first + second if m["type"] == "http.response.start"] == [200, 200]
    assert b"".join(m.get("body", b"") for m in second) == b"ok"
    assert bodies == [b"first", b"second", b"second"]   # sent on the dropped connection, then again
