"""CONTRACT §6: every protocol fault kind, applied by the stand-ins, gives its client signature.

Each test applies a fault to the running stack through ``stack.faults`` and
checks what a client sees over real sockets through Toxiproxy. No timing
assertions: time only appears as client timeouts, the way suites see it.
"""
from __future__ import annotations

import asyncio
import contextlib
import time

import httpx
import pytest
from websockets.exceptions import ConnectionClosedError, InvalidStatus

from standin_client import (AGENT_EVENTS, WELCOME, closed_by_server, connect_ws, frames_until_silence, http, mint,
                            recv_json, recv_type, run_agent, send_json, start_agent)

STAGING_1011 = "received 1011 (internal error) Internal error; then sent 1011 (internal error) Internal error"


async def upgrade_status(stack, token) -> int:
    with pytest.raises(InvalidStatus) as info:
        async with connect_ws(stack, token):
            pass
    return info.value.response.status_code


async def outcome(stack, token) -> str:
    """One connection: ``ok`` if a frame arrives, ``dropped`` if it ends with no close frame."""
    async with connect_ws(stack, token) as ws:
        try:
            await recv_json(ws)
            return "ok"
        except ConnectionClosedError as exc:
            assert exc.rcvd is None and exc.sent is None, exc
            return "dropped"


# ---------------------------------------------------------------- the headline 1011 and its explanations

@pytest.mark.parametrize("client_sends_first", [False, True], ids=["silent-client", "client-sends-first"])
async def test_race_on_accept_closes_1011_internal_error_with_no_frame_before(stack, token, client_sends_first):
    stack.faults.add("race_on_accept")
    async with connect_ws(stack, token) as ws:          # HTTP 101: the upgrade succeeds
        if client_sends_first:
            with contextlib.suppress(ConnectionClosedError):
                await send_json(ws, start_agent())
        with pytest.raises(ConnectionClosedError) as info:
            await recv_json(ws)                         # the very first recv: zero frames
    assert info.value.rcvd.code == 1011
    assert info.value.rcvd.reason == "Internal error"
    assert str(info.value) == STAGING_1011


async def test_race_on_accept_fixed_registers_first_and_queues_early_frames(stack, token):
    stack.faults.add("race_on_accept", fixed=True, register_delay_ms=300)
    async with connect_ws(stack, token) as ws:
        await send_json(ws, start_agent())              # sent while registration is still running
        frames = [await recv_json(ws) for _ in range(len(WELCOME) + len(AGENT_EVENTS))]
    assert [f["type"] for f in frames] == [*WELCOME, *AGENT_EVENTS]


async def test_setup_error_closes_1011_for_e2e_users_even_with_the_race_fixed(stack, token):
    stack.faults.apply([{"kind": "race_on_accept", "params": {"fixed": True, "register_delay_ms": 0}},
                        {"kind": "setup_error"}])
    async with connect_ws(stack, token) as ws:          # stack tokens are for e2e-… users
        with pytest.raises(ConnectionClosedError) as info:
            await recv_json(ws)
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (1011, "Internal error")


async def test_setup_error_with_a_user_trigger_spares_users_whose_id_does_not_match(stack):
    stack.faults.add("setup_error", trigger={"user": "^e2e-"})
    async with connect_ws(stack, mint("alice-1234")) as ws:
        events = await run_agent(ws)
    assert [e["type"] for e in events] == list(AGENT_EVENTS)


# ---------------------------------------------------------------- HTTP faults

@pytest.mark.parametrize("target", ["api", "auth"])
def test_health_hang_gives_a_read_timeout_while_other_paths_answer(stack, target):
    stack.faults.add("health_hang", target=target, hold_s=3)
    base = stack.endpoints.api_url if target == "api" else stack.endpoints.auth_url
    with http(base, timeout=0.5) as client:
        with pytest.raises(httpx.ReadTimeout):
            client.get("/health")
    with http(base, timeout=2) as client:
        assert client.get("/health/ready").status_code == 200


