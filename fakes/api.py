"""The ``api`` stand-in: staging's backend HTTP API and its WebSocket at /ws.

Serve with ``python -m uvicorn simstack.fakes.api:app``; test in-process with Starlette's TestClient.
"""
from __future__ import annotations

from . import httpapi, ws
from .common import create_app
from .lifecycle import Registry

app = create_app("api", targets=("api", "ws"))
app.state.registry = Registry()
app.state.policy = ws.policy_from_env()
app.include_router(httpapi.router())
app.add_api_websocket_route("/ws", ws.websocket_endpoint)
