"""The gateway: a service that is not simstack's (tests/upstream_app.py) behind Toxiproxy and the
gateway, with every protocol fault that applies at the edge proven by what a client sees. Every test
that takes ``stack`` runs twice: in local mode (the backend run as a command, `--api-cmd`) and in
docker mode (the backend built into an image, `--api-image`, behind the gateway's container); one
stack per mode for the module. Real processes, real sockets; time only appears as client timeouts.
"""
from __future__ import annotations

import ast
import asyncio
import contextlib
import json
import socket
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, InvalidStatus

from simstack.fakes import edge
from simstack.shared.errors import ConfigError
from simstack.own import OwnService
from simstack.stack import Stack
from standin_client import AGENT_EVENTS, closed_by_server, connect_ws, frames_until_silence, http, mint, recv_json, send_json

TESTS = Path(__file__).resolve().parent
UPSTREAM_CMD = (f"{sys.executable} -m uvicorn upstream_app:app --app-dir {TESTS} --port {{port}} "
                "--ws websockets-sansio --log-level warning")
STAGING_1011 = "received 1011 (internal error) Internal error; then sent 1011 (internal error) Internal error"


@pytest.fixture(scope="module", params=[pytest.param("local", id="local"),
                                        pytest.param("docker", id="docker", marks=pytest.mark.docker)])
def own_stack(request):
    """The backend as a command (local) or as an image (docker; built only when a docker test runs)."""
    if request.param == "docker":
        backend = OwnService("api", image=request.getfixturevalue("upstream_image"))
    else:
        backend = OwnService("api", cmd=UPSTREAM_CMD)
    with Stack(mode=request.param, profile="fast", own=[backend]) as s:
        yield s


@pytest.fixture
def stack(own_stack):
    own_stack.faults.reset()
    yield own_stack
    own_stack.faults.reset()


@pytest.fixture
def token():
    return mint("e2e-user-1")


async def hello(ws) -> dict:
    frame = await recv_json(ws)
    assert frame["type"] == "hello", frame
    return frame


async def upgrade_refused(stack, token, **kw) -> InvalidStatus:
    with pytest.raises(InvalidStatus) as info:
        async with connect_ws(stack, token, **kw):
            pass
    return info.value


# ---------------------------------------------------------------- forwarding, no fault

def test_http_request_and_answer_pass_through_unchanged(stack):
    with http(stack.endpoints.api_url) as c:
        r = c.post("/echo?a=1&b=two", content=b"payload", headers={"X-E2E-Test": "true", "Authorization": "Bearer t"})
        streamed = c.get("/stream")
        teapot = c.get("/status/418")
        chunked = c.post("/echo", content=iter([b"chunked-", b"body"]))   # no Content-Length: chunked upstream
        head = c.head("/echo")
    body = r.json()
    assert (r.status_code, body["method"], body["path"], body["query"], body["body"]) == (200, "POST", "/echo", "a=1&b=two", "payload")
    assert body["headers"]["x-e2e-test"] == "true" and body["headers"]["authorization"] == "Bearer t"
    assert r.headers["x-upstream"] == "tests"
    assert streamed.text == "".join(f"chunk-{i};" for i in range(5))
    assert (teapot.status_code, teapot.json()["error_code"]) == (418, "HTTP_418")
    assert chunked.json()["body"] == "chunked-body"
    assert (head.status_code, head.content) == (200, b"") and int(head.headers["content-length"]) > 0