def test_slow_ready_answers_only_after_its_delay(stack):
    stack.faults.add("slow_ready", delay_s=1.0)
    with http(stack.endpoints.api_url, timeout=0.3) as impatient:
        with pytest.raises(httpx.ReadTimeout):
            impatient.get("/health/ready")
        assert impatient.get("/health").status_code == 200      # only readiness is slow
    with http(stack.endpoints.api_url, timeout=5) as patient:
        r = patient.get("/health/ready")
    assert r.status_code == 200 and r.json()["status"] == "ready"


async def test_cold_start_gives_503_with_retry_after_until_its_window_ends(stack, token):
    window = 2.0
    trigger = {"window": [0, window]}
    stack.faults.apply([{"kind": "cold_start", "target": t, "trigger": trigger, "params": {"retry_after_s": 7}}
                        for t in ("api", "ws", "auth")])
    window_ends = time.monotonic() + window
    with http(stack.endpoints.api_url) as api, http(stack.endpoints.auth_url) as auth:
        for r in (api.get("/health"), api.get("/api/mcp/servers"), auth.get("/health")):
            assert r.status_code == 503
            assert r.headers["retry-after"] == "7"
            assert r.json()["error_code"] == "SERVICE_UNAVAILABLE" and r.json()["detail"]
    with pytest.raises(InvalidStatus) as info:
        async with connect_ws(stack, token):
            pass
    assert info.value.response.status_code == 503
    assert info.value.response.headers["Retry-After"] == "7"

    await asyncio.sleep(max(0.0, window_ends - time.monotonic()) + 0.2)
    with http(stack.endpoints.api_url) as api:
        assert api.get("/health").status_code == 200
    async with connect_ws(stack, token) as ws:
        assert [e["type"] for e in await run_agent(ws)] == list(AGENT_EVENTS)


def test_status_override_answers_its_status_on_matching_path_and_method_only(stack):
    fault = stack.faults.add("status_override", path="/api/agents*", method="GET", status=503)
    with http(stack.endpoints.api_url) as api:
        for path in ("/api/agents", "/api/agents/list"):
            r = api.get(path)
            assert r.status_code == 503
            assert r.json()["error_code"] and fault.id in str(r.json())
        assert api.post("/api/agents/execute", json={}).status_code == 422   # other method: normal answer
        assert api.get("/api/mcp/servers").status_code == 200              # other path
        assert api.get("/health").status_code == 200


def test_status_override_on_auth(stack):
    stack.faults.add("status_override", target="auth", path="/auth/*", status=500)
    with http(stack.endpoints.auth_url) as auth:
        r = auth.post("/auth/e2e/test-auth", headers={"X-E2E-Bypass-Key": "k"}, json={})
        assert r.status_code == 500 and r.json()["error_code"]
        assert auth.get("/health").status_code == 200


# ---------------------------------------------------------------- upgrade and auth faults

async def test_auth_reject_gives_403_on_the_upgrade(stack, token):
    stack.faults.add("auth_reject")
    assert await upgrade_status(stack, token) == 403


async def test_upgrade_exception_gives_500_on_the_upgrade(stack, token):
    stack.faults.add("upgrade_exception")
    assert await upgrade_status(stack, token) == 500


async def test_auth_after_accept_sends_error_message_then_closes_1008(stack, token):
    stack.faults.add("auth_after_accept", reason="Token has been revoked")
    async with connect_ws(stack, token) as ws:
        closed, frames = await closed_by_server(ws)
    assert [f["type"] for f in frames] == ["error_message"]
    assert "revoked" in frames[0]["message"]
    assert closed.rcvd.code == 1008


async def test_jwt_secret_mismatch_before_accept_gives_403(stack, token):
    stack.faults.add("jwt_secret_mismatch", placement="before_accept", api_secret="rotated")
    assert await upgrade_status(stack, token) == 403


