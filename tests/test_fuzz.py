"""Seeded fuzz of the stand-ins' client-facing surface (issue 9): frames, tokens, bodies and raw HTTP.

Bounded and deterministic: ``random.Random(SEED)`` picks every input (``SIMSTACK_FUZZ_SEED`` replays
another seed; a failure names the seed and the input). Loopback only, against a real local stack
(fast profile) through Toxiproxy. What must hold for every input:

- the stand-ins never restart (same processes, still running, api uptime still counting);
- every frame gets an answer within 2 s (``pong``, ``agent_status``, ``error`` or ``agent_started``),
  and every frame the server sends is RFC 8259 JSON with a ``type``;
- a connection only ever ends with a documented close: 1007 after a text frame that is not UTF-8,
  1009 after a frame over 16 MiB, 1008 after an ``AGENT_NOT_FOUND`` error; never 1011, never a cut;
- every upgrade is answered within 2 s with 101, 400 (a malformed ``Sec-WebSocket-Protocol``), 403, 414 or
  431 (a request line or header over 8 KiB), a refusal always with a JSON body, never a 5xx;
- every HTTP error is a 4xx with a JSON body; nothing answers 5xx.
"""
from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import socket
import string
import time
from urllib.parse import quote, urlparse

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from standin_client import E2E_HEADERS, mint

SEED = int(os.environ.get("SIMSTACK_FUZZ_SEED", "20261126"))
FRAMES_PER_CONNECTION = 800
CONNECTIONS = 4
TOKENS = 300
BODIES = 300
ANSWER_S = 2.0
DIRECT_ANSWERS = ("pong", "agent_status", "error", "agent_started")
AGENTS = ("supervisor_agent", "unified_data_agent", "optimization_agent")
SIXTEEN_MIB = 16 * 1024 * 1024


class Finding(AssertionError):
    """A property that did not hold, with what caused it."""


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def rfc8259(text: str):
    def refuse(name):
        raise ValueError(f"{name} is not JSON")
    return json.loads(text, parse_constant=refuse)


# ---------------------------------------------------------------- generators

def json_value(rng: random.Random, depth: int = 0):
    kind = rng.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return rng.randint(-10**6, 10**6)
    if kind == 1:
        return rng.choice([0.5, -1e300, 1e-300, 3.14, 2**63])
    if kind == 2:
        return "".join(rng.choice(string.printable + "é€😀\u0000") for _ in range(rng.randrange(12)))
    if kind == 3:
        return rng.choice([True, False, None])
    if kind == 4:
        return rng.choice(["ping", "start_agent", "chat", "message", "user_message", "get_agent_status", ""])
    if kind == 5:
        return rng.choice(AGENTS + ("nonexistent_agent",))
    if kind == 6:
        return [json_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(["type", "payload", "user_request", "agent_type", "thread_id", "content", "message", "x"]):
            json_value(rng, depth + 1) for _ in range(rng.randrange(5))}


def deep(rng: random.Random) -> str:
    depth = rng.choice([99, 100, 101, 150, 999, 1000, 1001, 5000, 20000])
    opener, closer = rng.choice([("[", "]"), ('{"a":', "}")])
    inner = opener * depth + "1" + closer * depth
    return inner if rng.random() < 0.5 else json.dumps({"type": "start_agent", "payload": "X"}).replace('"X"', inner)


def valid_frame(rng: random.Random) -> dict:
    return rng.choice([
        {"type": "ping", "timestamp": time.time()},
        {"type": "get_agent_status"},
        {"type": "start_agent", "payload": {"user_request": "Analyse my AI spend", "agent_type": rng.choice(AGENTS)},
         "thread_id": f"t-{rng.randrange(1000)}"},
        {"type": rng.choice(["chat", "message", "user_message"]), "content": "How do I cut cost?"},
        {"type": "no_such_type"},
        {},
    ])


