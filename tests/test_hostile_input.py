"""Hostile client input never gets a 1011 or a 5xx that the input caused (issue 9, items 1-7, 17, 19).

Only the documented closes may end a connection a client's frames ended: 1007 (a text
frame that is not UTF-8), 1009 (a frame over the size limit) and 1008 (an unknown agent).
Every HTTP error is JSON. Everything goes over real sockets through Toxiproxy.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import socket
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError, InvalidStatus

from simstack.fakes import tokens
from simstack.own import OwnService
from simstack.scenarios import load_scenario
from simstack.stack import Stack
from standin_client import (AGENT_EVENTS, E2E_HEADERS, WELCOME, closed_by_server, connect_ws, http, mint,
                            recv_json, recv_type, run_agent, send_json, start_agent)

DEEP = "[" * 1000 + "]" * 1000
DEEPER = '{"a":' * 5000 + "1" + "}" * 5000


def strict_json(text):
    """The frame as RFC 8259 JSON: NaN, Infinity and -Infinity are refused."""
    def refuse(name):
        raise ValueError(f"{name} is not JSON")
    return json.loads(text, parse_constant=refuse)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_token(header: bytes, claims: bytes, sig: str = "c2ln") -> str:
    """A token built from raw JSON text, so it can hold what json.dumps would not write."""
    return f"{b64(header)}.{b64(claims)}.{sig}"


def signed_raw(claims: bytes, secret: str) -> str:
    """An HS256 token over raw claims text."""
    signing_input = b64(b'{"alg":"HS256","typ":"JWT"}') + "." + b64(claims)
    sig = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(sig)}"


async def welcomed(ws) -> None:
    await recv_type(ws, "system_message")


async def invalid_message(ws, frame) -> dict:
    """Send ``frame`` after the welcome; the INVALID_MESSAGE error frame it must get."""
    await welcomed(ws)
    await ws.send(frame)
    error = await recv_json(ws)
    assert error["type"] == "error" and error["error_code"] == "INVALID_MESSAGE", error
    return error


async def still_open(ws) -> None:
    """The socket serves the next frame as usual."""
    await send_json(ws, {"type": "ping"})
    pong, _ = await recv_type(ws, "pong")
    assert pong["type"] == "pong"


def raw_exchange(url: str, request: bytes, timeout: float = 2.0) -> bytes:
    """Send raw bytes, return everything the server answers until it closes (or ``timeout``)."""
    u = urlparse(url)
    with socket.create_connection((u.hostname, u.port), timeout=timeout) as s:
        s.sendall(request)
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                raise AssertionError(f"no complete answer within {timeout} s; got {b''.join(chunks)[:200]!r}")
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def parse_response(raw: bytes) -> tuple[int, dict, bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def upgrade_request(extra_headers: str) -> bytes:
    return (f"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            f"X-E2E-Test: true\r\n{extra_headers}\r\n").encode("latin-1")


# ---------------------------------------------------------------- item 1: frames never cause a 1011

@pytest.mark.parametrize("frame", [DEEP, DEEPER, DEEP.encode(), '{"type":' + DEEP + "}"],
                         ids=["array-1000", "object-5000", "binary-array-1000", "deep-type"])
async def test_a_deeply_nested_frame_gets_an_error_frame_and_the_socket_stays_open(stack, token, frame):
    async with connect_ws(stack, token) as ws:
        assert "nested deeper than" in (await invalid_message(ws, frame))["message"]
        await still_open(ws)


@pytest.mark.parametrize("frame, why", [
    ({"type": 5}, "type must be a string"),
    ({"type": "start_agent", "payload": {"user_request": "x", "agent_type": ["a"]}}, "agent_type must be a string"),
    ({"type": "start_agent", "payload": {"user_request": "x"}, "thread_id": {"a": 1}}, "thread_id must be a string"),
    ({"type": "chat", "content": "x", "thread_id": [1]}, "thread_id must be a string"),
    ([1, 2], "must be a JSON object"),
    ("just a string", "must be a JSON object"),
], ids=["type-int", "agent-type-list", "thread-id-dict", "chat-thread-id-list", "array", "string"])
async def test_a_frame_with_wrong_types_gets_an_error_frame_naming_the_field(stack, token, frame, why):
    async with connect_ws(stack, token) as ws:
        assert why in (await invalid_message(ws, json.dumps(frame)))["message"]
        await still_open(ws)


async def test_a_binary_frame_that_is_not_utf8_gets_an_error_frame(stack, token):
    async with connect_ws(stack, token) as ws:
        assert "not UTF-8" in (await invalid_message(ws, b"\xff\xfe{"))["message"]
        await still_open(ws)


async def test_a_text_frame_that_is_not_utf8_closes_1007(stack, token):
    async with connect_ws(stack, token) as ws:
        await welcomed(ws)
        await ws.send(b'{"type":"ping","x":"\xff"}', text=True)
        closed, _ = await closed_by_server(ws)
    assert closed.rcvd.code == 1007


def server_close_code(stack, token: str, raw_frame: bytes) -> int | None:
    """Upgrade over a raw socket, send ``raw_frame`` as is, return the code of the server's close frame."""
    u = urlparse(stack.endpoints.ws_url)
    with socket.create_connection((u.hostname, u.port), timeout=2) as s:
        s.sendall(upgrade_request(f"Authorization: Bearer {token}\r\n"))
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(65536)
        assert data.startswith(b"HTTP/1.1 101"), data[:100]
        data = data.partition(b"\r\n\r\n")[2]
        s.sendall(raw_frame)
        while True:
            while len(data) < 2 or len(data) < _frame_length(data):
                chunk = s.recv(65536)
                if not chunk:
                    return None
                data += chunk
            size = _frame_length(data)
            frame, data = data[:size], data[size:]
            if frame[0] & 0x0F == 0x8:
                header = size - (frame[1] & 0x7F)
                return int.from_bytes(frame[header:header + 2], "big")


