"""Record a service while it answers, replay it when it is gone (issue 12).

"Pretend staging" is a stand-in stack started on its own, playing the real deployment: simstack
records it through the gateway (``--api-url``/``--auth-url``), then serves the cassette in its
place. Real processes, real sockets, no mocks.
"""
from __future__ import annotations

import asyncio
import base64
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from simstack import cassette
from simstack.own import OwnService
from simstack.recording import RecordOptions, replay_services, replaying
from simstack.shared.errors import SimstackError
from simstack.stack import Stack

TESTS = Path(__file__).resolve().parent
EXAMPLE = TESTS / "example_suite"
BASE = ["-p", "no:cacheprovider", "-o", "asyncio_default_fixture_loop_scope=function"]


def recording_stack(staging: Stack, out: Path, **kw) -> Stack:
    e = staging.endpoints
    return Stack(mode="local", profile="fast", own=[OwnService("api", url=e.api_url), OwnService("auth", url=e.auth_url)],
                 cassette=RecordOptions.prepare(str(out), **kw))


def traffic(junit: Path) -> dict[str, dict]:
    """The plugin's per-test traffic (the ``simstack_traffic`` property of each test in the JUnit XML)."""
    import xml.etree.ElementTree as ET
    out = {}
    for case in ET.parse(junit).iter("testcase"):
        for prop in case.iter("property"):
            if prop.get("name") == "simstack_traffic":
                t = json.loads(prop.get("value"))
                out[case.get("name")] = {k: t[k] for k in ("http", "ws", "events", "ws_accepted", "ws_silent",
                                                           "ws_refused", "closes")}
    return out


async def agent_run(ws_url: str, token: str, message: dict | None = None, timeout: float = 3.0):
    """Frames the server sends after one start_agent, and the close code (None: still open)."""
    frames = []
    async with connect(ws_url, additional_headers={"Authorization": f"Bearer {token}", "X-E2E-Test": "true"},
                       open_timeout=5, close_timeout=2) as ws:
        try:
            await ws.send(json.dumps(message or {"type": "start_agent", "payload": {"user_request": "Analyze my AI costs"}}))
            while not frames or frames[-1].get("type") not in ("agent_completed",):
                frames.append(json.loads(await asyncio.wait_for(ws.recv(), timeout)))
        except ConnectionClosed as exc:
            return frames, exc.rcvd.code if exc.rcvd else 1006, exc.rcvd.reason if exc.rcvd else None
        except asyncio.TimeoutError:
            return frames, None, None
    return frames, ws.close_code, ws.close_reason   # the client closed after the run: what the server echoed


# ---------------------------------------------------------------- record, then replay a suite

@pytest.fixture
def pretend_staging():
    """Started before ``pytester`` (which forgets modules imported during a test, and a stack started
    inside one would leave httpx with a second copy of httpcore for every later test)."""
    with Stack(mode="local", profile="staging") as staging:
        yield staging