async def test_jwt_secret_mismatch_after_accept_gives_error_message_then_1008(stack, token):
    stack.faults.add("jwt_secret_mismatch", placement="after_accept", api_secret="rotated")
    async with connect_ws(stack, token) as ws:
        closed, frames = await closed_by_server(ws)
    assert [f["type"] for f in frames] == ["error_message"]
    assert "signature" in frames[0]["message"]
    assert closed.rcvd.code == 1008


@pytest.mark.parametrize("placement", ["before_accept", "after_accept"])
async def test_jwt_secret_mismatch_spares_tokens_signed_with_the_api_secret(stack, placement):
    stack.faults.add("jwt_secret_mismatch", placement=placement, api_secret="rotated")
    async with connect_ws(stack, mint("e2e-rotated", secret="rotated")) as ws:
        assert [e["type"] for e in await run_agent(ws)] == list(AGENT_EVENTS)


# ---------------------------------------------------------------- faults during a connection

async def test_drop_connection_gives_1006_without_a_close_frame(stack, token):
    stack.faults.add("drop_connection")
    async with connect_ws(stack, token) as ws:
        with pytest.raises(ConnectionClosedError) as info:
            await recv_json(ws)
        assert info.value.rcvd is None and info.value.sent is None
        assert ws.close_code == 1006


async def test_lost_events_from_agent_started_sends_no_agent_frames_and_keeps_the_socket_open(stack, token):
    stack.faults.add("lost_events", from_event="agent_started")
    async with connect_ws(stack, token) as ws:
        await send_json(ws, start_agent())
        frames = await frames_until_silence(ws, timeout=0.6)
        assert [f["type"] for f in frames] == list(WELCOME)
        await send_json(ws, {"type": "ping"})
        assert (await recv_json(ws))["type"] == "pong"


async def test_lost_events_from_agent_completed_sends_four_events_then_silence(stack, token):
    stack.faults.add("lost_events", from_event="agent_completed")
    async with connect_ws(stack, token) as ws:
        await send_json(ws, start_agent())
        frames = await frames_until_silence(ws, timeout=0.6)
    assert [f["type"] for f in frames] == [*WELCOME, *AGENT_EVENTS[:4]]


async def test_delayed_events_still_arrive_in_order(stack, token):
    stack.faults.add("delayed_events", delay_ms=100)
    async with connect_ws(stack, token) as ws:
        events = await run_agent(ws)
    assert [e["type"] for e in events] == list(AGENT_EVENTS)


async def test_late_welcome_arrives_after_a_shorter_client_timeout(stack, token):
    stack.faults.add("late_welcome", delay_ms=1500)
    async with connect_ws(stack, token) as ws:
        with pytest.raises(asyncio.TimeoutError):
            await recv_json(ws, timeout=0.5)
        frames = [await recv_json(ws, timeout=3) for _ in WELCOME]
    assert [f["type"] for f in frames] == list(WELCOME)


@pytest.mark.parametrize("close_code", [1006, 1001])
async def test_max_lifetime_ends_the_connection_with_its_close_code(stack, token, close_code):
    stack.faults.add("max_lifetime", seconds=0.5, close_code=close_code)
    async with connect_ws(stack, token) as ws:
        closed, frames = await closed_by_server(ws, timeout=3)
        assert [f["type"] for f in frames] == list(WELCOME)
        if close_code == 1006:
            assert closed.rcvd is None and ws.close_code == 1006
        else:
            assert closed.rcvd.code == close_code
            assert closed.rcvd.reason == "Maximum connection lifetime reached"