def _frame_length(data: bytes) -> int:
    """Length of the unmasked server frame at the start of ``data`` (header included)."""
    n = data[1] & 0x7F
    if n == 126:
        return 4 + int.from_bytes(data[2:4], "big") if len(data) >= 4 else 1 << 30
    if n == 127:
        return 10 + int.from_bytes(data[2:10], "big") if len(data) >= 10 else 1 << 30
    return 2 + n


MASK = b"\x00\x00\x00\x00"


@pytest.mark.parametrize("raw_frame", [
    b"\x83\x80" + MASK,                                   # reserved opcode
    b"\x81\x05hello",                                     # not masked
    b"\xc1\x80" + MASK,                                   # RSV1 set without an extension
    b"\x88\x82" + MASK + (999).to_bytes(2, "big"),        # a close code that does not exist
], ids=["reserved-opcode", "unmasked", "rsv1", "close-code-999"])
def test_a_frame_that_breaks_the_websocket_protocol_closes_1002_not_1011(stack, token, raw_frame):
    assert server_close_code(stack, token, raw_frame) == 1002


async def test_a_frame_over_16_mib_closes_1009(stack, token):
    async with connect(stack.endpoints.ws_url, additional_headers={**E2E_HEADERS, "Authorization": f"Bearer {token}"},
                       max_size=None, open_timeout=2, close_timeout=2) as ws:
        await welcomed(ws)
        await ws.send('{"type":"ping","pad":"' + "x" * (16 * 1024 * 1024) + '"}')
        closed, _ = await closed_by_server(ws, timeout=5)
    assert closed.rcvd.code == 1009


# ---------------------------------------------------------------- item 2: oversized upgrade headers

