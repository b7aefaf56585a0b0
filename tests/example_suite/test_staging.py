"""Two tests as teams write them, including the bad habit simstack must catch: falling back to
canned data when the WebSocket fails, so the test passes without the server."""
import json
import os

import httpx
from websockets.exceptions import WebSocketException
from websockets.sync.client import connect

from staging_config import JWT_ENV, STAGING

EVENTS = ["agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_completed"]
CANNED_EVENTS = [{"type": t} for t in EVENTS]   # "so the suite stays green when staging is flaky"


def agent_events(request: str) -> list[dict]:
    token = os.environ.get(JWT_ENV, "")
    try:
        with connect(STAGING.ws_url, open_timeout=10, close_timeout=5,
                     additional_headers={"Authorization": f"Bearer {token}", "X-E2E-Test": "true"}) as ws:
            ws.send(json.dumps({"type": "start_agent", "payload": {"user_request": request}}))
            events = []
            while not events or events[-1]["type"] != "agent_completed":
                frame = json.loads(ws.recv(timeout=10))
                if frame["type"] in EVENTS:
                    events.append(frame)
            return events
    except (OSError, TimeoutError, WebSocketException):
        return CANNED_EVENTS


def test_health():
    r = httpx.get(STAGING.health_url, timeout=10)
    assert r.status_code == 200
    assert r.json()["status"] == "healthy"


def test_agent_run_reports_all_events():
    events = agent_events("Analyze my AI costs")
    assert [e["type"] for e in events] == EVENTS
