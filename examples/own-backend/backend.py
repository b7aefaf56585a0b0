"""A team's backend (not a simstack stand-in): an agent API whose WebSocket registers each connection
in Redis before the connection can be sent to.

Two builds, chosen by ``BUILD`` (``racy`` or ``fixed``; default ``fixed``):

- ``racy`` starts handling before the registration round trip to Redis returns: it sends its welcome
  ``WELCOME_AFTER_S`` after accept and reads the client's frames, and every frame to a client is routed
  through the registry. While Redis answers in time, nothing shows; when the link to Redis is slow,
  the lookup fails and the generic handler closes 1011 "Internal error" - the staging bug.
- ``fixed`` registers first and queues inbound frames until it is ready.

Run: ``BUILD=racy REDIS_URL=redis://127.0.0.1:6379 uvicorn backend:app --port 9000``.
"""
from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import uuid
from datetime import datetime, timezone

import redis.asyncio as aioredis
from fastapi import FastAPI, WebSocket, WebSocketDisconnect

BUILD = os.environ.get("BUILD", "fixed")
WELCOME_AFTER_S = 0.2
EVENTS = ("agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_completed")
log = logging.getLogger("backend")

app = FastAPI()
store = aioredis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379"), socket_timeout=10,
                           lib_name=None, lib_version=None)
registry: dict[str, str] = {}    # connection id -> user id, for this process


class NotRegistered(KeyError):
    pass


def now() -> str:
    return datetime.now(timezone.utc).isoformat()


@app.get("/health")
async def health() -> dict:
    return {"status": "healthy", "service": "own-backend", "build": BUILD}


def user_of(ws: WebSocket) -> str | None:
    """The token's ``sub`` (Authorization, then the ``jwt.`` subprotocol entry); signature unchecked."""
    token = ws.headers.get("authorization", "").removeprefix("Bearer ").strip()
    if not token:
        entries = [p.strip() for p in ws.headers.get("sec-websocket-protocol", "").split(",")]
        token = next((base64.urlsafe_b64decode(p[4:] + "==").decode() for p in entries if p.startswith("jwt.")), "")
    try:
        claims = token.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))["sub"]
    except (IndexError, ValueError, KeyError):
        return None


async def register(conn_id: str, user: str) -> None:
    """One round trip to Redis; the connection can be sent to once it returns."""
    await store.hset(f"conn:{conn_id}", mapping={"user": user, "since": now()})
    registry[conn_id] = user


async def send(ws: WebSocket, conn_id: str, message: dict) -> None:
    if conn_id not in registry:
        raise NotRegistered(conn_id)
    await ws.send_text(json.dumps({**message, "timestamp": now()}))


async def welcome(ws: WebSocket, conn_id: str) -> None:
    await send(ws, conn_id, {"type": "system_message",
                             "data": {"event": "connection_established", "connection_id": conn_id}})


async def handle(ws: WebSocket, conn_id: str, text: str) -> None:
    try:
        msg = json.loads(text)
    except ValueError:
        msg = {}
    kind = msg.get("type") if isinstance(msg, dict) else None
    if kind == "ping":
        await send(ws, conn_id, {"type": "pong"})
    elif kind in ("start_agent", "user_message"):
        run_id = f"run_{uuid.uuid4().hex[:8]}"
        for event in EVENTS:
            await send(ws, conn_id, {"type": event, "run_id": run_id})
    else:
        await send(ws, conn_id, {"type": "error", "message": f"Unknown or invalid message type: {kind}"})


@app.websocket("/ws")
async def websocket(ws: WebSocket) -> None:
    user = user_of(ws)
    if user is None:
        await ws.close(1008)          # before accept: the client sees HTTP 403
        return
    await ws.accept()
    conn_id = f"conn_{uuid.uuid4().hex[:12]}"
    try:
        if BUILD == "racy":
            registration = asyncio.create_task(register(conn_id, user))   # not awaited: the bug
            await asyncio.sleep(WELCOME_AFTER_S)
            await welcome(ws, conn_id)
            while True:
                await handle(ws, conn_id, await ws.receive_text())
        else:
            inbound: asyncio.Queue[str] = asyncio.Queue()

            async def read() -> None:
                while True:
                    inbound.put_nowait(await ws.receive_text())

            reader = asyncio.create_task(read())
            try:
                await register(conn_id, user)                           # the fix: register first
                await welcome(ws, conn_id)
                while True:
                    getter = asyncio.ensure_future(inbound.get())
                    done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
                    if getter not in done:
                        getter.cancel()
                        reader.result()
                    await handle(ws, conn_id, getter.result())
            finally:
                reader.cancel()
    except WebSocketDisconnect:
        pass
    except Exception:                                                   # the generic handler
        log.exception("connection %s failed", conn_id)
        await ws.close(1011, "Internal error")
    finally:
        if BUILD == "racy":
            registration.cancel()
        registry.pop(conn_id, None)