@pytest.mark.parametrize("headers", [
    f"Authorization: Bearer {'a' * 9000}\r\n",
    f"Authorization: Bearer {'a' * 7000}\r\nSec-WebSocket-Protocol: jwt.{'b' * 9000}\r\n",
    "".join(f"X-Filler-{i}: {i}\r\n" for i in range(130)),
], ids=["one-9k-line", "two-tokens", "130-headers"])
def test_an_upgrade_with_oversized_headers_gets_431_json_at_once_and_is_closed(stack, headers):
    status, h, body = parse_response(raw_exchange(stack.endpoints.ws_url, upgrade_request(headers)))
    assert status == 431 and h["content-type"] == "application/json"
    assert json.loads(body)["error_code"] == "HEADERS_TOO_LARGE" and json.loads(body)["detail"]


@pytest.mark.parametrize("service_port", ["upgrade", "http"])
def test_a_client_still_sending_an_oversized_head_gets_the_431_not_a_reset(stack, service_port):
    """The stand-in answers and half-closes; closing with the client's bytes unread would reset the
    connection and lose the answer (200 of 200 did, direct to the stand-in, before the fix). Sent to the
    stand-in itself: Toxiproxy closes both directions when its upstream half-closes (README limitations)."""
    if stack.mode != "local":
        pytest.skip("the stand-in's own port is reachable from the host in local mode only")
    host, port = stack.upstreams["api"].rsplit(":", 1)
    pad = "x" * 400_000
    head = (upgrade_request(f"Authorization: Bearer {pad}\r\n") if service_port == "upgrade"
            else f"GET /health HTTP/1.1\r\nHost: a\r\nX-Pad: {pad}\r\n\r\n".encode())
    for _ in range(20):
        status, h, body = parse_response(raw_exchange(f"http://{host}:{port}", head))
        assert status == 431 and h["content-type"] == "application/json", (status, body[:200])


@pytest.mark.parametrize("headers, status", [
    ("", 403),                                                       # no token: closed before accept
    ("Authorization: Bearer not-a-jwt\r\n", 403),
    ("Sec-WebSocket-Protocol: jwt.\xe9\xe9\r\n", 400),              # not a valid subprotocol header
    ("Sec-WebSocket-Version: 8\r\n", 400),
], ids=["no-token", "bad-token", "non-ascii-subprotocol", "bad-version"])
def test_every_refused_upgrade_has_a_json_body(stack, headers, status):
    answer = parse_response(raw_exchange(stack.endpoints.ws_url, upgrade_request(headers)))
    assert answer[0] == status and answer[1]["content-type"] == "application/json", answer
    assert json.loads(answer[2])["error_code"] and json.loads(answer[2])["detail"]


async def test_a_real_client_with_a_6_kb_token_in_both_places_gets_a_431_not_a_hang(stack):
    big = mint("e2e-big", pad="x" * 4500)
    assert 6000 < len(big) < 6500
    raw = {"sec-websocket-protocol": "jwt." + b64(big.encode())}
    with pytest.raises(InvalidStatus) as info:
        async with connect_ws(stack, big, headers=raw, open_timeout=3):
            pass
    assert info.value.response.status_code == 431


async def test_a_5_kb_token_in_both_places_is_served(stack):
    big = mint("e2e-big", pad="x" * 3500)
    assert 5000 <= len(big) < 5500
    raw = {"sec-websocket-protocol": "jwt." + b64(big.encode())}
    async with connect_ws(stack, big, headers=raw) as ws:
        frame, _ = await recv_type(ws, "system_message")
    assert frame["data"]["user_id"] == "e2e-big"


# ---------------------------------------------------------------- item 3: tokens that are deeply nested JSON

@pytest.mark.parametrize("token", [
    raw_token(b'{"alg":"HS256"}', DEEP.encode()),
    raw_token(DEEP.encode(), b'{"sub":"e2e-x"}'),
    raw_token(b'{"alg":"HS256"}', ('{"sub":"e2e-x","a":' + DEEP + "}").encode()),
], ids=["claims", "header", "nested-claim"])
@pytest.mark.parametrize("e2e", [True, False], ids=["lenient", "strict"])
async def test_a_token_of_deeply_nested_json_is_refused_403(stack, token, e2e):
    with pytest.raises(InvalidStatus) as info:
        async with connect_ws(stack, token, e2e=e2e):
            pass
    assert info.value.response.status_code == 403


