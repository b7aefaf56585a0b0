"""WebSocket helpers of the e2e suite: connect like the staging suites do, read frames, score answers."""
from __future__ import annotations

import asyncio
import base64
import json
import re
from datetime import datetime

from websockets.asyncio.client import ClientConnection, connect

AGENT_EVENTS = ["agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_completed"]
WELCOME = {"handshake_validation", "ping", "system_message"}   # tolerated, never required
FRAME_TIMEOUT_S = 10.0
QUALITY_WORDS = ("performance", "cost", "efficiency", "optimization", "insights", "recommendation")


def headers(token: str | None) -> dict[str, str]:
    h = {"X-E2E-Test": "true", "X-Test-Type": "E2E", "X-Test-Environment": "staging"}
    if token:
        b64 = base64.urlsafe_b64encode(token.encode()).rstrip(b"=").decode()
        h.update({"Authorization": f"Bearer {token}", "sec-websocket-protocol": f"jwt.{b64}"})
    return h


def open_ws(ws_url: str, token: str | None):
    return connect(ws_url, additional_headers=headers(token), open_timeout=10, close_timeout=5, ping_interval=20)


async def recv_json(ws: ClientConnection, timeout: float = FRAME_TIMEOUT_S) -> dict:
    frame = json.loads(await asyncio.wait_for(ws.recv(), timeout))
    assert isinstance(frame, dict) and isinstance(frame.get("type"), str), f"frame without a type: {frame!r}"
    assert "timestamp" in frame, f"frame without a timestamp: {frame!r}"
    return frame


async def recv_until(ws: ClientConnection, wanted: str, timeout: float = FRAME_TIMEOUT_S) -> list[dict]:
    """Frames up to and including the first of type ``wanted``."""
    frames = []
    while True:
        frames.append(await recv_json(ws, timeout))
        if frames[-1]["type"] == wanted:
            return frames


async def run_agent(ws: ClientConnection, message: dict) -> list[dict]:
    """Send one request; return its agent events (welcome frames are dropped)."""
    await ws.send(json.dumps(message))
    frames = await recv_until(ws, "agent_completed")
    return [f for f in frames if f["type"] in AGENT_EVENTS]


def start_agent(request: str, agent_type: str | None = None, thread_id: str | None = None) -> dict:
    payload = {"user_request": request}
    if agent_type:
        payload["agent_type"] = agent_type
    msg = {"type": "start_agent", "payload": payload}
    if thread_id:
        msg["thread_id"] = thread_id
    return msg


def is_iso(ts) -> bool:
    try:
        datetime.fromisoformat(str(ts).replace("Z", "+00:00"))
        return True
    except ValueError:
        return False


def quality(response: str) -> dict:
    """How the staging suites score a final answer: topic words and numbered recommendations."""
    text = response.lower()
    return {"length": len(response), "words": sorted(w for w in QUALITY_WORDS if w in text),
            "numbered": len(re.findall(r"(?:^|\s)\d\.\s", response))}