def frame(rng: random.Random) -> tuple[str, str | bytes, bool]:
    """(category, data, send as text). Bytes sent as text are a text frame that is not UTF-8."""
    roll = rng.random()
    if roll < 0.10:
        return "random bytes", rng.randbytes(rng.randrange(1, 300)), False
    if roll < 0.105:
        return "invalid utf-8 text", b'{"type":"ping","x":"' + rng.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80"]) + b'"}', True
    if roll < 0.23:
        return "deep", deep(rng), True
    if roll < 0.40:
        return "wrong types", json.dumps({**valid_frame(rng), **{k: json_value(rng) for k in rng.sample(
            ["type", "payload", "thread_id", "content", "message"], rng.randrange(1, 3))}}), True
    if roll < 0.50:
        text = json.dumps(valid_frame(rng) or {"type": "ping"})
        bad = rng.choice(["NaN", "Infinity", "-Infinity", "1e999", "-1e400"])
        return "non-finite", text[:-1] + (", " if len(text) > 2 else "") + f'"n": {bad}}}', True
    if roll < 0.55:
        return "lone surrogate", '{"type":"chat","content":"\\ud800' + rng.choice(["", "x", "\\u0041"]) + '"}', True
    if roll < 0.555:
        pad = "x" * rng.choice([100_000, 1_000_000])
        return "huge", json.dumps({"type": "start_agent", "payload": {"user_request": pad}}), True
    if roll < 0.65:
        text = json.dumps(valid_frame(rng))
        cut = rng.randrange(len(text) + 1)
        return "mutated", text[:cut] + rng.choice(['"', "}", "]", ",", "\\", "", "\x00"]) + text[cut + 1:], True
    if roll < 0.70:
        data = json.dumps(valid_frame(rng)).encode()
        return "valid as binary", data, False
    if roll < 0.72:
        return "random json", json.dumps(json_value(rng)), True
    return "valid", json.dumps(valid_frame(rng)), True


def hostile_token(rng: random.Random) -> str:
    good = mint(f"e2e-fuzz-{rng.randrange(1000)}")
    header, claims, sig = good.split(".")
    roll = rng.randrange(12)
    if roll == 0:
        return b64(rng.randbytes(rng.randrange(1, 200)))
    if roll == 1:
        return ".".join(b64(rng.randbytes(rng.randrange(40))) for _ in range(3))
    if roll == 2:
        return f"{b64(deep(rng).encode())}.{claims}.{sig}"
    if roll == 3:
        return f"{header}.{b64(deep(rng).encode())}.{sig}"
    if roll == 4:
        bad = rng.choice(["NaN", "Infinity", "1e999", '"never"', "true", "[1]", "{}"])
        return header + "." + b64(('{"sub": "e2e-x", "exp": ' + bad + "}").encode()) + "." + sig
    if roll == 5:
        return f"{header}.{b64(json.dumps({'sub': json_value(rng), 'exp': json_value(rng)}).encode())}.{sig}"
    if roll == 6:
        return f"{header}.{claims}.{sig}" + rng.choice(["", ".", "..", "=", "%", "é"])
    if roll == 7:
        return good[: rng.randrange(len(good))]
    if roll == 8:
        return f"{header}.{b64(json.dumps({'sub': 'x' * rng.choice([100, 5000, 9000])}).encode())}.{sig}"
    if roll == 9:
        return f"{header}.{b64(b'[1, 2]')}.{sig}"
    if roll == 10:
        return header + "." + b64(b'{"sub": "\\ud800"}') + "." + sig
    return good


# ---------------------------------------------------------------- the properties

async def answered(ws, deadline_s: float) -> dict:
    """The next direct answer (frames of earlier agent runs are skipped); every frame must be RFC 8259 JSON."""
    end = time.monotonic() + deadline_s
    while True:
        raw = await asyncio.wait_for(ws.recv(), max(0.01, end - time.monotonic()))
        message = rfc8259(raw)
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            raise Finding(f"a frame without a type: {raw[:200]!r}")
        if message["type"] in DIRECT_ANSWERS:
            return message


async def open_ws(stack, token: str):
    ws = await connect(stack.endpoints.ws_url, max_size=None, open_timeout=ANSWER_S, close_timeout=2,
                       additional_headers={**E2E_HEADERS, "Authorization": f"Bearer {token}"}, proxy=None)
    while (rfc8259(await asyncio.wait_for(ws.recv(), ANSWER_S)))["type"] != "system_message":
        pass
    return ws