@pytest.mark.parametrize("policy", ["lenient", "strict"])
def test_policies_refuse_a_deeply_nested_token_with_a_token_error(policy):
    with pytest.raises(tokens.TokenError, match="nested deeper"):
        tokens.Policy(policy, ("s",)).accept(raw_token(b'{"alg":"HS256"}', DEEP.encode()), e2e=True)


# ---------------------------------------------------------------- item 4: client errors on HTTP are 4xx JSON

@pytest.mark.parametrize("endpoint, path", [
    ("api", "/api/agents/execute"), ("api", "/api/agents/supervisor_agent/execute"), ("api", "/api/messages"),
    ("auth", "/auth/e2e/test-auth"), ("auth", "/auth/validate"),
])
@pytest.mark.parametrize("body, why", [
    (DEEP, "nested deeper than"), (DEEPER, "nested deeper than"), ('{"content": NaN}', "NaN is not JSON"),
    ('{"content": 1e999}', "not finite"), ('{"content": "\\ud800"}', "surrogate"), (b"\xff\xfe", "not UTF-8"),
], ids=["deep-array", "deep-object", "nan", "inf", "lone-surrogate", "not-utf8"])
def test_a_body_that_is_not_json_gets_400_json_saying_why(stack, endpoint, path, body, why):
    base = stack.endpoints.api_url if endpoint == "api" else stack.endpoints.auth_url
    with http(base) as client:
        r = client.post(path, content=body, headers={"content-type": "application/json", "X-E2E-Bypass-Key": "k"})
    assert r.status_code == 400, r.text
    assert r.json()["error_code"] == "INVALID_JSON" and why in r.json()["detail"]


def test_validate_with_a_token_that_is_not_a_string_is_422_json(stack):
    with http(stack.endpoints.auth_url) as client:
        r = client.post("/auth/validate", json={"token": 123})
    assert r.status_code == 422 and "token must be a string" in r.json()["detail"]


@pytest.mark.parametrize("body, where", [
    ({"email": 5}, "email"), ({"permissions": "admin"}, "permissions"), ([1], "body"),
])
def test_test_auth_with_a_field_of_the_wrong_type_is_422_json_naming_it(stack, body, where):
    with http(stack.endpoints.auth_url) as client:
        r = client.post("/auth/e2e/test-auth", json=body, headers={"X-E2E-Bypass-Key": "k"})
    assert r.status_code == 422 and where in r.json()["detail"]


@pytest.mark.parametrize("body, why", [
    ({"agent_type": ["supervisor_agent"], "message": "hi"}, "agent_type"),
    ({"agent_type": {"a": 1}, "message": "hi"}, "agent_type"),
])
def test_execute_with_an_agent_that_is_not_a_string_is_422_json(stack, body, why):
    with http(stack.endpoints.api_url) as client:
        r = client.post("/api/agents/execute", json=body)
    assert r.status_code == 422 and why in r.json()["detail"]


def test_admin_calls_with_a_body_that_is_not_json_get_400_json(stack):
    with http(stack.endpoints.api_control_url) as client:
        r = client.post("/__simstack/mark", content=DEEP, headers={"X-Simstack-Admin": stack.endpoints.admin_key})
    assert r.status_code == 400 and r.json()["error_code"] == "INVALID_JSON"


# ---------------------------------------------------------------- item 5: malformed HTTP gets JSON

MALFORMED = pytest.mark.parametrize("request_bytes", [
    b"POST /api/messages HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    b"NOT-HTTP\r\n\r\n",
], ids=["content-length-abc", "header-without-colon", "no-request-line"])


