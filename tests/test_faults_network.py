"""CONTRACT §6: network faults are Toxiproxy toxics on the endpoint's proxy, each with
its client signature; and the fault control around them (validation, all-or-nothing,
remove, reset)."""
from __future__ import annotations

import errno

import httpx
import pytest
from websockets.exceptions import ConnectionClosedError

from simstack.shared.errors import ConfigError, SimstackError
from standin_client import AGENT_EVENTS, connect_ws, http, recv_json, recv_type, run_agent, send_json, start_agent


def toxics(stack, proxy: str) -> list[dict]:
    """What Toxiproxy itself reports for ``proxy``."""
    with http(stack.endpoints.toxiproxy_url) as toxi:
        return toxi.get(f"/proxies/{proxy}/toxics").json()


def proxy_enabled(stack, proxy: str) -> bool:
    with http(stack.endpoints.toxiproxy_url) as toxi:
        return toxi.get(f"/proxies/{proxy}").json()["enabled"]


def api_health(stack, timeout: float = 2.0) -> httpx.Response:
    with http(stack.endpoints.api_url, timeout=timeout) as api:
        return api.get("/health")


async def full_run(stack, token) -> list[str]:
    async with connect_ws(stack, token) as ws:
        return [e["type"] for e in await run_agent(ws)]


async def closed_mid_run(stack, token, kind: str, **params) -> tuple[ConnectionClosedError, list[dict]]:
    """Open a healthy connection, then apply ``kind`` on ws and start a run: how it ends."""
    async with connect_ws(stack, token) as ws:
        await recv_type(ws, "system_message")
        stack.faults.add(kind, target="ws", **params)
        frames = []
        with pytest.raises(ConnectionClosedError) as info:
            await send_json(ws, start_agent())
            while True:
                frames.append(await recv_json(ws, timeout=3))
        assert ws.close_code == 1006
        return info.value, frames


# ---------------------------------------------------------------- each kind's signature

async def test_latency_keeps_answers_correct_and_is_a_toxiproxy_toxic(stack, token):
    stack.faults.apply([{"kind": "latency", "target": t, "params": {"latency_ms": 20}} for t in ("api", "ws")])
    for proxy in ("api", "ws"):
        [toxic] = toxics(stack, proxy)
        assert toxic["type"] == "latency" and toxic["attributes"]["latency"] == 20
    r = api_health(stack)
    assert r.status_code == 200 and r.json()["service"] == "netra-ai-platform"
    assert await full_run(stack, token) == list(AGENT_EVENTS)


def test_bandwidth_rate_0_gives_an_http_read_timeout(stack):
    stack.faults.add("bandwidth", target="api", rate_kbps=0)
    assert toxics(stack, "api")[0]["type"] == "bandwidth"
    with pytest.raises(httpx.ReadTimeout):
        api_health(stack, timeout=0.5)


def test_hang_gives_an_http_read_timeout(stack):
    stack.faults.add("hang", target="api")
    with pytest.raises(httpx.ReadTimeout):
        api_health(stack, timeout=0.5)


async def test_hang_on_ws_makes_the_upgrade_time_out(stack, token):
    stack.faults.add("hang", target="ws")
    with pytest.raises(TimeoutError):
        async with connect_ws(stack, token, open_timeout=0.5):
            pass


def test_cut_closes_the_http_connection_without_a_response(stack):
    stack.faults.add("cut", target="api", after_ms=200)
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        api_health(stack)


async def test_cut_on_an_open_websocket_gives_1006(stack, token):
    closed, frames = await closed_mid_run(stack, token, "cut", after_ms=200)
    assert closed.rcvd is None
    assert not frames


def test_reset_gives_econnreset_on_http(stack):
    # In docker mode this needs an engine without docker-proxy (docker/engine.sh: --userland-proxy=false).
    stack.faults.add("reset", target="api")
    with pytest.raises(httpx.ReadError) as info:
        api_health(stack)
    chain, exc = [], info.value            # httpx.ReadError <- httpcore.ReadError(ConnectionResetError)
    while isinstance(exc, BaseException):
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__ or (exc.args[0] if exc.args else None)
    assert any(isinstance(e, ConnectionResetError) and e.errno == errno.ECONNRESET for e in chain), chain


async def test_reset_on_an_open_websocket_gives_1006(stack, token):
    closed, _ = await closed_mid_run(stack, token, "reset")
    assert closed.rcvd is None and closed.sent is None


async def test_slow_close_keeps_answers_and_the_close_handshake(stack, token):
    stack.faults.apply([{"kind": "slow_close", "target": t, "params": {"delay_ms": 200}} for t in ("api", "ws")])
    assert toxics(stack, "ws")[0]["type"] == "slow_close"
    assert api_health(stack).json()["status"] == "healthy"
    async with connect_ws(stack, token) as ws:
        assert [e["type"] for e in await run_agent(ws)] == list(AGENT_EVENTS)
        await ws.close()
        assert ws.protocol.close_rcvd.code == 1000


async def test_slicer_splits_data_and_a_websocket_run_still_completes(stack, token):
    stack.faults.apply([{"kind": "slicer", "target": t, "params": {"average_size": 16, "size_variation": 8,
                                                                    "delay_us": 100}} for t in ("api", "ws")])
    assert toxics(stack, "ws")[0]["type"] == "slicer"
    assert api_health(stack).json()["service"] == "netra-ai-platform"
    assert await full_run(stack, token) == list(AGENT_EVENTS)