async def fuzz_connection(stack, token: str, rng: random.Random, n: int, tally: dict) -> None:
    ws = await open_ws(stack, token)
    tally["connections"] += 1
    try:
        for _ in range(n):
            category, data, as_text = frame(rng)
            expected_close = (1007 if as_text and isinstance(data, bytes) else
                              1009 if len(data) > SIXTEEN_MIB else None)
            where = f"{category} frame {data[:120]!r}"
            try:
                await ws.send(data, text=as_text)
                answer = await answered(ws, ANSWER_S)
                if answer.get("error_code") == "AGENT_NOT_FOUND":
                    expected_close = 1008
                    await answered(ws, ANSWER_S)     # the close comes next
                if expected_close:
                    raise Finding(f"{where}: expected close {expected_close}, the socket stayed open")
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd else None
                if code != expected_close or code is None:
                    raise Finding(f"{where}: closed {code} {exc.rcvd.reason if exc.rcvd else 'without a close frame'}"
                                  f" (documented here: {expected_close})") from None
                tally["closes"][code] = tally["closes"].get(code, 0) + 1
                ws = await open_ws(stack, token)
                tally["connections"] += 1
            except asyncio.TimeoutError:
                raise Finding(f"{where}: no answer within {ANSWER_S} s") from None
            tally["frames"] += 1
    finally:
        await ws.close()


async def upgrade_with(stack, token: str, e2e: bool, tally: dict) -> None:
    headers = dict(E2E_HEADERS) if e2e else {}
    place = tally["tokens"] % 3
    url = stack.endpoints.ws_url
    if place == 0:
        headers["Authorization"] = f"Bearer {token}"
    elif place == 1:
        entry = "jwt." + b64(token.encode())
        headers["Sec-WebSocket-Protocol"] = entry if tally["tokens"] % 2 else f"{entry}, jwt.{token[:40]}, é, ,"
    else:
        url += "?token=" + quote(token, safe="")
    try:
        async with connect(url, additional_headers=headers, open_timeout=ANSWER_S, proxy=None):
            status = 101
    except InvalidStatus as exc:
        status = exc.response.status_code
        if exc.response.headers.get("Content-Type") != "application/json" or not json.loads(exc.response.body)["detail"]:
            raise Finding(f"upgrade with token {token[:120]!r}: HTTP {status} without a JSON body: "
                          f"{exc.response.body[:120]!r}") from None
    except asyncio.TimeoutError:
        raise Finding(f"upgrade with token {token[:120]!r}: no answer within {ANSWER_S} s") from None
    if status not in (101, 400, 403, 414, 431):
        raise Finding(f"upgrade with token {token[:120]!r} ({'lenient' if e2e else 'strict'}): HTTP {status}")
    tally["upgrades"][status] = tally["upgrades"].get(status, 0) + 1


def check_http(r: httpx.Response, what: str, tally: dict) -> None:
    if r.status_code >= 500 or (r.status_code >= 400 and not r.headers.get("content-type", "").startswith(
            "application/json")):
        raise Finding(f"{what}: HTTP {r.status_code} {r.headers.get('content-type')} {r.text[:200]!r}")
    if r.status_code >= 400:
        r.json()
    tally["http"][r.status_code] = tally["http"].get(r.status_code, 0) + 1


def raw_http(url: str, request: bytes) -> tuple[int, str, bytes]:
    u = urlparse(url)
    with socket.create_connection((u.hostname, u.port), timeout=ANSWER_S) as s:
        s.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < 10:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    ctype = next((v for k, _, v in (h.partition(": ") for h in lines[1:]) if k.lower() == "content-type"), "")
    return int(lines[0].split()[1]), ctype, body


def standins(stack) -> dict:
    procs = getattr(stack.launcher, "procs", {})
    with httpx.Client(trust_env=False, timeout=ANSWER_S) as c:
        uptime = c.get(stack.endpoints.api_url + "/api/health").json()["uptime_seconds"]
    return {"pids": {n: (p.pid, p.poll()) for n, p in procs.items() if n in ("api", "auth")}, "uptime": uptime}


# ---------------------------------------------------------------- the test