def assert_malformed_gets_400_json(url: str, request_bytes: bytes) -> None:
    status, headers, body = parse_response(raw_exchange(url, request_bytes))
    assert status == 400 and headers["content-type"] == "application/json"
    assert json.loads(body)["error_code"] == "BAD_REQUEST" and json.loads(body)["detail"]


def big_head_answer(url: str, ends: bool) -> tuple[int, dict, bytes]:
    """The answer to a GET whose head is over 16 KiB: one that never ends, or a complete one."""
    u = urlparse(url)
    with socket.create_connection((u.hostname, u.port), timeout=2) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 17000 + (b"\r\n\r\n" if ends else b""))
        raw = s.recv(65536)
    return parse_response(raw)


def assert_431_json(answer: tuple[int, dict, bytes]) -> None:
    status, headers, body = answer
    assert status == 431 and headers["content-type"] == "application/json" and "16 KiB" in json.loads(body)["detail"]


@pytest.mark.parametrize("endpoint", ["api", "auth"])
@MALFORMED
def test_a_malformed_http_request_gets_400_json(stack, endpoint, request_bytes):
    assert_malformed_gets_400_json(stack.endpoints.api_url if endpoint == "api" else stack.endpoints.auth_url,
                                   request_bytes)


def test_an_http_request_head_over_16_kib_gets_431_json(stack):
    assert_431_json(big_head_answer(stack.endpoints.api_url, ends=False))


# ---------------------------------------------------------------- item 6: non-finite numbers

@pytest.mark.parametrize("frame", [
    '{"type":"start_agent","payload":{"user_request":"x"},"thread_id":NaN}',
    '{"type":"ping","x":Infinity}',
    '{"type":"user_message","content":"x","n":-Infinity}',
    '{"type":"start_agent","payload":{"user_request":"x","budget":1e999}}',
], ids=["nan-thread-id", "infinity", "minus-infinity", "overflow"])
async def test_a_frame_with_non_finite_numbers_gets_an_error_frame_and_no_agent_run(stack, token, frame):
    async with connect_ws(stack, token) as ws:
        await invalid_message(ws, frame)
        await send_json(ws, {"type": "get_agent_status"})
        status, between = await recv_type(ws, "agent_status")
    assert status["status"] == "idle" and not [f for f in between if f["type"] in AGENT_EVENTS]


async def test_every_frame_of_an_agent_run_is_rfc_8259_json(stack, token):
    async with connect_ws(stack, token) as ws:
        await send_json(ws, start_agent(thread_id="t-1"))
        frames = []
        while not frames or json.loads(frames[-1]).get("type") != "agent_completed":
            frames.append(await asyncio.wait_for(ws.recv(), 2))
    assert [strict_json(f)["type"] for f in frames] == [*WELCOME, *AGENT_EVENTS]


# ---------------------------------------------------------------- item 7 (token side): strict claims checks

NOW = int(time.time())


@pytest.mark.parametrize("claims, why", [
    (b'{"sub":"e2e-a","iss":"netra-auth-service","exp":NaN}', "NaN is not JSON"),
    (b'{"sub":"e2e-a","iss":"netra-auth-service","exp":1e999}', "not finite"),
    (b'{"sub":"e2e-a","iss":"netra-auth-service","exp":"never"}', "exp must be a number"),
    (b'{"sub":"e2e-a","iss":"netra-auth-service","exp":true}', "exp must be a number"),
    (b'{"sub":"e2e-a","iss":"netra-auth-service","exp":[9999999999]}', "exp must be a number"),
    (f'{{"sub":"e2e-a","iss":"netra-auth-service","exp":{NOW + 900},"iat":"today"}}'.encode(), "iat must be a number"),
    (f'{{"sub":"e2e-a","iss":"netra-auth-service","exp":{NOW + 900},"nbf":"now"}}'.encode(), "nbf must be a number"),
    (f'{{"sub":"e2e-a","iss":"netra-auth-service","exp":{NOW + 900},"nbf":{NOW + 600}}}'.encode(), "not valid yet"),
], ids=["exp-nan", "exp-inf", "exp-string", "exp-bool", "exp-list", "iat-string", "nbf-string", "nbf-future"])
def test_strict_refuses_time_claims_that_are_not_finite_numbers(claims, why):
    with pytest.raises(tokens.TokenError, match=why):
        tokens.verify(signed_raw(claims, "s3cret"), ["s3cret"])


