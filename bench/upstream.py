"""The upstream the gateway figure forwards to: a plain Starlette app (not a stand-in) answering
``GET /health`` with a small JSON body and echoing every WebSocket text frame on ``/ws``.

Serve: ``python -m uvicorn bench.upstream:app --port N``."""
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect


async def health(request) -> JSONResponse:
    return JSONResponse({"status": "healthy", "service": "bench-upstream"})


async def echo(ws: WebSocket) -> None:
    await ws.accept()
    try:
        while True:
            await ws.send_text(await ws.receive_text())
    except WebSocketDisconnect:
        pass


app = Starlette(routes=[Route("/health", health), WebSocketRoute("/ws", echo)])
