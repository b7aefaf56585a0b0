"""CONTRACT §4: the WebSocket at /ws, through its Toxiproxy listener."""
from __future__ import annotations

import asyncio
import base64
import json
import re

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from standin_client import (AGENT_EVENTS, E2E_HEADERS, WELCOME, closed_by_server, connect_ws, is_iso_utc, mint, recv_json,
                            recv_type, run_agent, send_json, start_agent)

# What the stand-ins answer does not depend on how they run: checked once, against local processes.
pytestmark = pytest.mark.mode_independent

KNOWN_AGENTS = ("supervisor_agent", "unified_data_agent", "optimization_agent")
ANALYSIS_WORDS = ("metrics", "analysis", "insights", "patterns")
RECOMMENDATION_WORDS = ("performance", "cost", "efficiency", "optimization", "insights")


def jwt_entry(token: str) -> str:
    return "jwt." + base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")


async def connected_user(ws) -> str:
    """The user the server authenticated, as its connection_established frame reports it."""
    frame, _ = await recv_type(ws, "system_message")
    return frame["data"]["user_id"]


# ---------------------------------------------------------------- connection and auth

async def test_authorization_header_wins_over_subprotocol_and_query(stack):
    raw = {"sec-websocket-protocol": jwt_entry(mint("e2e-from-subprotocol"))}
    async with connect_ws(stack, mint("e2e-from-header"), headers=raw, query=mint("e2e-from-query")) as ws:
        assert await connected_user(ws) == "e2e-from-header"


async def test_subprotocol_jwt_entry_is_used_without_authorization_and_wins_over_query(stack):
    raw = {"sec-websocket-protocol": jwt_entry(mint("e2e-from-subprotocol"))}
    async with connect_ws(stack, headers=raw, query=mint("e2e-from-query")) as ws:
        assert await connected_user(ws) == "e2e-from-subprotocol"


async def test_query_token_is_used_last(stack):
    async with connect_ws(stack, query=mint("e2e-from-query")) as ws:
        assert await connected_user(ws) == "e2e-from-query"


async def test_no_subprotocol_is_echoed_when_jwt_auth_is_not_offered(stack, token):
    # Offered as a raw header, the way suites do: websockets itself aborts if one is echoed.
    raw = {"sec-websocket-protocol": jwt_entry(token)}
    async with connect_ws(stack, token, headers=raw) as ws:
        assert ws.subprotocol is None
        assert "sec-websocket-protocol" not in ws.response.headers
        assert await connected_user(ws)
    async with connect_ws(stack, token, subprotocols=[jwt_entry(token)]) as ws:
        assert ws.subprotocol is None


async def test_jwt_auth_is_echoed_when_offered(stack, token):
    async with connect_ws(stack, token, subprotocols=["jwt-auth", jwt_entry(token)]) as ws:
        assert ws.subprotocol == "jwt-auth"
        assert await connected_user(ws)


async def test_upgrade_without_a_token_is_403(stack):
    with pytest.raises(InvalidStatus) as info:
        async with connect_ws(stack, None):
            pass
    assert info.value.response.status_code == 403


async def test_lenient_policy_accepts_a_suite_minted_token_only_with_e2e_headers(stack):
    foreign = mint("e2e-suite-minted")
    async with connect_ws(stack, foreign) as ws:
        assert await connected_user(ws) == "e2e-suite-minted"
    with pytest.raises(InvalidStatus) as info:
        async with connect_ws(stack, foreign, e2e=False):
            pass
    assert info.value.response.status_code == 403


async def test_welcome_sequence_is_handshake_ping_then_connection_established(stack, token):
    async with connect_ws(stack, token) as ws:
        frames = [await recv_json(ws) for _ in WELCOME]
    assert [f["type"] for f in frames] == list(WELCOME)
    assert all("timestamp" in f for f in frames)
    data = frames[2]["data"]
    assert data["event"] == "connection_established"
    assert data["connection_id"] and data["connection_ready"] is True


