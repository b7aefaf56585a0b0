"""Redirected staging hostnames: every common client reaches a real stack over TLS, in this process.

The resolver, the TLS front and the throwaway CA are real; the stack is a real local stack.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import aiohttp
import httpx
import pytest
import requests
from websockets.asyncio.client import connect as aconnect
from websockets.exceptions import WebSocketException
from websockets.sync.client import connect

from simstack.endpoints import Endpoints
from simstack.shared.errors import ConfigError
from simstack.redirect import Redirection, parse_redirects
from simstack import state
from simstack.tls import ThrowawayCA
from test_cli import cli  # noqa: F401  (fixture)
from test_plugin import FAST, run

API, AUTH = "api.staging.redirect-test.invalid", "auth.staging.redirect-test.invalid"
ONLY_LOCAL = pytest.mark.mode_independent   # the redirect does not depend on the mode


def _redirects(*specs: str):
    return parse_redirects([(s, "test") for s in specs])


@pytest.fixture
def redirected(stack):
    """API and AUTH redirected to the stack, with the CA exported as the plugin exports it."""
    red = Redirection.start(_redirects(f"{API}=api", f"{AUTH}=auth"), stack.endpoints)
    saved = {k: os.environ.get(k) for k in red.env}
    os.environ.update(red.env)
    try:
        yield red
    finally:
        red.stop()
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


def _ws_headers(stack) -> dict:
    return {"Authorization": f"Bearer {stack.token()}", "X-E2E-Test": "true"}


def _kinds(stack) -> list[str]:
    return [r["kind"] for r in stack.faults.timeline()[0]]


# ------------------------------------------------------------------ bad input

@pytest.mark.parametrize("specs, message, allowed", [
    (["api.staging.x.invalid=db"], "unknown service 'db'", "api, ws, auth"),
    (["10.1.2.3=api"], "'10.1.2.3' in '10.1.2.3=api' is an IP address", "redirect the hostname"),
    (["[::1]=api"], "is an IP address", "redirect the hostname"),
    (["*.staging.x.invalid=api"], "wildcard '*.staging.x.invalid'", "list each staging host"),
    (["https://api.staging.x.invalid=api"], "is a URL, not a hostname", "api.staging.x.invalid=api"),
    (["api.staging.x.invalid:443=api"], "has a port", "every port"),
    (["api.staging.x.invalid"], "is not HOST=SERVICE", "SERVICE one of api, ws, auth"),
    (["localhost=api"], "not a hostname simstack can redirect", "not localhost"),
    (["api.x.invalid=api", "API.x.invalid.=auth"], "api.x.invalid is redirected twice, to 'api' (test) and to 'auth'",
     "a host reaches one service"),
])
def test_bad_redirects_are_refused_with_the_value_and_what_is_allowed(specs, message, allowed):
    with pytest.raises(ConfigError) as err:
        _redirects(*specs)
    assert message in err.value.message and allowed in err.value.hint


def test_the_same_redirect_twice_is_one():
    assert [(r.host, r.service) for r in _redirects("API.x.invalid=api", "api.x.invalid.=api")] == [("api.x.invalid", "api")]


# ------------------------------------------------------------------ every client, over TLS

@ONLY_LOCAL
def test_sync_clients_reach_the_stack_over_tls(stack, redirected):
    assert httpx.get(f"https://{API}/health").json()["service"] == "netra-ai-platform"
    assert requests.get(f"https://{AUTH}/health", timeout=10).json()["service"] == "auth-service"
    with urllib.request.urlopen(f"https://{API}/api/health", timeout=10) as r:
        assert json.load(r)["environment"] == "staging"
    with connect(f"wss://{API}/ws", additional_headers=_ws_headers(stack), open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "handshake_validation"
    assert _kinds(stack)[-4:] == ["http", "http", "http", "ws"]


@ONLY_LOCAL
def test_async_clients_reach_the_stack_over_tls(stack, redirected):
    headers = _ws_headers(stack)

    async def clients():
        async with httpx.AsyncClient(timeout=10) as client:
            a = (await client.get(f"https://{API}/health")).status_code
        async with aiohttp.ClientSession() as session:
            async with session.get(f"https://{AUTH}/health") as r:
                b = (await r.json())["service"]
            async with session.ws_connect(f"wss://{API}/ws", headers=headers) as ws:
                c = (await ws.receive_json(timeout=10))["type"]
        async with aconnect(f"wss://{API}/ws", additional_headers=headers, open_timeout=10) as ws:
            d = json.loads(await ws.recv())["type"]
        return a, b, c, d
    assert asyncio.run(clients()) == (200, "auth-service", "handshake_validation", "handshake_validation")
    assert _kinds(stack)[-4:] == ["http", "http", "ws", "ws"]


@ONLY_LOCAL
def test_any_port_and_plain_http_reach_the_stack(stack, redirected):
    for url in (f"http://{API}/health", f"https://{API}:8443/health", f"http://{AUTH}:8080/health"):
        assert httpx.get(url, timeout=10).status_code == 200, url


@ONLY_LOCAL
def test_websocket_upgrades_on_the_api_host_go_to_the_ws_listener(stack, redirected):
    stack.faults.add("proxy_down", target="ws")
    assert httpx.get(f"https://{API}/health").status_code == 200      # HTTP is not on the ws listener
    with pytest.raises((OSError, WebSocketException)):                # the upgrade is: closed by the front
        connect(f"wss://{API}/ws", additional_headers=_ws_headers(stack), open_timeout=5)
    stack.faults.reset()
    stack.faults.add("proxy_down", target="api")
    with connect(f"wss://{API}/ws", additional_headers=_ws_headers(stack), open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "handshake_validation"
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"https://{API}/health", timeout=5)


# ------------------------------------------------------------------ certificates and trust

@ONLY_LOCAL
def test_certificates_are_for_the_listed_names_only(stack, redirected):
    ctx = ssl.create_default_context(cafile=str(redirected.ca.ca_pem))
    port = redirected.front.ports[API]
    for name in ("unlisted.staging.redirect-test.invalid", AUTH):   # another name through the api listener
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with pytest.raises(ssl.SSLCertVerificationError, match="match"):
                ctx.wrap_socket(raw, server_hostname=name)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=API) as tls:
            assert tls.version().startswith("TLS")


@ONLY_LOCAL
def test_public_roots_stay_trusted_and_children_get_the_ca(stack, redirected):
    store = ssl.create_default_context().cert_store_stats()["x509_ca"]
    assert store > 100           # certifi's roots (~150) + the throwaway CA, through SSL_CERT_FILE
    child = subprocess.run([sys.executable, "-c", (
        "import os, socket, ssl, sys\n"
        "ctx = ssl.create_default_context()\n"
        f"with socket.create_connection(('127.0.0.1', {redirected.front.ports[AUTH]}), timeout=5) as s:\n"
        f"    with ctx.wrap_socket(s, server_hostname='{AUTH}') as t:\n"
        "        t.sendall(b'GET /health HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n')\n"
        "        sys.stdout.write(t.recv(100).decode().split('\\r\\n')[0])\n")],
        capture_output=True, text=True, timeout=30)
    assert child.stdout == "HTTP/1.1 200 OK", child.stderr
    assert os.environ["NODE_EXTRA_CA_CERTS"] == str(redirected.ca.ca_pem)


# ------------------------------------------------------------------ untouched, and loud without a stack

@ONLY_LOCAL
def test_unlisted_hosts_are_untouched_and_stop_undoes_everything(stack):
    real = socket.getaddrinfo, socket.socket.connect
    red = Redirection.start(_redirects(f"{API}=api"), stack.endpoints)
    try:
        assert socket.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM)[0][4][0] in ("127.0.0.1", "::1")
        with pytest.raises(socket.gaierror) as err:
            socket.getaddrinfo(AUTH, 443)
        assert "simstack" not in str(err.value)
    finally:
        red.stop()
    assert (socket.getaddrinfo, socket.socket.connect) == real
    assert not red.ca.dir.exists()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_without_a_running_stack_a_redirected_host_fails_loudly():
    gone = f"http://127.0.0.1:{_closed_port()}"
    endpoints = Endpoints(api_url=gone, ws_url=gone.replace("http", "ws") + "/ws", auth_url=gone,
                          toxiproxy_url=gone, api_control_url=gone, auth_control_url=gone, admin_key="x")
    red = Redirection.start(_redirects(f"{API}=api"), endpoints)
    try:
        first = httpx.get(f"https://{API}/health", verify=ssl.create_default_context(cafile=str(red.ca.ca_pem)),
                          timeout=5)                                            # the request that finds the stack gone
        assert first.status_code == 502 and first.json()["detail"].startswith(f"simstack: {API} is redirected")
        with pytest.raises(httpx.ConnectError, match=f"simstack: {API} is redirected to the simstack stack"):
            httpx.get(f"https://{API}/health", timeout=5)
        with pytest.raises(requests.ConnectionError, match="the stack is not running"):
            requests.get(f"https://{API}/health", timeout=5)
    finally:
        red.stop()


# ------------------------------------------------------------------ the plugin: a team's suite, unmodified

SUITE = Path(__file__).resolve().parent / "redirect_suite"
SUITE_TESTS = 7


def _suite(pytester: pytest.Pytester, with_lines: bool = True) -> None:
    shutil.copytree(SUITE, pytester.path, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    if not with_lines:
        ini = pytester.path / "pytest.ini"
        ini.write_text("".join(line for line in ini.read_text().splitlines(True)
                               if "simstack_redirect" not in line and "=api" not in line and "=auth" not in line))


def test_suite_passes_with_only_the_redirect_lines(pytester):
    _suite(pytester)
    result = run(pytester, *FAST, "--simstack-scenario", "fix-1011", "--simstack-require-traffic")
    result.assert_outcomes(passed=SUITE_TESTS)
    result.stdout.fnmatch_lines(["simstack: redirected (TLS by a throwaway CA): api.staging.acme-example.invalid -> api*"])
    result.stdout.re_match_lines([r"\s+1\s+1\s+5\s+1000\s+race_on_accept-\w+\s+passed$",      # 100 columns:
                                  r"\s+test_websocket.py::test_agent_run_reports_all_events$"])   # the id wraps


STACK_FILE_REDIRECTS = ("# the staging hosts the suite hard-codes, served by the stack\n"
                        "redirect:\n  api.staging.acme-example.invalid: api\n  auth.staging.acme-example.invalid: auth\n")


def test_suite_passes_with_only_a_stack_file_holding_the_redirect_lines(pytester):
    _suite(pytester, with_lines=False)
    (pytester.path / "simstack.yaml").write_text(STACK_FILE_REDIRECTS)
    result = run(pytester, *FAST, "--simstack-file", "simstack.yaml", "--simstack-scenario", "fix-1011",
                 "--simstack-require-traffic")
    result.assert_outcomes(passed=SUITE_TESTS)
    result.stdout.fnmatch_lines(["simstack: redirected (TLS by a throwaway CA): api.staging.acme-example.invalid -> api*"
                                 "auth.staging.acme-example.invalid -> auth*"])


def test_a_host_redirected_by_the_stack_file_and_the_ini_to_different_services_is_a_usage_error(pytester):
    _suite(pytester)                         # ini: api.staging.acme-example.invalid=api
    (pytester.path / "simstack.yaml").write_text("redirect:\n  api.staging.acme-example.invalid: auth\n")
    result = run(pytester, "--simstack=local", "--simstack-file", "simstack.yaml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*api.staging.acme-example.invalid is redirected twice, to 'api' "
                                 "(ini simstack_redirect) and to 'auth'*"])


def test_suite_shows_the_1011_with_only_the_redirect_lines(pytester):
    _suite(pytester)
    result = run(pytester, *FAST, "--simstack-scenario", "repro-1011")
    result.assert_outcomes(passed=SUITE_TESTS - 2, failed=2)
    result.stdout.fnmatch_lines(["*ConnectionClosedError: received 1011 (internal error) Internal error*"])


def test_suite_skips_as_staging_down_without_the_lines_or_without_a_stack(pytester):
    _suite(pytester, with_lines=False)
    result = run(pytester, *FAST, "-rs")
    result.assert_outcomes(skipped=SUITE_TESTS)
    result.stdout.fnmatch_lines(["*staging down: https://api.staging.acme-example.invalid/health did not answer 200*"])
    _suite(pytester)
    run(pytester, "-rs").assert_outcomes(skipped=SUITE_TESTS)   # the lines do nothing with the plugin off


@pytest.mark.parametrize("args, message", [
    (["--simstack=local", "--simstack-redirect", "127.0.0.1=api"], "*'127.0.0.1' in '127.0.0.1=api' is an IP address*"),
    (["--simstack=local", "--simstack-redirect", "a.x.invalid=api", "--simstack-redirect", "a.x.invalid=auth"],
     "*a.x.invalid is redirected twice, to 'api' (--simstack-redirect) and to 'auth'*"),
    (["--simstack-redirect", "a.x.invalid=api"], "*--simstack-redirect 'a.x.invalid=api' needs a stack to redirect to*"),
])
def test_bad_redirect_options_are_usage_errors_before_anything_runs(pytester, args, message):
    pytester.makepyfile(test_x="def test_x():\n    raise AssertionError('ran')\n")
    result = run(pytester, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


# ------------------------------------------------------------------ clients outside pytest: simstack up/env --redirect

CHILD_CLIENT = '''
import json, os, socket, ssl, sys
from websockets.sync.client import connect
host, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
ctx = ssl.create_default_context()           # trusts the CA through SSL_CERT_FILE only
with socket.create_connection((addr, port), timeout=5) as raw, ctx.wrap_socket(raw, server_hostname=host) as t:
    t.sendall(f"GET /health HTTP/1.1\\r\\nHost: {host}\\r\\nConnection: close\\r\\n\\r\\n".encode())
    status = t.recv(100).decode().split("\\r\\n")[0]
with connect(f"wss://{host}/ws", sock=socket.create_connection((addr, port), timeout=5), open_timeout=10,
             additional_headers={"Authorization": "Bearer " + os.environ["SIMSTACK_TOKEN"], "X-E2E-Test": "true"}) as ws:
    first = json.loads(ws.recv(timeout=10))["type"]
print(status, first)
'''


def test_up_and_env_redirect_tell_a_client_outside_pytest_how_to_reach_the_stack(cli):
    host = "api.staging.cli-test.invalid"
    out = cli("up", "--detach", "--profile", "fast", "--redirect", f"{host}=api").stdout
    assert f"{host} -> api, TLS on 127.0.0.1:" in out
    env_out = cli("env", "--redirect", f"{host}=api").stdout
    exports = dict(re.findall(r"^export (\w+)=(\S+)$", env_out, re.M))
    assert exports["SSL_CERT_FILE"] == exports["REQUESTS_CA_BUNDLE"] and exports["NODE_EXTRA_CA_CERTS"].endswith("ca.pem")
    port = re.search(rf"^# {re.escape(host)} -> api .*: 127\.0\.0\.1:(\d+)", env_out, re.M).group(1)
    targets = [("127.0.0.1", port)]
    if os.geteuid() == 0:      # a root stack also listens on 443 of the host's own address: /etc/hosts lines
        addr = re.search(rf"^# (127\.77\.13\.\d+) {re.escape(host)}$", env_out, re.M).group(1)
        targets.append((addr, "443"))
    for addr, p in targets:
        child = subprocess.run([sys.executable, "-c", CHILD_CLIENT, host, addr, p], capture_output=True, text=True,
                               timeout=30, env={**os.environ, **exports})
        assert child.stdout.split() == ["HTTP/1.1", "200", "OK", "handshake_validation"], child.stderr
    with pytest.raises(AssertionError, match=r"(?s)exited 2:\n\nsimstack: error: the running stack does not serve auth.staging.cli-test.invalid=auth .*it serves: "
                                             rf"{re.escape(host)}=api.*simstack up --detach --redirect"):
        cli("env", "--redirect", "auth.staging.cli-test.invalid=auth")
    ca_dir = Path(exports["NODE_EXTRA_CA_CERTS"]).parent
    cli("down")
    assert not ca_dir.exists()


def test_up_f_serves_the_stack_file_s_redirects_like_redirect(cli, tmp_path):
    host = "api.staging.file-test.invalid"
    path = tmp_path / "simstack.yaml"
    path.write_text(f"redirect:\n  {host}: api\n")
    out = cli("up", "--detach", "--profile", "fast", "-f", str(path)).stdout
    assert f"{host} -> api, TLS on 127.0.0.1:" in out
    assert re.search(rf"^# {re.escape(host)} -> api .*: 127\.0\.0\.1:\d+", cli("env", "--redirect", f"{host}=api").stdout, re.M)


def test_up_with_a_bad_redirect_starts_nothing(cli):
    proc = cli("up", "--detach", "--redirect", "*.staging.x.invalid=api", check=False)
    assert proc.returncode == 2
    assert "wildcard '*.staging.x.invalid'" in proc.stderr and "list each staging host" in proc.stderr
    assert cli("status", check=False).returncode == 1


def test_a_killed_owner_s_ca_directory_is_removed_by_the_next_command():
    owner = subprocess.Popen([sys.executable, "-c", "import sys, time; from simstack.tls import ThrowawayCA; "
                              f"print(ThrowawayCA.create([{API!r}]).dir, flush=True); time.sleep(60)"],
                             stdout=subprocess.PIPE, text=True)
    try:
        ca_dir = Path(owner.stdout.readline().strip())
        assert (ca_dir / "ca.pem").exists()
        state.reap()
        assert ca_dir.exists(), "removed while its owner runs"
    finally:
        owner.kill()
        owner.wait()
    state.reap()   # what every simstack command and stack start runs first
    assert not ca_dir.exists()