def test_strict_accepts_numeric_time_claims():
    claims = f'{{"sub":"e2e-a","iss":"netra-auth-service","exp":{NOW + 900},"iat":{NOW}.5,"nbf":{NOW - 1}}}'
    assert tokens.verify(signed_raw(claims.encode(), "s3cret"), ["s3cret"])["sub"] == "e2e-a"


def test_lenient_still_accepts_any_decodable_token_whatever_its_time_claims():
    token = raw_token(b'{"alg":"none"}', b'{"sub":"e2e-a","exp":"never","iat":"today"}')
    assert tokens.Policy("lenient", ("s",)).accept(token, e2e=True)["sub"] == "e2e-a"


async def test_a_token_with_exp_nan_is_refused_where_the_api_verifies_it(stack):
    # jwt_secret_mismatch makes the api verify strictly with a secret this test knows.
    stack.faults.add("jwt_secret_mismatch", placement="before_accept", api_secret="known-to-the-test")
    forged = signed_raw(b'{"sub":"e2e-a","iss":"netra-auth-service","exp":NaN}', "known-to-the-test")
    good = tokens.mint("e2e-a", "a@x.test", "known-to-the-test")
    with pytest.raises(InvalidStatus) as info:
        async with connect_ws(stack, forged):
            pass
    assert info.value.response.status_code == 403
    async with connect_ws(stack, good) as ws:
        await welcomed(ws)


# ---------------------------------------------------------------- item 17: setup_error hits every e2e connection

REAL_SUITE_IDS = ["e2e-4f1c2a9b", "staging-e2e-user-001", "staging_pipeline_test_user_1764160000", "alice"]


@pytest.mark.parametrize("fault", ["default", "scenario"])
@pytest.mark.parametrize("user_id", REAL_SUITE_IDS)
async def test_setup_error_hits_every_connection_with_e2e_headers_whatever_the_user_id(stack, fault, user_id):
    if fault == "default":
        stack.faults.apply([{"kind": "race_on_accept", "params": {"fixed": True, "register_delay_ms": 0}},
                            {"kind": "setup_error"}])
    else:
        stack.faults.apply(load_scenario("setup-error-1011").faults)
    async with connect_ws(stack, mint(user_id)) as ws:
        closed, frames = await closed_by_server(ws)
    assert (closed.rcvd.code, closed.rcvd.reason, frames) == (1011, "Internal error", [])


async def test_setup_error_spares_connections_without_e2e_headers(stack, token):
    stack.faults.add("setup_error")
    async with connect_ws(stack, token, e2e=False) as ws:   # the stack's own token passes strict checks
        events = await run_agent(ws)
    assert [e["type"] for e in events] == list(AGENT_EVENTS)


async def test_an_e2e_trigger_fires_on_the_x_test_type_header_alone(stack):
    stack.faults.add("drop_connection", trigger={"e2e": True})
    async with connect_ws(stack, mint("e2e-a"), e2e=False, headers={"X-Test-Type": "E2E"}) as ws:
        with pytest.raises(ConnectionClosedError) as info:
            await recv_json(ws)
    assert info.value.rcvd is None   # 1006: dropped without a close frame


# ---------------------------------------------------------------- item 19: user triggers on HTTP faults

