"""Client-side helpers for the contract and fault tests: real sockets through
Toxiproxy, short timeouts, and the vocabulary of CONTRACT §4 written out here
(not imported from ``fakes``) so the tests check the stand-ins against the spec.
"""
from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from simstack.fakes import tokens

E2E_HEADERS = {"X-E2E-Test": "true", "X-Test-Type": "E2E", "X-Test-Environment": "staging"}
WELCOME = ("handshake_validation", "ping", "system_message")
AGENT_EVENTS = ("agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_completed")
SUITE_SECRET = "a-secret-simstack-does-not-know"


def mint(sub: str, secret: str = SUITE_SECRET, **overrides) -> str:
    """A token as suites mint their own: a secret simstack does not know, no ``aud``."""
    claims = tokens.decode(tokens.mint(sub, f"{sub}@suite.test", secret))
    return tokens.encode({**claims, **overrides}, secret)


def http(base_url: str, timeout: float = 2.0) -> httpx.Client:
    return httpx.Client(base_url=base_url, timeout=timeout, trust_env=False, follow_redirects=False)


def connect_ws(stack, token: str | None = None, *, e2e: bool = True, query: str | None = None,
               headers: dict | None = None, subprotocols: list[str] | None = None, open_timeout: float = 2.0):
    """``async with connect_ws(stack, token) as ws``: Authorization + E2E headers, like the suites."""
    h = dict(E2E_HEADERS) if e2e else {}
    if token:
        h["Authorization"] = f"Bearer {token}"
    h.update(headers or {})
    url = stack.endpoints.ws_url + (f"?token={query}" if query else "")
    return connect(url, additional_headers=h, subprotocols=subprotocols, open_timeout=open_timeout,
                   close_timeout=2)


async def recv_json(ws, timeout: float = 2.0) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def send_json(ws, message: dict) -> None:
    await ws.send(json.dumps(message))


async def recv_type(ws, mtype: str, timeout: float = 2.0) -> tuple[dict, list[dict]]:
    """The first frame of ``mtype``, and the frames before it."""
    before = []
    while True:
        frame = await recv_json(ws, timeout)
        if frame.get("type") == mtype:
            return frame, before
        before.append(frame)


async def run_agent(ws, message: dict | None = None, timeout: float = 2.0) -> list[dict]:
    """Send ``message`` (a start_agent by default) and return every non-welcome frame
    up to and including agent_completed."""
    await send_json(ws, message or start_agent())
    frames = []
    while not frames or frames[-1].get("type") not in ("agent_completed", "error"):
        frame = await recv_json(ws, timeout)
        if frame.get("type") not in WELCOME:
            frames.append(frame)
    return frames


async def frames_until_silence(ws, timeout: float) -> list[dict]:
    """Every frame until none arrives for ``timeout`` seconds (the socket stays open)."""
    frames = []
    while True:
        try:
            frames.append(await recv_json(ws, timeout))
        except asyncio.TimeoutError:
            return frames


async def closed_by_server(ws, timeout: float = 3.0) -> tuple[ConnectionClosed, list[dict]]:
    """Read until the server ends the connection; the exception and the frames before it."""
    frames = []
    while True:
        try:
            frames.append(await recv_json(ws, timeout))
        except ConnectionClosed as exc:
            return exc, frames


def start_agent(request: str = "Analyse my AI spend and suggest optimizations", **payload) -> dict:
    return {"type": "start_agent", "payload": {"user_request": request, **payload}}


def is_iso_utc(value) -> bool:
    try:
        ts = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return False
    return ts.utcoffset() == timedelta(0)