def test_a_suite_recorded_against_pretend_staging_passes_against_the_replay_with_the_same_traffic(
        pretend_staging, pytester):
    shutil.copytree(EXAMPLE, pytester.path, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    out = pytester.path / "cassette"   # kept with the suite, as a team would commit it
    e = pretend_staging.endpoints
    recorded = pytester.runpytest_subprocess(
        *BASE, "--simstack=local", "--simstack-record", str(out), "--simstack-record-api", e.api_url,
        "--simstack-record-auth", e.auth_url, "--simstack-require-traffic", "--junitxml=recorded.xml", timeout=180)
    pretend_staging.stop()
    recorded.assert_outcomes(passed=2)
    assert f"simstack: cassette {out}: 4 file(s), 3 HTTP exchange(s), 1 WebSocket session(s)" in recorded.errlines
    names = sorted(p.name for p in out.iterdir())
    # the conftest's import-time health probe (before any test), simstack's token, one file per test
    assert names == ["session.jsonl", "simstack.jsonl", "test_staging.py_test_agent_run_reports_all_events.jsonl",
                     "test_staging.py_test_health.jsonl"], names
    # pretend staging is gone now: the suite runs against the cassette alone
    replayed = pytester.runpytest_subprocess(*BASE, "--simstack=local", "--simstack-replay", str(out),
                                             "--simstack-require-traffic", "--junitxml=replayed.xml", timeout=180)
    replayed.assert_outcomes(passed=2)
    before, after = traffic(pytester.path / "recorded.xml"), traffic(pytester.path / "replayed.xml")
    assert set(before) == {"test_health", "test_agent_run_reports_all_events"}
    assert after == before, (before, after)
    assert before["test_agent_run_reports_all_events"] == {"http": 0, "ws": 1, "events": 5, "ws_accepted": 1,
                                                           "ws_silent": 0, "ws_refused": 0, "closes": [1000]}


@pytest.fixture(scope="module")
def staging():
    """Pretend staging for the tests below (fast profile), healthy at the start of each."""
    with Stack(mode="local", profile="fast") as s:
        yield s


def test_the_staging_1011_recorded_replays_as_a_1011_with_no_frame_before_it(staging, tmp_path):
    out = tmp_path / "cassette"
    staging.faults.add("race_on_accept", "ws", register_delay_ms=500, fixed=False)   # scenario repro-1011
    try:
        with recording_stack(staging, out) as rec:
            frames, code, reason = asyncio.run(agent_run(rec.endpoints.ws_url, rec.token()))
    finally:
        staging.faults.reset()
    assert (frames, code, reason) == ([], 1011, "Internal error")
    [ws] = [e.data for e in cassette.load(out) if e.kind == "ws"]
    assert (ws["status"], ws["closed_by"], ws["close_code"]) == (101, "server", 1011)
    assert not [f for f in ws["frames"] if f["dir"] == "out"]
    with Stack(mode="local", profile="fast", **replaying(str(out))) as replay:
        frames, code, reason = asyncio.run(agent_run(replay.endpoints.ws_url, replay.token()))
    assert (frames, code, reason) == ([], 1011, "Internal error")


@pytest.fixture(scope="module")
def replay_of_a_run(staging, tmp_path_factory):
    """A cassette of one health check, one unknown path, one agent run and one unknown agent; its replay."""
    out = tmp_path_factory.mktemp("replay") / "cassette"
    with recording_stack(staging, out) as rec:
        token = rec.token()
        with httpx.Client(trust_env=False) as http:
            assert http.get(f"{rec.endpoints.api_url}/health").status_code == 200
            assert http.get(f"{rec.endpoints.api_url}/api/nonexistent").status_code == 404
        asyncio.run(agent_run(rec.endpoints.ws_url, token))
        asyncio.run(agent_run(rec.endpoints.ws_url, token, {"type": "start_agent", "payload": {
            "user_request": "x", "agent_type": "nonexistent_agent"}}))
    with Stack(mode="local", profile="fast", **replaying(str(out))) as replay:
        yield replay, out


def test_replay_answers_recorded_http_and_names_the_near_miss(replay_of_a_run):
    replay, _ = replay_of_a_run
    with httpx.Client(base_url=replay.endpoints.api_url, trust_env=False) as http:
        health = http.get("/health")
        assert health.status_code == 200 and health.json()["service"] == "netra-ai-platform"
        assert http.get("/api/nonexistent").json()["error_code"] == "NOT_FOUND"
        miss = http.get("/healthz")
    assert miss.status_code == 404
    assert miss.json()["error_code"] == "NOT_RECORDED"
    assert miss.json()["near_miss"]["request"] == "GET /health"
    assert "closest recorded request: GET /health" in miss.json()["detail"]


def test_replay_answers_each_client_frame_like_the_recording_did(replay_of_a_run):
    replay, _ = replay_of_a_run
    token = replay.token()
    frames, code, _ = asyncio.run(agent_run(replay.endpoints.ws_url, token))
    types = [f["type"] for f in frames]
    assert types == ["handshake_validation", "ping", "system_message",   # once, whichever session welcomed it
                     "agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_completed"]
    assert code == 1000   # the client closed, as it did when recording
    frames, code, reason = asyncio.run(agent_run(replay.endpoints.ws_url, token, {
        "type": "start_agent", "payload": {"user_request": "y", "agent_type": "nonexistent_agent"}}))
    assert [f["type"] for f in frames if f["type"] == "error"] == ["error"]
    assert "nonexistent_agent" in [f for f in frames if f["type"] == "error"][0]["message"]
    assert code == 1008


def test_faults_still_apply_on_top_of_a_replay(replay_of_a_run):
    replay, _ = replay_of_a_run
    replay.faults.add("close_after_accept", "ws")
    try:
        frames, code, reason = asyncio.run(agent_run(replay.endpoints.ws_url, replay.token()))
    finally:
        replay.faults.reset()
    assert (frames, code, reason) == ([], 1011, "Internal error")
    replay.faults.add("cold_start", "api")
    try:
        r = httpx.get(f"{replay.endpoints.api_url}/health", trust_env=False)
    finally:
        replay.faults.reset()
    assert r.status_code == 503


# ---------------------------------------------------------------- redaction

def test_no_secret_used_while_recording_appears_in_the_cassette(staging, tmp_path):
    out = tmp_path / "cassette"
    cookie, custom, bypass, key_value = ("cookie-secret-4242xyz", "custom-header-secret-77", "bypass-key-secret-99",
                                         "json-key-secret-1234")
    with recording_stack(staging, out, redact_headers=["X-Team-Key"], redact_keys=["team_secret"]) as rec:
        token = rec.token()
        other = rec.token("someone-else@staging.netra.test")
        with httpx.Client(trust_env=False) as http:
            http.get(f"{rec.endpoints.api_url}/health", params={"token": token},
                     headers={"Authorization": f"Bearer {token}", "Cookie": f"session={cookie}", "X-Team-Key": custom})
            http.post(f"{rec.endpoints.auth_url}/auth/e2e/test-auth", headers={"X-E2E-Bypass-Key": bypass},
                      json={"email": "a@b.test", "name": "A", "permissions": [], "team_secret": key_value})
            http.post(f"{rec.endpoints.auth_url}/auth/validate", json={"token": other})

        async def ws() -> None:
            async with connect(f"{rec.endpoints.ws_url}?token={token}", subprotocols=[f"jwt.{b64(other)}"],
                               additional_headers={"Authorization": f"Bearer {token}", "X-E2E-Test": "true"},
                               open_timeout=5) as w:
                await w.send(json.dumps({"type": "user_message", "content": f"my token is {other}"}))
                await asyncio.wait_for(w.recv(), 3)
        asyncio.run(ws())
    text = "\n".join(p.read_text() for p in out.iterdir())
    secrets = [token, other, *(t.rsplit(".", 1)[1] for t in (token, other)), b64(token), b64(other),
               cookie, custom, bypass, key_value]
    assert [s for s in secrets if s in text] == []
    assert cassette.REDACTED_SIGNATURE in text and "session=<redacted>" in text and "jwt." in text


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


# ---------------------------------------------------------------- bad input

def _cassette(tmp_path: Path, lines: list[str], name: str = "t.jsonl") -> Path:
    d = tmp_path / "bad"
    d.mkdir(exist_ok=True)
    (d / name).write_text("".join(line + "\n" for line in lines))
    return d


HEADER = json.dumps({"simstack_cassette": 1, "label": "t"})
HTTP = json.dumps({"kind": "http", "service": "api", "method": "GET", "path": "/health", "query": "", "status": 200,
                   "request": {"headers": [], "body": None}, "response": {"headers": [], "body": {"json": {}}},
                   "latency_ms": 1})


def test_a_truncated_line_is_reported_with_its_file_and_line(tmp_path):
    d = _cassette(tmp_path, [HEADER, HTTP, HTTP[:40]])
    with pytest.raises(cassette.CassetteError, match=r"t\.jsonl:3: not a JSON line"):
        cassette.load(d)


def test_another_format_version_is_refused(tmp_path):
    d = _cassette(tmp_path, [json.dumps({"simstack_cassette": 2}), HTTP])
    with pytest.raises(cassette.CassetteError, match=r"t\.jsonl:1: cassette format version 2, this simstack reads version 1"):
        cassette.load(d)


def test_an_empty_cassette_is_refused_before_anything_starts(tmp_path):
    d = _cassette(tmp_path, [HEADER])
    with pytest.raises(SimstackError, match="is empty: 1 file"):
        replay_services(str(d))
    (tmp_path / "none").mkdir()
    with pytest.raises(SimstackError, match="is empty: no .jsonl file"):
        replay_services(str(tmp_path / "none"))


def _cli(*args, env_dir: Path) -> subprocess.CompletedProcess:
    import os
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost,::1"}
    return subprocess.run([sys.executable, "-m", "simstack.cli", *args], capture_output=True, text=True,
                          timeout=60, env=env, cwd=env_dir)


def test_cli_bad_cassettes_get_one_line_with_file_and_line(tmp_path):
    d = _cassette(tmp_path, [HEADER, "{\"kind\": \"http\", \"service\": \"api\""])
    r = _cli("up", "--replay", str(d), env_dir=tmp_path)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "t.jsonl:2: not a JSON line" in r.stderr and "Traceback" not in r.stderr


def test_record_from_a_target_that_refuses_says_which_and_writes_nothing(tmp_path):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]   # nothing listens here
    out = tmp_path / "cassette"
    r = _cli("record", "--api-url", f"http://127.0.0.1:{port}", "--out", str(out), env_dir=tmp_path)
    assert r.returncode == 2, r.stderr
    assert f"--api-url http://127.0.0.1:{port}: http://127.0.0.1:{port}/health cannot be reached (ConnectError" \
        in r.stderr and "nothing was recorded" in r.stderr
    assert not out.exists()


