"""The WebSocket at /ws: connect, ping, the agent event flow, concurrency, bad frames (CONTRACT §4).

No test here falls back to canned data: a closed socket fails the test with the client's own error."""
from __future__ import annotations

import asyncio
import json
import uuid

import httpx

from e2e_client import (AGENT_EVENTS, is_iso, open_ws, quality, recv_until, run_agent,
                        start_agent)


def check_event_fields(events: list[dict], thread_id: str | None = None) -> None:
    assert [e["type"] for e in events] == AGENT_EVENTS
    run_ids = {e["run_id"] for e in events}
    assert len(run_ids) == 1 and run_ids != {None}
    for e in events:
        assert is_iso(e["timestamp"]), e
        assert e["agent_name"] and e["agent"] == e["agent_name"] and e["user_id"], e
        assert isinstance(e["payload"], dict) and e["data"] == e["payload"], e
        if thread_id:
            assert e["thread_id"] == thread_id
        else:
            assert e["thread_id"]
    by_type = {e["type"]: e for e in events}
    executing, completed, final = by_type["tool_executing"], by_type["tool_completed"], by_type["agent_completed"]
    assert executing["tool"] and executing["payload"]["tool_name"] == executing["tool"]
    assert isinstance(executing["payload"]["parameters"], dict)
    assert isinstance(completed["result"], str) and len(completed["result"]) > 50
    assert any(w in completed["result"].lower() for w in ("metrics", "analysis", "insights", "patterns"))
    assert completed["payload"]["result"] and completed["payload"]["results"]
    assert isinstance(final["response"], str) and len(final["response"]) > 100
    assert final["payload"]["final_response"]


async def test_connect_and_ping(target, token):
    async with open_ws(target.ws_url, token) as ws:
        assert ws.response.status_code == 101
        assert ws.subprotocol is None
        await ws.send(json.dumps({"type": "ping", "timestamp": 1}))
        frames = await recv_until(ws, "pong")
        assert frames[-1]["type"] == "pong"
        await ws.ping()


async def test_start_agent_streams_the_five_events(target, token):
    thread_id = f"thread_e2e_{uuid.uuid4().hex[:8]}"
    async with open_ws(target.ws_url, token) as ws:
        events = await run_agent(ws, start_agent("Analyze my AI costs and suggest optimizations",
                                                 "unified_data_agent", thread_id))
    check_event_fields(events, thread_id)
    assert events[0]["agent_name"] == "unified_data_agent"


async def test_user_message_streams_the_five_events(target, token):
    async with open_ws(target.ws_url, token) as ws:
        events = await run_agent(ws, {"type": "user_message", "content": "How can I reduce my model spend?"})
    check_event_fields(events)


async def test_seven_concurrent_connections_each_get_their_run(target, token):
    async def one(i: int) -> list[dict]:
        async with open_ws(target.ws_url, token) as ws:
            return await run_agent(ws, start_agent(f"Concurrent request {i}: optimize latency"))

    runs = await asyncio.gather(*(one(i) for i in range(7)))
    for events in runs:
        check_event_fields(events)
    assert len({events[0]["run_id"] for events in runs}) == 7


async def test_invalid_frames_are_answered_without_closing(target, token):
    bad = ['{"type": "no_such_type"}', '{"payload": {}}', "not json at all", '{"type": ""}']
    async with open_ws(target.ws_url, token) as ws:
        for text in bad:
            await ws.send(text)
            frames = await recv_until(ws, "error", timeout=2.0)
            error = frames[-1]
            assert error["error_code"] == "INVALID_MESSAGE", error
            assert error["message"].startswith("Unknown or invalid message type"), error
        await ws.send(json.dumps({"type": "get_agent_status"}))
        status = await recv_until(ws, "agent_status")
        assert status[-1]["status"] == "idle"


async def test_unknown_agent_gets_an_error_then_close_1008(target, token):
    async with open_ws(target.ws_url, token) as ws:
        await ws.send(json.dumps(start_agent("Run something", "nonexistent_agent")))
        frames = await recv_until(ws, "error")
        assert frames[-1]["error_code"] == "AGENT_NOT_FOUND"
        assert "nonexistent_agent" in frames[-1]["message"]
        await ws.wait_closed()
    assert ws.close_code == 1008


async def test_pipeline_final_response_reads_like_an_analysis(target, token):
    async with httpx.AsyncClient(base_url=target.api_url, timeout=10.0) as http:
        accepted = await http.post("/api/agents/execute", json={"agent_type": "optimization_agent",
                                                                "message": "Optimize my inference costs"})
    assert accepted.status_code == 200 and accepted.json()["success"] is True
    async with open_ws(target.ws_url, token) as ws:
        events = await run_agent(ws, start_agent("Optimize my inference costs", "optimization_agent"))
    check_event_fields(events)
    score = quality(events[-1]["response"])
    assert score["length"] > 100
    assert len(score["words"]) >= 4, score
    assert score["numbered"] >= 2, score
