"""A small backend of the tests' own (not a simstack stand-in), for the gateway tests.

HTTP: ``/health``; ``/echo`` answers what it received (method, path, query, headers, body);
``/status/N`` answers N with a JSON body; ``/stream`` a chunked body; ``/big?mb=N`` N MiB; ``/last-close`` the close code
and reason the last WebSocket client sent; ``/dep`` one round trip to the TCP echo at ``$DEP_ADDR``
(``{"ok": false}`` when it takes longer than ``?timeout_s=``, default 0.3); ``/dep-http`` likewise
one ``GET /health`` to the HTTP service at ``$DEP_HTTP_ADDR``, answering the health it got;
``/auth/e2e/test-auth`` answers 200 without a token (an auth service that does not honour the
contract's token request).
WebSocket ``/ws``: refuses with ``?refuse=N`` (status N, JSON body); accepts (selecting ``jwt-auth``
only when offered), sends ``hello`` with the headers it got, then answers each frame:
``start_agent`` -> the five agent events; ``close`` -> a close with the frame's code and reason;
``cut`` -> the TCP connection cut without a close frame; anything else -> echoed.

Serve: ``python -m uvicorn upstream_app:app --app-dir tests --port N``.
"""
from __future__ import annotations

import asyncio
import json
import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

EVENTS = ("agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_completed")
LAST_CLOSE: dict = {}


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "healthy", "service": "tests-upstream"})


async def echo(request: Request) -> JSONResponse:
    body = await request.body()
    return JSONResponse({"method": request.method, "path": request.url.path, "query": request.url.query,
                         "headers": dict(request.headers), "body": body.decode("utf-8", "replace")},
                        headers={"X-Upstream": "tests"})


async def status(request: Request) -> JSONResponse:
    code = int(request.path_params["code"])
    return JSONResponse({"detail": f"status {code}", "error_code": f"HTTP_{code}"}, status_code=code)


async def stream(request: Request) -> StreamingResponse:
    async def chunks():
        for i in range(5):
            yield f"chunk-{i};".encode()
    return StreamingResponse(chunks(), media_type="text/plain")


async def big(request: Request) -> Response:
    """``?mb=N``: N MiB of a repeating byte pattern, with a Content-Length (more than the buffers between)."""
    return Response(bytes(range(256)) * 4096 * int(request.query_params.get("mb", "1")), media_type="application/octet-stream")


async def last_close(request: Request) -> JSONResponse:
    return JSONResponse(LAST_CLOSE)


async def _round_trip(request: Request, variable: str, sent: bytes, read) -> bytes | None:
    """Send ``sent`` to the address in ``$variable`` and read the answer; None past ?timeout_s=."""
    host, _, port = os.environ[variable].rpartition(":")
    try:
        async with asyncio.timeout(float(request.query_params.get("timeout_s", 0.3))):
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(sent)
            answer = await read(reader)
            writer.close()
    except TimeoutError:
        return None
    return answer


async def dep(request: Request) -> JSONResponse:
    line = await _round_trip(request, "DEP_ADDR", b"ping\n", lambda r: r.readline())
    if line is None:
        return JSONResponse({"ok": False, "error": "dependency timed out"})
    return JSONResponse({"ok": line == b"ping\n"})


async def no_token(request: Request) -> JSONResponse:
    return JSONResponse({"token_type": "bearer"})


async def dep_http(request: Request) -> JSONResponse:
    sent = b"GET /health HTTP/1.1\r\nHost: dep\r\nConnection: close\r\n\r\n"
    reply = await _round_trip(request, "DEP_HTTP_ADDR", sent, lambda r: r.read())
    if reply is None:
        return JSONResponse({"ok": False, "error": "dependency timed out"})
    head, _, body = reply.partition(b"\r\n\r\n")
    return JSONResponse({"ok": head.startswith(b"HTTP/1.1 200 "), "health": json.loads(body)})


async def ws_endpoint(ws: WebSocket) -> None:
    refuse = ws.query_params.get("refuse")
    if refuse:
        await ws.send_denial_response(JSONResponse({"detail": "refused by upstream", "error_code": "UPSTREAM"},
                                                   status_code=int(refuse), headers={"X-Upstream": "tests"}))
        return
    offered = [p.strip() for p in ws.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
    await ws.accept(subprotocol="jwt-auth" if "jwt-auth" in offered else None)
    await ws.send_text(json.dumps({"type": "hello", "headers": dict(ws.headers), "offered": offered}))
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                LAST_CLOSE.clear()
                LAST_CLOSE.update(code=message.get("code"), reason=message.get("reason") or "")
                return
            if message.get("bytes") is not None:
                await ws.send_bytes(message["bytes"])
                continue
            frame = json.loads(message["text"])
            if frame.get("type") == "start_agent":
                for event in EVENTS:
                    await ws.send_text(json.dumps({"type": event, "run_id": "run-1"}))
            elif frame.get("type") == "close":
                await ws.close(frame["code"], frame.get("reason", ""))
                return
            elif frame.get("type") == "cut":
                return                   # returning without a close: uvicorn cuts the connection
            else:
                await ws.send_text(json.dumps({"type": "echo", "frame": frame}))
    except WebSocketDisconnect as exc:
        LAST_CLOSE.update(code=exc.code, reason=exc.reason)


app = Starlette(routes=[Route("/health", health), Route("/echo", echo, methods=["GET", "POST", "PUT"]),
                        Route("/status/{code}", status), Route("/stream", stream), Route("/big", big),
                        Route("/last-close", last_close), Route("/dep", dep),
                        Route("/dep-http", dep_http), Route("/auth/e2e/test-auth", no_token, methods=["POST"]),
                        WebSocketRoute("/ws", ws_endpoint)])