async def test_a_client_that_sends_before_reading_the_welcome_is_served(stack, token):
    async with connect_ws(stack, token) as ws:
        await send_json(ws, {"type": "ping"})
        pong, before = await recv_type(ws, "pong")
        assert [f["type"] for f in before] == list(WELCOME)[:len(before)]


async def test_ping_gets_pong(stack, token):
    async with connect_ws(stack, token) as ws:
        await send_json(ws, {"type": "ping", "timestamp": 1})
        pong, _ = await recv_type(ws, "pong")
    assert pong["timestamp"]


async def test_protocol_level_ping_is_answered(stack, token):
    async with connect_ws(stack, token) as ws:
        await asyncio.wait_for(await ws.ping(), 2)


async def test_the_api_listener_serves_the_websocket_too(stack, token):
    """§1: the api host serves the HTTP API and /ws on the same host:port."""
    url = stack.endpoints.api_url.replace("http://", "ws://") + "/ws"
    async with connect(url, additional_headers={**E2E_HEADERS, "Authorization": f"Bearer {token}"},
                       open_timeout=2) as ws:
        assert [e["type"] for e in await run_agent(ws)] == list(AGENT_EVENTS)


async def test_close_handshake_completes(stack, token):
    async with connect_ws(stack, token) as ws:
        await recv_type(ws, "system_message")
        await ws.close()
        assert ws.close_code == 1000
        assert ws.protocol.close_rcvd is not None and ws.protocol.close_rcvd.code == 1000


# ---------------------------------------------------------------- agent runs

def check_event(e: dict, kind: str) -> None:
    assert e["type"] == kind
    assert is_iso_utc(e["timestamp"]), e["timestamp"]
    for key in ("run_id", "thread_id", "agent_name", "agent", "user_id"):
        assert isinstance(e[key], str) and e[key], (kind, key)
    assert e["agent"] == e["agent_name"]
    assert isinstance(e["payload"], dict) and e["payload"]
    assert e["data"] == e["payload"]
    if kind == "tool_executing":
        assert e["tool"] and e["payload"]["tool_name"] == e["tool"]
        assert isinstance(e["payload"]["parameters"], dict)
    if kind == "tool_completed":
        assert isinstance(e["result"], str) and len(e["result"]) > 50
        assert any(w in e["result"].lower() for w in ANALYSIS_WORDS)
        assert e["payload"]["result"] and e["payload"]["results"]
    if kind == "agent_completed":
        response = e["response"]
        assert isinstance(response, str) and len(response) > 100
        assert all(w in response.lower() for w in RECOMMENDATION_WORDS)
        assert re.search(r"\b1\.\s.*\b2\.\s", response), "numbered recommendations"
        assert e["payload"]["final_response"] == response


def check_run(events: list[dict], user_id: str) -> None:
    assert [e["type"] for e in events] == list(AGENT_EVENTS)
    for e in events:
        check_event(e, e["type"])
    assert len({(e["run_id"], e["thread_id"], e["agent_name"], e["user_id"]) for e in events}) == 1
    assert events[0]["user_id"] == user_id


@pytest.mark.parametrize("agent_type", [None, *KNOWN_AGENTS])
async def test_start_agent_gives_the_five_events_in_order_with_every_field(stack, agent_type):
    extra = {"agent_type": agent_type} if agent_type else {}
    async with connect_ws(stack, mint("e2e-runner")) as ws:
        events = await run_agent(ws, {**start_agent(**extra), "thread_id": "thread-from-client"})
    check_run(events, "e2e-runner")
    assert events[0]["agent_name"] == (agent_type or "supervisor_agent")
    assert events[0]["thread_id"] == "thread-from-client"


@pytest.mark.parametrize("mtype", ["user_message", "chat", "message"])
async def test_chat_messages_give_the_five_events(stack, mtype):
    async with connect_ws(stack, mint("e2e-chatter")) as ws:
        events = await run_agent(ws, {"type": mtype, "content": "What drives my AI cost?"})
    check_run(events, "e2e-chatter")