@pytest.mark.mode_independent   # once, against local processes: the docker image runs the same code
def test_hostile_frames_tokens_and_requests_never_get_a_1011_a_5xx_or_a_restart(stack):
    rng = random.Random(SEED)
    tally = {"frames": 0, "connections": 0, "closes": {}, "tokens": 0, "upgrades": {}, "http": {}, "bodies": 0}
    before = standins(stack)
    assert before["pids"] and all(code is None for _, code in before["pids"].values())
    token = stack.token()
    t0 = time.monotonic()
    try:
        seeds = [rng.randrange(2**32) for _ in range(CONNECTIONS)]

        async def frames_and_tokens():
            await asyncio.gather(*(fuzz_connection(stack, token, random.Random(s), FRAMES_PER_CONNECTION, tally)
                                   for s in seeds))
            async with connect(stack.endpoints.ws_url, max_size=None, proxy=None, open_timeout=ANSWER_S,
                               additional_headers={**E2E_HEADERS, "Authorization": f"Bearer {token}"}) as ws:
                await ws.send('{"type":"ping","pad":"' + "x" * SIXTEEN_MIB + '"}')   # one frame over the limit
                try:
                    while True:
                        await asyncio.wait_for(ws.recv(), 5)
                except ConnectionClosed as exc:
                    if not exc.rcvd or exc.rcvd.code != 1009:
                        raise Finding(f"a frame over 16 MiB: closed {exc.rcvd}, documented 1009") from None
                    tally["closes"][1009] = tally["closes"].get(1009, 0) + 1
            for i in range(TOKENS):
                await upgrade_with(stack, hostile_token(rng), e2e=i % 2 == 0, tally=tally)
                tally["tokens"] += 1

        asyncio.run(frames_and_tokens())

        with httpx.Client(trust_env=False, timeout=ANSWER_S) as api, \
                httpx.Client(trust_env=False, timeout=ANSWER_S) as auth:
            for _ in range(TOKENS):
                t = hostile_token(rng)
                try:
                    header = {"Authorization": f"Bearer {t}"}
                    check_http(auth.post(stack.endpoints.auth_url + "/auth/validate", headers=header), f"validate {t[:80]!r}", tally)
                    check_http(api.get(stack.endpoints.api_url + "/api/agents", headers=header), f"api with {t[:80]!r}", tally)
                except (UnicodeEncodeError, httpx.LocalProtocolError):   # a header value no client sends
                    pass                                                  # (non-ASCII, or "Bearer " alone)
                check_http(auth.post(stack.endpoints.auth_url + "/auth/validate", json={"token": t}), "validate body", tally)
            targets = [(api, stack.endpoints.api_url, p) for p in ("/api/agents/execute", "/api/agents/supervisor_agent/execute",
                                                                    "/api/messages")]
            targets += [(auth, stack.endpoints.auth_url, p) for p in ("/auth/e2e/test-auth", "/auth/validate")]
            for _ in range(BODIES):
                client, base, path = rng.choice(targets)
                category, body, _ = frame(rng)
                key = rng.choice(["k", "ké", "\u00ff" * 3, ""]).encode("utf-8")
                r = client.post(base + path, content=body, headers={"content-type": "application/json",
                                                                     "X-E2E-Bypass-Key": key})
                check_http(r, f"POST {path} with a {category} body {body[:80]!r}", tally)
                tally["bodies"] += 1

        for request in (b"POST /api/messages HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
                        b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
                        b"GET /he alth HTTP/1.1\r\nHost: x\r\n\r\n", b"GET /health HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 20000 + b"\r\n"):
            for url in (stack.endpoints.api_url, stack.endpoints.auth_url):
                status, ctype, body = raw_http(url, request)
                if not (400 <= status < 500 and ctype == "application/json" and json.loads(body)["detail"]):
                    raise Finding(f"raw request {request[:60]!r}: {status} {ctype} {body[:120]!r}")
    except Finding as exc:
        raise Finding(f"{exc}\n  fuzz seed {SEED}: replay with SIMSTACK_FUZZ_SEED={SEED}") from None

    after = standins(stack)
    assert after["pids"] == before["pids"] and after["uptime"] > before["uptime"], \
        f"a stand-in restarted: {before} -> {after} (fuzz seed {SEED})"
    print(f"\nfuzz seed {SEED}: {tally['frames']} frames over {tally['connections']} connections, "
          f"closes {tally['closes']}; {tally['tokens']} tokens on upgrades {tally['upgrades']}; "
          f"{tally['bodies']} bodies; HTTP statuses {tally['http']}; {time.monotonic() - t0:.1f} s")
    assert tally["frames"] == CONNECTIONS * FRAMES_PER_CONNECTION and tally["tokens"] == TOKENS
