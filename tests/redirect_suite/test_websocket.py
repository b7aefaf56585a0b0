"""The agent run over the WebSocket, as the staging suites do it."""
import asyncio
import base64
import json

from websockets.asyncio.client import connect

from acme_staging import endpoints
from acme_staging.client import E2E_HEADERS

EVENTS = ["agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_completed"]


def _headers(token: str) -> dict:
    raw = base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")
    return {"Authorization": f"Bearer {token}", "sec-websocket-protocol": f"jwt.{raw}", **E2E_HEADERS}


async def _agent_run(token: str) -> list[str]:
    async with connect(endpoints.WS_URL, additional_headers=_headers(token), open_timeout=10, close_timeout=5) as ws:
        await ws.send(json.dumps({"type": "start_agent", "payload": {"user_request": "Analyze my AI costs"}}))
        seen = []
        while "agent_completed" not in seen:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if frame["type"] in EVENTS:
                seen.append(frame["type"])
        return seen


def test_agent_run_reports_all_events(token):
    assert asyncio.run(_agent_run(token)) == EVENTS


def test_ping_gets_pong(token):
    async def ping():
        async with connect(endpoints.WS_URL, additional_headers=_headers(token), open_timeout=10) as ws:
            await ws.send(json.dumps({"type": "ping"}))
            while True:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if frame["type"] == "pong":
                    return frame
    assert asyncio.run(ping())["type"] == "pong"