def test_a_plain_get_goes_upstream_and_is_recorded_as_any_request(stack):
    """A GET without a body takes the gateway's shortcut (fakes/shortcut.py): the upstream gets the
    same request and the timeline the same record as on the ordinary path."""
    stack.faults.mark("gateway-plain")
    try:
        with http(stack.endpoints.api_url) as c:
            r = c.get("/echo?q=1", headers={"Authorization": f"Bearer {mint('e2e-plain')}", "Connection": "keep-alive",
                                            "X-Custom": "kept"})
            again = c.get("/status/404")
    finally:
        stack.faults.mark(None)
    seen = r.json()
    assert (r.status_code, seen["method"], seen["path"], seen["query"], r.headers["x-upstream"]) == (200, "GET", "/echo", "q=1", "tests")
    assert seen["headers"]["x-custom"] == "kept" and seen["headers"]["x-forwarded-for"]
    assert seen["headers"]["x-forwarded-host"] == urlsplit(stack.endpoints.api_url).netloc
    assert "connection" not in seen["headers"] and seen["headers"]["host"] != seen["headers"]["x-forwarded-host"]
    assert again.status_code == 404 and again.json()["error_code"] == "HTTP_404"
    records, _ = stack.faults.timeline(label="gateway-plain")
    http_records = [r for r in records if r["service"] == "api" and r["kind"] == "http"]
    assert [(r["method"], r["path"], r["status"]) for r in http_records] == [("GET", "/echo", 200), ("GET", "/status/404", 404)]
    assert http_records[0]["user_id"] == "e2e-plain" and all(r["duration_ms"] is not None for r in http_records)


