"""The team's e2e checks: health over HTTP, and an agent run over the WebSocket."""
import asyncio
import json

import httpx
from websockets.asyncio.client import connect

EVENTS = ["agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_completed"]


def test_health(api_url):
    r = httpx.get(f"{api_url}/health", timeout=5, trust_env=False)
    assert r.status_code == 200 and r.json()["status"] == "healthy"


async def test_agent_run_delivers_all_five_events(ws_url, token):
    headers = {"Authorization": f"Bearer {token}", "X-E2E-Test": "true"}
    async with connect(ws_url, additional_headers=headers, open_timeout=5, proxy=None) as ws:
        await ws.send(json.dumps({"type": "start_agent", "payload": {"user_request": "analyse my spend"}}))
        seen = []
        while "agent_completed" not in seen:
            seen.append(json.loads(await asyncio.wait_for(ws.recv(), 5))["type"])
    assert [t for t in seen if t in EVENTS] == EVENTS