def test_limit_data_truncates_an_http_response(stack):
    stack.faults.add("limit_data", target="api", bytes=300)
    with http(stack.endpoints.api_url) as api, pytest.raises(httpx.RemoteProtocolError):
        api.get("/api/discovery/services")


async def test_limit_data_cuts_a_websocket_run_with_1006(stack, token):
    closed, frames = await closed_mid_run(stack, token, "limit_data", bytes=600)
    assert closed.rcvd is None
    assert len(frames) < len(AGENT_EVENTS)


async def test_proxy_down_refuses_connections_until_removed(stack, token):
    fault = stack.faults.add("proxy_down", target="api")
    ws_fault = stack.faults.add("proxy_down", target="ws")
    assert not proxy_enabled(stack, "api")
    with pytest.raises(httpx.ConnectError):
        api_health(stack)
    with pytest.raises(ConnectionRefusedError):
        async with connect_ws(stack, token):
            pass
    stack.faults.remove(fault.id)
    stack.faults.remove(ws_fault.id)
    assert api_health(stack).status_code == 200
    assert await full_run(stack, token) == list(AGENT_EVENTS)


# ---------------------------------------------------------------- endpoints are independent

async def test_network_faults_on_ws_leave_the_http_api_alone(stack, token):
    stack.faults.apply([{"kind": "hang", "target": "ws"}, {"kind": "proxy_down", "target": "auth"}])
    assert api_health(stack).status_code == 200
    with pytest.raises(TimeoutError):
        async with connect_ws(stack, token, open_timeout=0.5):
            pass


async def test_network_faults_on_api_leave_the_websocket_alone(stack, token):
    stack.faults.apply([{"kind": "hang", "target": "api"}, {"kind": "proxy_down", "target": "auth"}])
    with pytest.raises(httpx.ReadTimeout):
        api_health(stack, timeout=0.5)
    assert await full_run(stack, token) == list(AGENT_EVENTS)


# ---------------------------------------------------------------- fault control

def test_apply_is_all_or_nothing_when_validation_fails(stack):
    batch = [{"kind": "latency", "target": "api"}, {"kind": "drop_connection"}, {"kind": "proxy_down", "target": "ws"},
             {"kind": "drop_connection", "params": {"after_ms": -1}}]
    with pytest.raises(ConfigError, match=r"faults\[3\]\.params\.after_ms"):
        stack.faults.apply(batch)
    assert stack.faults.list() == []
    assert toxics(stack, "api") == [] and proxy_enabled(stack, "ws")


def test_apply_rolls_back_when_a_later_fault_is_refused(stack):
    kept = stack.faults.add("latency", target="api", id="taken", latency_ms=5)
    batch = [{"kind": "drop_connection"}, {"kind": "slicer", "target": "ws"}, {"kind": "proxy_down", "target": "auth"},
             {"kind": "latency", "target": "api", "id": "taken"}]
    with pytest.raises(SimstackError):
        stack.faults.apply(batch)
    assert [f["id"] for f in stack.faults.list()] == [kept.id]
    assert toxics(stack, "ws") == [] and proxy_enabled(stack, "auth")


async def test_remove_by_id_takes_away_only_that_fault(stack, token):
    latency = stack.faults.add("latency", target="api", latency_ms=5)
    down = stack.faults.add("proxy_down", target="auth")
    drop = stack.faults.add("drop_connection")
    assert {f["id"] for f in stack.faults.list()} == {latency.id, down.id, drop.id}

    stack.faults.remove(drop.id)
    assert await full_run(stack, token) == list(AGENT_EVENTS)
    stack.faults.remove(down.id)
    assert proxy_enabled(stack, "auth")
    assert [f["id"] for f in stack.faults.list()] == [latency.id]
    stack.faults.remove(latency.id)
    assert stack.faults.list() == [] and toxics(stack, "api") == []
    with pytest.raises(ConfigError, match=repr(latency.id)):
        stack.faults.remove(latency.id)


async def test_reset_returns_every_endpoint_to_healthy(stack, token):
    stack.faults.apply([{"kind": "hang", "target": "api"}, {"kind": "slicer", "target": "ws"},
                        {"kind": "proxy_down", "target": "auth"}, {"kind": "race_on_accept"},
                        {"kind": "status_override", "target": "auth"}])
    stack.faults.reset()
    assert stack.faults.list() == []
    for proxy in ("api", "ws", "auth"):
        assert toxics(stack, proxy) == [] and proxy_enabled(stack, proxy)
    assert api_health(stack).status_code == 200
    with http(stack.endpoints.auth_url) as auth:
        assert auth.get("/health").status_code == 200
    assert await full_run(stack, token) == list(AGENT_EVENTS)


def test_an_id_already_in_use_is_refused_and_the_active_fault_kept(stack):
    kept = stack.faults.add("drop_connection", id="mine", trigger={"first": 1})
    with pytest.raises(ConfigError, match="'mine'"):
        stack.faults.add("race_on_accept", id="mine")
    [active] = stack.faults.list()
    assert (active["id"], active["kind"]) == (kept.id, "drop_connection")