async def test_get_agent_status_answers_agent_status(stack, token):
    async with connect_ws(stack, token) as ws:
        await send_json(ws, {"type": "get_agent_status"})
        status, _ = await recv_type(ws, "agent_status")
    assert status["status"] == "idle" and status["timestamp"]


async def test_agent_status_is_running_during_a_run(stack, token):
    stack.faults.add("delayed_events", delay_ms=300)     # keeps the run going while we ask
    async with connect_ws(stack, token) as ws:
        await send_json(ws, start_agent())
        await send_json(ws, {"type": "get_agent_status"})
        status, _ = await recv_type(ws, "agent_status")
        assert status["status"] == "running"
        await recv_type(ws, "agent_completed", timeout=3)


async def test_two_runs_on_one_socket_each_complete(stack, token):
    async with connect_ws(stack, token) as ws:
        first = await run_agent(ws)
        second = await run_agent(ws, {"type": "chat", "content": "and now?"})
    assert [e["type"] for e in first] == [e["type"] for e in second] == list(AGENT_EVENTS)
    assert first[0]["run_id"] != second[0]["run_id"]


# ---------------------------------------------------------------- bad frames

INVALID_FRAMES = {
    "not-json": "this is not json",
    "json-array": "[1, 2]",
    "missing-type": json.dumps({"payload": {"user_request": "x"}}),
    "unknown-type": json.dumps({"type": "launch_rockets"}),
    "empty-type": json.dumps({"type": ""}),
    "start-agent-empty-request": json.dumps({"type": "start_agent", "payload": {"user_request": ""}}),
    "start-agent-no-payload": json.dumps({"type": "start_agent"}),
    "user-message-empty-content": json.dumps({"type": "user_message", "content": ""}),
    "binary-garbage": b"\x00\xff\x10 not text",
}


@pytest.mark.parametrize("frame", INVALID_FRAMES.values(), ids=INVALID_FRAMES.keys())
async def test_invalid_frame_gets_invalid_message_error_and_socket_stays_open(stack, token, frame):
    async with connect_ws(stack, token) as ws:
        await ws.send(frame)
        error, _ = await recv_type(ws, "error", timeout=2.0)
        assert error["error_code"] == "INVALID_MESSAGE"
        assert error["message"].startswith("Unknown or invalid message type")
        assert error["timestamp"]
        await send_json(ws, {"type": "ping"})
        assert (await recv_type(ws, "pong"))[0]["type"] == "pong"


async def test_unknown_agent_gets_agent_not_found_then_close_1008(stack, token):
    async with connect_ws(stack, token) as ws:
        await send_json(ws, start_agent(agent_type="nonexistent_agent"))
        closed, frames = await closed_by_server(ws)
    errors = [f for f in frames if f["type"] == "error"]
    assert len(errors) == 1
    assert errors[0]["error_code"] == "AGENT_NOT_FOUND"
    assert errors[0]["message"] == "Agent 'nonexistent_agent' not found"
    assert not any(f["type"] in AGENT_EVENTS for f in frames)
    assert closed.rcvd is not None and closed.rcvd.code == 1008


# ---------------------------------------------------------------- the staging profile

async def test_staging_profile_serves_the_same_sequence(staging_stack):
    """Structure only: the profile changes when frames arrive, not which or in what order."""
    token = staging_stack.token()
    async with connect_ws(staging_stack, token, open_timeout=5) as ws:
        welcome = [await recv_json(ws, timeout=3) for _ in WELCOME]
        events = await run_agent(ws, timeout=3)
        await send_json(ws, {"type": "ping"})
        pong, _ = await recv_type(ws, "pong", timeout=3)
    assert [f["type"] for f in welcome] == list(WELCOME)
    check_run(events, welcome[2]["data"]["user_id"])
    assert pong["timestamp"]