def test_a_large_answer_reaches_a_client_that_reads_slowly_whole(stack):
    """16 MiB, read 64 KiB at a time with pauses, straight from the gateway in local mode (Toxiproxy's
    buffers would hide the back-up): the gateway's writes to the client back up while the upstream goes
    on sending (the shortcut hands over to an ASGI task that waits for the client), and nothing is lost:
    the end of the body arrived during such a wait and was dropped before."""
    where = stack.upstreams["api"] if stack.mode == "local" else urlsplit(stack.endpoints.api_url).netloc
    host, port = where.rsplit(":", 1)
    for _ in range(3):                  # the first on a new upstream connection, the others on a pooled one
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(b"GET /big?mb=16 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            raw = bytearray()
            while chunk := s.recv(65536):
                raw += chunk
                time.sleep(0.0005)
        head, _, body = bytes(raw).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ") and len(body) == 16 * 2**20 and body == bytes(range(256)) * 4096 * 16


async def test_websocket_headers_subprotocols_frames_and_close_pass_through(stack, token):
    offered = ["jwt.abc-_def", "jwt-auth"]
    async with connect_ws(stack, token, subprotocols=offered) as ws:
        assert ws.subprotocol == "jwt-auth"                 # the upstream's choice, echoed
        first = await hello(ws)
        await send_json(ws, {"type": "start_agent"})
        events = [(await recv_json(ws))["type"] for _ in AGENT_EVENTS]
        await send_json(ws, {"type": "close", "code": 4001, "reason": "upstream says bye"})
        exc, _ = await closed_by_server(ws)
    assert first["headers"]["authorization"] == f"Bearer {token}"
    assert first["headers"]["x-e2e-test"] == "true" and first["offered"] == offered
    assert events == list(AGENT_EVENTS)
    assert (exc.rcvd.code, exc.rcvd.reason) == (4001, "upstream says bye")


async def test_binary_frames_pass_both_ways_unchanged(stack, token):
    payload = bytes(range(256)) * 40
    async with connect_ws(stack, token) as ws:
        await hello(ws)
        await ws.send(payload)
        echoed = await asyncio.wait_for(ws.recv(), 2)
    assert echoed == payload


async def test_no_subprotocol_is_echoed_when_the_upstream_selects_none(stack, token):
    async with connect_ws(stack, token, subprotocols=["jwt.abc"]) as ws:
        assert ws.subprotocol is None
        await hello(ws)


async def test_the_clients_close_code_and_reason_reach_the_upstream(stack, token):
    async with connect_ws(stack, token) as ws:
        await hello(ws)
        await ws.close(4002, "client leaves")
    with http(stack.endpoints.api_url) as c:
        for _ in range(50):
            seen = c.get("/last-close").json()
            if seen.get("code") == 4002:
                break
            await asyncio.sleep(0.05)
    assert seen == {"code": 4002, "reason": "client leaves"}


async def test_an_upstream_cut_reaches_the_client_as_a_cut(stack, token):
    async with connect_ws(stack, token) as ws:
        await hello(ws)
        await send_json(ws, {"type": "cut"})
        with pytest.raises(ConnectionClosedError) as info:
            await recv_json(ws)
    assert info.value.rcvd is None                        # 1006: no close frame


async def test_an_upstream_refusal_comes_back_with_its_status_and_body(stack, token):
    refused = await upgrade_refused(stack, token, query="x&refuse=503")
    assert refused.response.status_code == 503
    assert json.loads(bytes(refused.response.body)) == {"detail": "refused by upstream", "error_code": "UPSTREAM"}
    assert refused.response.headers["x-upstream"] == "tests"


# ---------------------------------------------------------------- HTTP faults

def test_cold_start_answers_503_with_retry_after_on_rest_and_on_the_upgrade(stack, token):
    stack.faults.apply([{"kind": "cold_start", "target": "api", "params": {"retry_after_s": 7}},
                        {"kind": "cold_start", "target": "ws", "params": {"retry_after_s": 7}}])
    with http(stack.endpoints.api_url) as c:
        r = c.get("/echo")
    refused = asyncio.run(upgrade_refused(stack, token))
    assert (r.status_code, r.headers["retry-after"], r.json()["error_code"]) == (503, "7", "SERVICE_UNAVAILABLE")
    assert (refused.response.status_code, refused.response.headers["retry-after"]) == (503, "7")


def test_status_override_answers_the_status_on_matching_paths_only(stack):
    stack.faults.add("status_override", path="/echo", status=502)
    with http(stack.endpoints.api_url) as c:
        hit, spared = c.get("/echo"), c.get("/health")
    assert (hit.status_code, spared.status_code) == (502, 200)
    assert "status_override" in hit.json()["detail"]


def test_health_hang_gives_the_client_a_read_timeout_while_other_paths_answer(stack):
    stack.faults.add("health_hang", hold_s=3)
    with http(stack.endpoints.api_url, timeout=0.5) as c:
        with pytest.raises(httpx.ReadTimeout):
            c.get("/health")
        assert c.get("/echo").status_code == 200


def test_slow_ready_holds_the_readiness_path(stack):
    stack.faults.add("slow_ready", delay_s=3)
    with http(stack.endpoints.api_url, timeout=0.5) as c:
        with pytest.raises(httpx.ReadTimeout):
            c.get("/health/ready")


# ---------------------------------------------------------------- WebSocket faults before accept

async def test_connection_cap_refuses_the_user_s_n_plus_1th_connection_with_429(stack, token):
    stack.faults.add("connection_cap", max_connections=2)
    async with connect_ws(stack, token) as a, connect_ws(stack, token) as b:
        await hello(a), await hello(b)
        refused = await upgrade_refused(stack, token)
        async with connect_ws(stack, mint("someone-else")) as other:   # another user is not capped
            await hello(other)
    assert refused.response.status_code == 429


@pytest.mark.parametrize("kind,status", [("auth_reject", 403), ("upgrade_exception", 500)])
async def test_refusals_before_accept_give_their_status(stack, token, kind, status):
    stack.faults.add(kind)
    assert (await upgrade_refused(stack, token)).response.status_code == status


async def test_jwt_secret_mismatch_before_accept_gives_403(stack, token):
    stack.faults.add("jwt_secret_mismatch")
    assert (await upgrade_refused(stack, token)).response.status_code == 403


# ---------------------------------------------------------------- WebSocket faults after accept

@pytest.mark.parametrize("fault", [{"kind": "auth_after_accept"},
                                   {"kind": "jwt_secret_mismatch", "params": {"placement": "after_accept"}}],
                         ids=["auth_after_accept", "jwt_secret_mismatch-after_accept"])
async def test_rejections_after_accept_send_error_message_then_1008(stack, token, fault):
    stack.faults.apply([fault])
    async with connect_ws(stack, token) as ws:
        exc, frames = await closed_by_server(ws)
    assert [f["type"] for f in frames] == ["error_message"]
    assert exc.rcvd.code == 1008


@pytest.mark.parametrize("client_sends_first", [False, True], ids=["silent-client", "client-sends-first"])
async def test_close_after_accept_is_the_staging_1011_with_no_frame_before_it(stack, token, client_sends_first):
    stack.faults.add("close_after_accept", after_ms=200)
    async with connect_ws(stack, token) as ws:                       # HTTP 101
        if client_sends_first:
            with contextlib.suppress(ConnectionClosed):
                await send_json(ws, {"type": "start_agent"})
        with pytest.raises(ConnectionClosedError) as info:
            await recv_json(ws)                                      # the very first recv: zero frames
    assert str(info.value) == STAGING_1011


async def test_close_after_accept_can_let_frames_through_and_use_another_code(stack, token):
    stack.faults.add("close_after_accept", code=4500, reason="draining", after_ms=300, before_first_frame=False)
    async with connect_ws(stack, token) as ws:
        exc, frames = await closed_by_server(ws)
    assert [f["type"] for f in frames] == ["hello"]
    assert (exc.rcvd.code, exc.rcvd.reason) == (4500, "draining")


async def test_drop_connection_cuts_without_a_close_frame(stack, token):
    stack.faults.add("drop_connection", after_ms=100)
    async with connect_ws(stack, token) as ws:
        exc, _ = await closed_by_server(ws)
    assert exc.rcvd is None and exc.sent is None


@pytest.mark.parametrize("close_code", [1006, 4000])
async def test_max_lifetime_ends_the_connection_after_its_lifetime(stack, token, close_code):
    stack.faults.add("max_lifetime", seconds=0.3, close_code=close_code)
    async with connect_ws(stack, token) as ws:
        exc, frames = await closed_by_server(ws)
    assert [f["type"] for f in frames] == ["hello"]
    assert (exc.rcvd.code if exc.rcvd else 1006) == close_code


# ---------------------------------------------------------------- WebSocket faults per frame

async def test_lost_events_drops_agent_events_from_from_event_on_and_keeps_the_socket_open(stack, token):
    stack.faults.add("lost_events", from_event="tool_completed")
    async with connect_ws(stack, token) as ws:
        await hello(ws)
        await send_json(ws, {"type": "start_agent"})
        frames = await frames_until_silence(ws, 0.5)
        await send_json(ws, {"type": "ping"})                         # still open: the echo comes back
        echo = await recv_json(ws)
    assert [f["type"] for f in frames] == ["agent_started", "agent_thinking", "tool_executing"]
    assert echo["type"] == "echo"


async def test_delayed_events_hold_each_agent_event_but_not_other_frames(stack, token):
    stack.faults.add("delayed_events", delay_ms=600)
    async with connect_ws(stack, token) as ws:
        await hello(ws)                                              # not an agent event: on time
        await send_json(ws, {"type": "start_agent"})
        with pytest.raises(asyncio.TimeoutError):
            await recv_json(ws, timeout=0.3)
        first = await recv_json(ws, timeout=2)
    assert first["type"] == "agent_started"


async def test_late_welcome_holds_the_first_frames_after_the_client_s_timeout(stack, token):
    stack.faults.add("late_welcome", delay_ms=800)
    async with connect_ws(stack, token) as ws:
        with pytest.raises(asyncio.TimeoutError):
            await recv_json(ws, timeout=0.3)
        assert (await recv_json(ws, timeout=2))["type"] == "hello"


# ---------------------------------------------------------------- what is refused, what is recorded

def test_every_edge_kind_is_applied_by_a_test_of_this_module():
    """A kind added to fakes/edge.py (or HTTPFaults) without a client-signature test here fails this:
    every edge kind must appear as a fault kind this module applies."""
    tree = ast.parse(Path(__file__).read_text())
    named = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    assert edge.edge_kinds() - named == set()


@pytest.mark.parametrize("kind", ["race_on_accept", "setup_error"])
def test_server_internal_kinds_are_refused_on_a_forwarded_service_saying_why(stack, kind):
    with pytest.raises(ConfigError) as info:
        stack.faults.add(kind)
    assert "cannot be applied to a forwarded service" in str(info.value)
    assert stack.faults.list() == []


async def test_the_timeline_records_forwarded_traffic_as_a_stand_in_does(stack, token):
    stack.faults.mark("gateway-timeline")
    try:
        with http(stack.endpoints.api_url) as c:
            c.get("/echo")
        async with connect_ws(stack, token) as ws:
            await hello(ws)
            await send_json(ws, {"type": "start_agent"})
            for _ in AGENT_EVENTS:
                await recv_json(ws)
    finally:
        stack.faults.mark(None)
    records, _ = stack.faults.timeline(label="gateway-timeline")
    by_kind = {r["kind"]: r for r in records if r["service"] == "api"}
    assert (by_kind["http"]["path"], by_kind["http"]["status"]) == ("/echo", 200)
    ws_rec = by_kind["ws"]
    assert ws_rec["status"] == 101 and ws_rec["user_id"] == "e2e-user-1"
    assert ws_rec["frames_out"] == ["hello", *AGENT_EVENTS] and ws_rec["frames_in"] == ["start_agent"]


def test_a_request_with_a_body_after_the_upstream_closed_an_idle_connection_is_answered():
    """The upstream closes keep-alive connections idle for 1 s; the gateway must not send the next request
    (with a body) on one of those: it got a 502 before."""
    cmd = UPSTREAM_CMD + " --timeout-keep-alive 1"
    with Stack(mode="local", profile="fast", own=[OwnService("api", cmd=cmd)]) as s, \
            httpx.Client(base_url=s.endpoints.api_url, trust_env=False, timeout=5) as client:
        assert client.get("/health").status_code == 200
        import time
        time.sleep(1.5)
        r = client.post("/echo", json={"after": "idle"})
    assert r.status_code == 200, r.text
    assert json.loads(r.json()["body"]) == {"after": "idle"}


SECOND_ANSWER_BROKEN = """
import asyncio, sys

async def handle(reader, writer):
    answered = 0
    try:
        while True:
            await reader.readuntil(b"\\r\\n\\r\\n")
            answered += 1
            writer.write(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok" if answered == 1 else b"SMTP ready\\r\\n\\r\\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    writer.close()

async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]))
    await server.serve_forever()

asyncio.run(main())
"""


def test_a_plain_request_whose_pooled_connection_fails_goes_upstream_again_and_is_recorded_once(tmp_path):
    """An upstream that answers the first request on each connection and garbage after it: the gateway's
    shortcut meets the garbage on its pooled connection before any answer, and the request is forwarded
    the ordinary way (a new connection) instead of failing; the client and the timeline see one answer."""
    script = tmp_path / "second_answer_broken.py"
    script.write_text(SECOND_ANSWER_BROKEN)
    with Stack(mode="local", profile="fast", own=[OwnService("api", cmd=f"{sys.executable} {script} {{port}}")]) as s:
        s.faults.mark("pooled-fails")
        with http(s.endpoints.api_url) as client:
            answers = [client.get("/x") for _ in range(3)]
        s.faults.mark(None)
        records, _ = s.faults.timeline(label="pooled-fails")
    assert [(a.status_code, a.content) for a in answers] == [(200, b"ok")] * 3
    assert [(r["path"], r["status"]) for r in records if r["kind"] == "http" and r["service"] == "api"] == [("/x", 200)] * 3