def test_record_refuses_a_directory_holding_a_cassette(tmp_path):
    d = _cassette(tmp_path, [HEADER, HTTP])
    r = _cli("record", "--api-url", "http://127.0.0.1:9", "--out", str(d), env_dir=tmp_path)
    assert r.returncode == 2 and "already holds a cassette (1 file(s), e.g. t.jsonl)" in r.stderr
    assert (d / "t.jsonl").read_text().count("\n") == 2


# ---------------------------------------------------------------- drift

def _target(stack: Stack):
    from simstack.drift import Target
    e = stack.endpoints
    return Target(e.api_url, e.ws_url.rsplit("/ws", 1)[0], e.auth_url, stack.token())


def _edited(src: Path, dst: Path, edit) -> Path:
    """A copy of the cassette with ``edit(entry_dict)`` applied to every entry line."""
    dst.mkdir()
    for p in src.iterdir():
        lines = p.read_text().splitlines()
        entries = [json.loads(line) for line in lines[1:]]
        for d in entries:
            edit(d)
        out = [lines[0]] + [json.dumps(d) for d in entries]
        (dst / p.name).write_text("\n".join(out) + "\n")
    return dst


def test_drift_finds_nothing_against_the_stack_that_produced_the_cassette(staging, replay_of_a_run):
    from simstack.drift import drift
    rows, notes, checked = drift(str(replay_of_a_run[1]), _target(staging))
    assert (rows, notes) == ([], []) and checked == 5   # the session token, 2 HTTP requests, 2 WebSockets