@pytest.mark.parametrize("endpoint, path", [("api", "/api/agents"), ("auth", "/health")])
def test_a_user_trigger_on_an_http_fault_fires_for_requests_whose_bearer_token_matches(stack, endpoint, path):
    stack.faults.add("status_override", target=endpoint, path=path, status=502, trigger={"user": "^e2e-"})
    base = stack.endpoints.api_url if endpoint == "api" else stack.endpoints.auth_url
    with http(base) as client:
        hit = client.get(path, headers={"Authorization": f"Bearer {mint('e2e-7')}"})
        other = client.get(path, headers={"Authorization": f"Bearer {mint('alice')}"})
        garbage = client.get(path, headers={"Authorization": "Bearer not-a-jwt"})
        anonymous = client.get(path)
    assert hit.status_code == 502 and hit.json()["error_code"]
    assert (other.status_code, garbage.status_code, anonymous.status_code) == (200, 200, 200)


def test_an_e2e_trigger_on_an_http_fault_fires_for_requests_with_e2e_headers(stack):
    stack.faults.add("status_override", target="api", path="/api/agents", status=503, trigger={"e2e": True})
    with http(stack.endpoints.api_url) as client:
        assert client.get("/api/agents", headers=E2E_HEADERS).status_code == 503
        assert client.get("/api/agents").status_code == 200


def test_http_records_carry_the_bearer_tokens_user(stack):
    _, versions = stack.faults.timeline()
    with http(stack.endpoints.api_url) as client:
        client.get("/api/agents", headers={"Authorization": f"Bearer {mint('e2e-traced')}"})
    records, _ = stack.faults.timeline(since=versions)
    assert [r["user_id"] for r in records if r["path"] == "/api/agents"] == ["e2e-traced"]


# ---------------------------------------------------------------- the gateway in front of a service of yours

GATEWAY_UPSTREAM = (f"{sys.executable} -m uvicorn upstream_app:app --app-dir {Path(__file__).resolve().parent} "
                    "--port {port} --log-level warning")


@pytest.fixture(scope="module")
def gateway_stack():
    with Stack(mode="local", profile="fast", own=[OwnService("api", cmd=GATEWAY_UPSTREAM)]) as s:
        yield s


@MALFORMED
def test_the_gateway_answers_a_malformed_http_request_400_json(gateway_stack, request_bytes):
    """The gateway parses with httptools, not h11 (simstack/services.py): the same requests get the same JSON."""
    assert_malformed_gets_400_json(gateway_stack.endpoints.api_url, request_bytes)


@pytest.mark.parametrize("ends", [False, True], ids=["head-never-ends", "complete-head"])
def test_the_gateway_answers_an_http_head_over_16_kib_431_json(gateway_stack, ends):
    assert_431_json(big_head_answer(gateway_stack.endpoints.api_url, ends))


def test_the_gateway_serves_a_head_just_under_16_kib(gateway_stack):
    with http(gateway_stack.endpoints.api_url) as client:
        r = client.get("/health", headers={"X-Big": "a" * 15_000})
    assert r.status_code == 200, r.text


def test_the_gateway_answers_an_upgrade_with_oversized_headers_431_json_at_once(gateway_stack):
    raw = upgrade_request(f"Authorization: Bearer {'a' * 9000}\r\n")
    status, headers, body = parse_response(raw_exchange(gateway_stack.endpoints.ws_url, raw))
    assert status == 431 and headers["content-type"] == "application/json" and json.loads(body)["detail"]


async def test_an_e2e_trigger_fires_at_the_gateway(gateway_stack):
    gateway_stack.faults.add("drop_connection", trigger={"e2e": True})
    try:
        async with connect_ws(gateway_stack, mint("staging_pipeline_test_user_1")) as ws:
            with pytest.raises(ConnectionClosedError) as info:
                while True:
                    await recv_json(ws)
        async with connect_ws(gateway_stack, mint("staging_pipeline_test_user_1"), e2e=False) as ws:
            assert await recv_json(ws)   # the upstream's hello: no E2E headers, no fault
    finally:
        gateway_stack.faults.reset()
    assert info.value.rcvd is None