async def test_connection_cap_refuses_the_extra_connection_of_one_user_with_429(stack, token):
    stack.faults.add("connection_cap", max_connections=2)
    async with contextlib.AsyncExitStack() as open_:
        first = await open_.enter_async_context(connect_ws(stack, token))
        second = await open_.enter_async_context(connect_ws(stack, token))
        for ws in (first, second):
            await recv_type(ws, "system_message")
        assert await upgrade_status(stack, token) == 429
        async with connect_ws(stack, mint("e2e-another-user")) as other:     # the cap is per user
            await recv_type(other, "system_message")
        await first.close()
        for _attempt in range(40):      # the server counts the close once its handler has finished
            try:
                async with connect_ws(stack, token) as again:
                    assert (await recv_type(again, "system_message"))[0]["data"]["connection_ready"]
                break
            except InvalidStatus as exc:
                assert exc.response.status_code == 429
                await asyncio.sleep(0.05)
        else:
            pytest.fail("a new connection was still refused after one of the two was closed")


# ---------------------------------------------------------------- triggers on protocol faults

async def outcomes(stack, tokens: list[str]) -> list[str]:
    return [await outcome(stack, t) for t in tokens]


async def test_first_2_affects_exactly_the_first_two_connections(stack, token):
    stack.faults.add("drop_connection", trigger={"first": 2})
    assert await outcomes(stack, [token] * 4) == ["dropped", "dropped", "ok", "ok"]


async def test_every_2_affects_every_second_connection(stack, token):
    stack.faults.add("drop_connection", trigger={"every": 2})
    assert await outcomes(stack, [token] * 4) == ["ok", "dropped", "ok", "dropped"]


async def test_user_pattern_affects_matching_users_only(stack):
    stack.faults.add("drop_connection", trigger={"user": "^e2e-victim"})
    victim, other = mint("e2e-victim-1"), mint("e2e-bystander")
    assert await outcomes(stack, [victim, other, victim, other]) == ["dropped", "ok", "dropped", "ok"]


async def test_probability_with_a_seed_replays_the_same_outcomes_on_a_fresh_fault(stack, token):
    runs = []
    for _ in range(2):
        stack.faults.reset()
        stack.faults.add("drop_connection", trigger={"probability": 0.5, "seed": 1234})
        runs.append(await outcomes(stack, [token] * 10))
    assert runs[0] == runs[1]
    assert set(runs[0]) == {"ok", "dropped"}


# ---------------------------------------------------------------- the stand-in's timeline

async def test_the_timeline_records_which_faults_fired(stack, token):
    fired = stack.faults.add("race_on_accept")
    idle = stack.faults.add("drop_connection", trigger={"user": "^nobody$"})
    override = stack.faults.add("status_override", path="/api/stats", status=502)
    _, versions = stack.faults.timeline()
    async with connect_ws(stack, token) as ws:
        with pytest.raises(ConnectionClosedError):
            await recv_json(ws)
    with http(stack.endpoints.api_url) as api:
        assert api.get("/api/stats").status_code == 502
    records, _ = stack.faults.timeline(since=versions)
    ws_rec = next(r for r in records if r["kind"] == "ws")
    http_rec = next(r for r in records if r["kind"] == "http" and r["path"] == "/api/stats")
    assert fired.id in ws_rec["faults"] and idle.id not in ws_rec["faults"]
    assert ws_rec["close_code"] == 1011 and ws_rec["status"] == 101
    assert http_rec["faults"] == [override.id] and http_rec["status"] == 502


async def test_the_timeline_names_the_setup_error_that_fired(stack, token):
    stack.faults.apply([{"kind": "setup_error", "trigger": {"user": "^nobody$"}, "params": {"message": "not me"}},
                        {"kind": "setup_error", "params": {"message": "user id has a dash"}}])
    _, versions = stack.faults.timeline()
    async with connect_ws(stack, token) as ws:
        with pytest.raises(ConnectionClosedError):
            await recv_json(ws)
    records, _ = stack.faults.timeline(since=versions)
    [rec] = [r for r in records if r["kind"] == "ws"]
    assert "user id has a dash" in rec["error"]