def _rename_status(d):
    if d["kind"] == "http" and d["path"] == "/health":
        body = d["response"]["body"]["json"]
        body["state"] = body.pop("status")


def _not_found_was_410(d):
    if d["kind"] == "http" and d["path"] == "/api/nonexistent":
        d["status"] = 410


def _lose_tool_completed(d):
    if d["kind"] == "ws":
        d["frames"] = [f for f in d["frames"] if (f.get("json") or {}).get("type") != "tool_completed"]


def _unknown_agent_closed_1011(d):
    if d["kind"] == "ws" and d["close_code"] == 1008:
        d["close_code"] = 1011


@pytest.mark.parametrize("edit, field, recorded, served", [
    (_rename_status, "body.state", "string", "missing"),
    (_not_found_was_410, "status", "410", "404"),
    (_lose_tool_completed, "frames", "handshake_validation ping system_message agent_started agent_thinking "
                                     "tool_executing agent_completed", "handshake_validation ping system_message "
                                     "agent_started agent_thinking tool_executing tool_completed agent_completed"),
    (_unknown_agent_closed_1011, "close", "server 1011", "server 1008"),
], ids=["renamed-json-field", "changed-status", "missing-agent-event", "changed-close-code"])
def test_drift_reports_what_was_edited_into_the_cassette(staging, replay_of_a_run, tmp_path, edit, field,
                                                         recorded, served):
    from simstack.drift import drift
    rows, _, _ = drift(str(_edited(replay_of_a_run[1], tmp_path / "edited", edit)), _target(staging))
    found = [(r.field, r.recorded, r.served) for r in rows]
    assert (field, recorded, served) in found, found
    if edit is _rename_status:
        assert ("body.status", "missing", "string") in found and len(found) == 2
    else:
        assert len(found) == 1, found


