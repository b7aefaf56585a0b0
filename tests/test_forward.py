"""The gateway's HTTP/1.1 forwarding (fakes/forward.py) against real sockets: pooled keep-alive
connections the upstream closed are not used, or are retried with the body replayed."""
from __future__ import annotations

import asyncio

from simstack.fakes.forward import Upstream, UpstreamError


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


async def _scripted(answers: list[bytes], seen: list[bytes], accepted: list[int]):
    """A server that reads each request head on a connection and writes the next scripted answer
    (raw bytes: any framing, or none); after one saying ``connection: close``, or the last one, it
    closes. ``seen``: every request head; ``accepted``: counts connections."""
    async def handle(reader, writer):
        accepted[0] += 1
        try:
            while answers:
                seen.append(await reader.readuntil(b"\r\n\r\n"))
                answer = answers.pop(0)
                writer.write(answer)
                await writer.drain()
                if b"connection: close" in answer.lower():
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()
    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def _get(upstream: Upstream, method: bytes = b"GET") -> list[dict]:
    sent = []

    async def send(message):
        sent.append(message)
    async with asyncio.timeout(5):   # an answer whose end is missed would otherwise hang the test
        await upstream.forward(method, b"/x", [], None, send)
    return sent


def _status_and_body(sent: list[dict]) -> tuple[int, bytes]:
    assert sent[-1] == {"type": "http.response.body", "body": sent[-1]["body"], "more_body": False}
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


async def _against(answers: list[bytes], *methods: bytes) -> tuple[list, list[bytes], int]:
    """Each method's request in turn through one Upstream; the answers the client got, the heads the
    server saw and how many connections it accepted."""
    seen: list[bytes] = []
    accepted = [0]
    server = await _scripted(answers, seen, accepted)
    upstream = Upstream("127.0.0.1", server.sockets[0].getsockname()[1])
    try:
        results = []
        for method in methods:
            try:
                results.append(_status_and_body(await _get(upstream, method)))
            except UpstreamError as exc:
                results.append(exc)
    finally:
        upstream.close()
        server.close()
        await server.wait_closed()
    return results, seen, accepted[0]


async def test_answers_framed_every_way_arrive_whole_on_one_kept_alive_connection():
    results, seen, accepted = await _against([
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 204 No Content\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n",        # the answer to a HEAD: no body follows
    ], b"GET", b"GET", b"GET", b"GET", b"HEAD")
    assert results == [(200, b"hello"), (200, b"abcde"), (201, b"ok"), (204, b""), (200, b"")]
    assert accepted == 1 and [h.split(b" ")[0] for h in seen] == [b"GET"] * 4 + [b"HEAD"]


async def test_a_body_delimited_by_the_close_ends_with_it_and_the_next_request_is_answered():
    results, _, accepted = await _against([b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end",
                                           b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext"], b"GET", b"GET")
    assert results == [(200, b"until the end"), (200, b"next")] and accepted == 2


async def test_an_answer_cut_short_or_not_http_is_an_upstream_error_saying_whether_it_had_started():
    cut, _, _ = await _against([b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\nhalf"], b"GET")
    garbage, _, _ = await _against([b"SMTP ready\r\n\r\n"], b"GET")
    assert isinstance(cut[0], UpstreamError) and cut[0].started
    assert isinstance(garbage[0], UpstreamError) and not garbage[0].started and "not valid HTTP" in str(garbage[0])


async def test_a_body_larger_than_the_read_ahead_arrives_whole():
    body = bytes(range(256)) * 8192           # 2 MiB, past the 256 KiB the forwarder reads ahead
    results, _, _ = await _against([b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body)], b"GET")
    assert results == [(200, body)]


async def test_a_request_body_without_length_goes_upstream_chunked():
    seen: list[bytes] = []
    bodies: list[bytes] = []

    async def handle(reader, writer):
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        bodies.append(await reader.readuntil(b"0\r\n\r\n"))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    upstream = Upstream("127.0.0.1", server.sockets[0].getsockname()[1])

    async def chunks():
        yield b"abc"
        yield b""
        yield b"defgh"
    try:
        sent = []

        async def send(message):
            sent.append(message)
        await upstream.forward(b"POST", b"/x", [(b"x-a", b"1"), (b"connection", b"keep-alive")], chunks(), send)
    finally:
        upstream.close()
        server.close()
        await server.wait_closed()
    assert b"transfer-encoding: chunked\r\n" in seen[0] and b"connection" not in seen[0].lower()
    assert seen[0].startswith(b"POST /x HTTP/1.1\r\nhost: 127.0.0.1:") and b"x-a: 1\r\n" in seen[0]
    assert bodies == [b"3\r\nabc\r\n5\r\ndefgh\r\n0\r\n\r\n"]
    assert _status_and_body(sent) == (200, b"")