def test_drift_cli_prints_one_row_per_difference_and_exits_non_zero(staging, replay_of_a_run, tmp_path):
    edited = _edited(replay_of_a_run[1], tmp_path / "edited", _not_found_was_410)
    e = staging.endpoints
    r = _cli("drift", str(edited), "--against", e.api_url, "--auth-url", e.auth_url, "--json", env_dir=tmp_path)
    assert r.returncode == 1, r.stderr
    report = json.loads(r.stdout)
    assert [(d["field"], d["recorded"], d["served"]) for d in report["drift"]] == [("status", "410", "404")]
    assert report["drift"][0]["where"].endswith("GET /api/nonexistent")
    r = _cli("drift", str(replay_of_a_run[1]), "--against", "stand-ins", env_dir=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "no drift: 5 recorded exchange(s) answered alike by stand-ins" in r.stdout


def test_record_from_a_target_that_hangs_says_so_and_writes_nothing(tmp_path):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)   # connections are accepted by the kernel and never answered
        port = s.getsockname()[1]
        out = tmp_path / "cassette"
        r = _cli("record", "--api-url", f"http://127.0.0.1:{port}", "--out", str(out), env_dir=tmp_path)
    assert r.returncode == 2, r.stderr
    assert f"the service accepted but did not answer http://127.0.0.1:{port}/health within 3 s (ReadTimeout)" \
        in r.stderr
    assert not out.exists()


def test_replayed_http_answers_keep_their_recorded_latency(tmp_path):
    d = _cassette(tmp_path, [HEADER, HTTP.replace('"latency_ms": 1', '"latency_ms": 400')])
    with Stack(mode="local", profile="fast", **replaying(str(d))) as replay, \
            httpx.Client(base_url=replay.endpoints.api_url, trust_env=False) as http:
        http.get("/nothing-recorded-here")   # a first request on the connection
        t0 = time.perf_counter()
        r = http.get("/health")
        waited = time.perf_counter() - t0
    assert r.status_code == 200 and waited >= 0.4   # never sooner than it was recorded (suites reject fast answers)


def test_a_detached_recording_works_with_env_fault_and_down(staging, tmp_path):
    e = staging.endpoints
    out = tmp_path / "cassette"
    r = _cli("record", "--api-url", e.api_url, "--auth-url", e.auth_url, "--out", str(out), "--detach",
             env_dir=tmp_path)
    assert r.returncode == 0, r.stderr
    stack_id = re.search(r"simstack (\w+): ", r.stdout).group(1)
    try:
        env = _cli("env", "--id", stack_id, env_dir=tmp_path)
        api_url = re.search(r"export SIMSTACK_API_URL=(\S+)", env.stdout).group(1)
        assert httpx.get(f"{api_url}/health", trust_env=False).status_code == 200
        assert _cli("fault", "add", "cold_start", "--target", "api", "--stack", stack_id,
                    env_dir=tmp_path).returncode == 0
        assert httpx.get(f"{api_url}/api/health", trust_env=False).status_code == 503   # a fault: not recorded
    finally:
        assert _cli("down", "--id", stack_id, env_dir=tmp_path).returncode == 0
    recorded = [(x.data["method"], x.data["path"], x.data["status"]) for x in cassette.load(out) if x.kind == "http"]
    assert ("GET", "/health", 200) in recorded and ("POST", "/auth/e2e/test-auth", 200) in recorded
    assert not [p for p in recorded if p[1] == "/api/health"]


# ---------------------------------------------------------------- matching (the player in-process)

def _ws_entry(client: dict, answer: list[dict], close: int | None = None) -> str:
    frames = [{"dir": "in", "t_ms": 1.0, "json": client}] + [
        {"dir": "out", "t_ms": 2.0 + i, "json": f} for i, f in enumerate(answer)]
    return json.dumps({"kind": "ws", "service": "api", "path": "/ws", "query": "", "request": {"headers": []},
                       "status": 101, "subprotocol": None, "frames": frames,
                       "closed_by": "server" if close else "client", "close_code": close or 1000,
                       "close_reason": "bye" if close else None, "duration_ms": 10.0})


def _player(tmp_path: Path, ignore=()):
    from starlette.testclient import TestClient

    from simstack.fakes.replay import Replay
    d = _cassette(tmp_path, [HEADER,
                             _ws_entry({"type": "start_agent", "note": "a", "payload": {"agent_type": "optimization_agent"}},
                                       [{"type": "agent_started"}, {"type": "agent_completed"}]),
                             _ws_entry({"type": "start_agent", "note": "b", "payload": {"agent_type": "nonexistent_agent"}},
                                       [{"type": "error", "error_code": "AGENT_NOT_FOUND"}], close=1008)])
    return TestClient(Replay(str(d), "api", speed=0, ignore=ignore))   # served with --lifespan off: not entered


def test_a_client_frame_gets_what_followed_the_closest_recorded_one(tmp_path):
    from starlette.websockets import WebSocketDisconnect
    with _player(tmp_path).websocket_connect("/ws") as ws:
        ws.send_json({"type": "start_agent", "timestamp": "now", "payload": {"agent_type": "nonexistent_agent"}})
        assert ws.receive_json()["error_code"] == "AGENT_NOT_FOUND"
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
    assert closed.value.code == 1008


def test_fields_to_ignore_do_not_tell_recorded_frames_apart(tmp_path):
    frame = {"type": "start_agent", "note": "b", "payload": {}}   # "note" alone points at the 1008 session
    with _player(tmp_path).websocket_connect("/ws") as ws:
        ws.send_json(frame)
        assert ws.receive_json()["type"] == "error"
    (tmp_path / "i").mkdir()
    with _player(tmp_path / "i", ignore=["note"]).websocket_connect("/ws") as ws:
        ws.send_json(frame)   # now equally close to both: the session this connection was welcomed by wins
        assert [ws.receive_json()["type"], ws.receive_json()["type"]] == ["agent_started", "agent_completed"]


def test_values_the_client_chose_are_echoed_back_as_it_chose_them(tmp_path):
    d = _cassette(tmp_path, [HEADER, _ws_entry({"type": "start_agent", "thread_id": "thread_recorded_1"},
                                               [{"type": "agent_started", "thread_id": "thread_recorded_1"}])])
    from starlette.testclient import TestClient

    from simstack.fakes.replay import Replay
    with TestClient(Replay(str(d), "api", speed=0)).websocket_connect("/ws") as ws:
        ws.send_json({"type": "start_agent", "thread_id": "thread_chosen_now"})
        assert ws.receive_json() == {"type": "agent_started", "thread_id": "thread_chosen_now"}


def test_an_upgrade_is_refused_on_replay_only_when_its_credentials_look_like_a_refused_ones(tmp_path):
    refused = json.dumps({"kind": "ws", "service": "api", "path": "/ws", "query": "", "status": 403, "frames": [],
                          "request": {"headers": [["x-e2e-test", "true"]], "subprotocols": []},
                          "response": {"headers": [], "body": {"json": {"detail": "Forbidden"}}}})
    accepted = json.loads(_ws_entry({"type": "ping"}, [{"type": "pong"}]))
    accepted["request"]["headers"] = [["authorization", f"Bearer a.b.{cassette.REDACTED_SIGNATURE}"]]
    d = _cassette(tmp_path, [HEADER, refused, json.dumps(accepted)])
    from starlette.testclient import TestClient, WebSocketDenialResponse

    from simstack.fakes.replay import Replay
    client = TestClient(Replay(str(d), "api", speed=0))
    for _ in range(2):   # not in turn: by what the request carries
        with client.websocket_connect("/ws", headers={"Authorization": "Bearer x.y.z"}) as ws:
            ws.send_json({"type": "ping"})
            assert ws.receive_json() == {"type": "pong"}
        with pytest.raises(WebSocketDenialResponse) as denied:
            with client.websocket_connect("/ws"):
                pass
        assert denied.value.status_code == 403


def test_drift_puts_a_fresh_token_only_where_a_jwt_was_redacted():
    from simstack.drift import _fresh
    assert _fresh("Authorization", f"Bearer a.b.{cassette.REDACTED_SIGNATURE}", "fresh") == "Bearer fresh"
    # a suite's "not a JWT" case stays not a JWT, so the target refuses it as it was refused when recorded
    assert _fresh("Authorization", "Bearer <redacted>", "fresh") == "Bearer <redacted>"
