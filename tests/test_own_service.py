"""A service of your own in the stack (`--api-cmd`, `--api-url`, `--api-dep`, `--api-env`): its
dependencies behind Toxiproxy, and every bad input refused with what to do, nothing left running."""
from __future__ import annotations

import os
import socket
import socketserver
import subprocess
import sys
import threading

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from simstack.own import OwnService
from simstack.shared.errors import ConfigError, SimstackError, StartError
from simstack.shared.faults import Fault
from simstack.stack import Stack
from standin_client import http
from test_gateway import UPSTREAM_CMD


def children() -> set[int]:
    """Live (not zombie) processes whose parent is this one."""
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == os.getpid() and stat[0] != "Z":
                out.add(int(entry))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Echo(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            self.wfile.write(line)


def echo_server(host: str = "127.0.0.1") -> socketserver.ThreadingTCPServer:
    """A TCP echo server on ``host`` (this machine), serving until shut down."""
    server = socketserver.ThreadingTCPServer((host, 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def echo_dependency():
    """A TCP echo server on loopback: the dependency the service calls."""
    server = echo_server()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def refused_start(*own, timeout: float = 10.0) -> StartError:
    before = children()
    with pytest.raises(StartError) as info:
        Stack(mode="local", profile="fast", own=own, startup_timeout=timeout).start()
    assert children() <= before, "the failed start left processes running"
    return info.value


# ---------------------------------------------------------------- dependencies through Toxiproxy

def test_a_dependency_fault_slows_the_service_s_link_to_its_dependency(echo_dependency):
    svc = OwnService("api", cmd=UPSTREAM_CMD, deps={"echo": echo_dependency}, env={"DEP_ADDR": "{dep.echo}"})
    with Stack(mode="local", profile="fast", own=[svc]) as stack, http(stack.endpoints.api_url) as c:
        healthy = c.get("/dep").json()
        stack.faults.add("latency", target="dep:echo", latency_ms=800)
        listed = [(f["kind"], f["target"]) for f in stack.faults.list()]
        slowed = c.get("/dep").json()
        with pytest.raises(ConfigError) as unknown:
            stack.faults.add("latency", target="dep:nope")
        stack.faults.reset()
        recovered = c.get("/dep").json()
    assert healthy == {"ok": True} and recovered == {"ok": True}
    assert slowed == {"ok": False, "error": "dependency timed out"}
    assert ("latency", "dep:echo") in listed
    assert "no dependency dep:nope" in str(unknown.value)


def test_only_network_kinds_can_target_a_dependency():
    assert Fault.build("latency", "dep:redis").target == "dep:redis"
    with pytest.raises(ConfigError) as info:
        Fault.build("close_after_accept", "dep:redis")
    assert "close_after_accept cannot target 'dep:redis'" in str(info.value)


# ---------------------------------------------------------------- bad input

def test_a_command_that_exits_names_the_health_url_the_last_error_and_its_log():
    err = refused_start(OwnService("api", cmd="echo starting-marker; echo broken-config >&2; exit 3"))
    text = str(err)
    assert "exited with code 3" in text and "/health" in text and "http://127.0.0.1:" in text
    assert "last error: ConnectError" in text and "broken-config" in text


def test_a_command_runs_where_it_was_given_a_stack_file_s_in_the_file_s_directory(tmp_path, monkeypatch):
    """`uvicorn myapp:app` must find the team's module: not in simstack's directory."""
    from simstack.stackfile import load
    team, elsewhere = tmp_path / "team", tmp_path / "elsewhere"
    team.mkdir()
    elsewhere.mkdir()
    (team / "simstack.yaml").write_text("services:\n  api:\n    cmd: pwd\n")
    monkeypatch.chdir(elsewhere)
    assert f"its log ends: {elsewhere}" in str(refused_start(OwnService("api", cmd="pwd")))
    assert f"its log ends: {team}" in str(refused_start(*load(team / "simstack.yaml")))


def test_a_command_that_never_becomes_healthy_is_stopped_and_reported():
    err = refused_start(OwnService("api", cmd=UPSTREAM_CMD, health="/status/503"), timeout=2)
    text = str(err)
    assert "never became healthy" in text and "/status/503" in text and "HTTP 503" in text


def test_an_upstream_url_that_refuses_is_reported():
    port = free_port()
    err = refused_start(OwnService("api", url=f"http://127.0.0.1:{port}"), timeout=1)
    assert f"http://127.0.0.1:{port}/health" in str(err) and "ConnectError" in str(err)


def test_a_dependency_that_refuses_is_reported():
    port = free_port()
    err = refused_start(OwnService("api", cmd=UPSTREAM_CMD, deps={"redis": f"127.0.0.1:{port}"}))
    assert f"dependency redis of api at 127.0.0.1:{port} does not accept connections" in str(err)


@pytest.mark.parametrize("template,expected", [
    ("redis://{dep.redis}", "{dep.redis} names no dependency of api (declared: none)"),
    ("{host}", "{host} is not a template name"),
])
def test_a_template_naming_nothing_known_is_a_usage_error(template, expected):
    with pytest.raises(ConfigError) as info:
        OwnService("api", cmd="serve --port {port}", env={"REDIS_URL": template})
    assert expected in str(info.value)


def test_cli_refuses_a_bad_template_in_one_line_before_starting_anything():
    r = subprocess.run([sys.executable, "-m", "simstack.cli", "up", "--api-cmd", "serve --port {port} {dep.redis}"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert r.stderr.startswith("simstack: error: --api-cmd: {dep.redis} names no dependency of api")
    assert "Traceback" not in r.stderr


def test_a_service_of_your_own_is_refused_in_docker_mode():
    with pytest.raises(ConfigError) as info:
        Stack(mode="docker", own=[OwnService("api", url="http://127.0.0.1:9000")])
    assert "local mode only" in str(info.value)


async def test_a_service_that_goes_away_gives_502_json_on_http_and_on_the_upgrade():
    with Stack(mode="local", profile="fast", own=[OwnService("api", cmd=UPSTREAM_CMD)]) as stack:
        service = stack.launcher.procs["api"]
        service.terminate()
        service.wait(5)
        with http(stack.endpoints.api_url) as c:
            r = c.get("/echo")
        with pytest.raises(InvalidStatus) as info:
            async with connect(stack.endpoints.ws_url, open_timeout=5, proxy=None):
                pass
    assert (r.status_code, r.json()["error_code"]) == (502, "BAD_GATEWAY")
    assert "did not answer" in r.json()["detail"]
    assert info.value.response.status_code == 502


def test_your_own_auth_service_sits_behind_the_gateway_with_auth_faults_and_the_api_stand_in_stays():
    with Stack(mode="local", profile="fast", own=[OwnService("auth", cmd=UPSTREAM_CMD)]) as stack, \
            http(stack.endpoints.auth_url) as auth, http(stack.endpoints.api_url) as api:
        forwarded = auth.get("/echo")
        stack.faults.add("status_override", target="auth", path="/echo", status=503)
        overridden = auth.get("/echo")
        stand_in = api.get("/health")
        records, _ = stack.faults.timeline()
    assert forwarded.json()["path"] == "/echo" and overridden.status_code == 503
    assert stand_in.json()["service"] == "netra-ai-platform"
    assert [r["status"] for r in records if r["service"] == "auth" and r["path"] == "/echo"] == [200, 503]


def test_an_auth_service_of_yours_that_answers_the_token_request_without_a_token_is_named_in_one_line():
    with Stack(mode="local", profile="fast", own=[OwnService("auth", cmd=UPSTREAM_CMD)]) as stack:
        with pytest.raises(SimstackError) as info:
            stack.token()
    assert "the auth service answered POST" in info.value.message
    assert "without an access_token string: '{\"token_type\":\"bearer\"}'" in info.value.message
    assert "CONTRACT.md" in info.value.hint


@pytest.mark.parametrize("own,mode,expected", [
    ([OwnService("api", image="myorg/backend:fix")], "local", "--api-image myorg/backend:fix runs in docker mode"),
    ([OwnService("api", image="b:1"), OwnService("auth", cmd="serve --port {port}")], "auto", "mix an image"),
])
def test_a_mode_that_cannot_run_the_service_is_a_usage_error(own, mode, expected):
    with pytest.raises(ConfigError) as info:
        Stack(mode=mode, own=own)
    assert expected in str(info.value)


def test_a_dependency_is_a_host_port_or_a_service_of_the_stack():
    from simstack import stackfile
    issue = {"services": {"api": {"image": "myorg/backend:fix", "depends": {"redis": "127.0.0.1:6379", "auth": "auth"}}}}
    assert stackfile.parse(issue, "simstack.yaml")[0].deps == {"redis": "127.0.0.1:6379", "auth": "auth"}
    with pytest.raises(ConfigError) as info:
        OwnService("api", cmd=UPSTREAM_CMD, deps={"auth": "billing"})
    assert str(info.value) == ("--api-dep auth='billing': not a host:port nor a service of the stack\n"
                               "  -> e.g. redis=127.0.0.1:6379, or auth=auth (api or auth)")


def test_a_dependency_on_the_auth_stand_in_is_its_own_link_to_it():
    svc = OwnService("api", cmd=UPSTREAM_CMD, deps={"auth": "auth"}, env={"DEP_HTTP_ADDR": "{dep.auth}"})
    with Stack(mode="local", profile="fast", own=[svc]) as stack, http(stack.endpoints.api_url) as c:
        healthy = c.get("/dep-http").json()
        stack.faults.add("latency", target="dep:auth", latency_ms=800)
        slowed = c.get("/dep-http").json()
        listed = [(f["kind"], f["target"]) for f in stack.faults.list()]
        stack.faults.reset()
        recovered = c.get("/dep-http").json()
    assert (healthy["ok"], healthy["health"]["service"]) == (True, "auth-service")
    assert slowed == {"ok": False, "error": "dependency timed out"}
    assert listed == [("latency", "dep:auth")]       # the suite's own auth link is another proxy
    assert recovered["ok"] is True


def test_a_dependency_on_your_own_auth_service_goes_through_its_gateway():
    api = OwnService("api", cmd=UPSTREAM_CMD, deps={"identity": "auth"}, env={"DEP_HTTP_ADDR": "{dep.identity}"})
    with Stack(mode="local", profile="fast", own=[api, OwnService("auth", cmd=UPSTREAM_CMD)]) as stack, \
            http(stack.endpoints.api_url) as c:
        yours = c.get("/dep-http").json()
        stack.faults.add("status_override", target="auth", path="/health", status=503)   # applied by the gateway
        overridden = c.get("/dep-http").json()
    assert (yours["ok"], yours["health"]["service"]) == (True, "tests-upstream")
    assert (overridden["ok"], overridden["health"]["error_code"]) == (False, "SERVICE_UNAVAILABLE")


def test_the_detached_up_gets_the_same_services_of_your_own(tmp_path):
    from simstack import own
    from simstack.cli import build_parser
    stack_file = tmp_path / "simstack.yaml"
    stack_file.write_text("services:\n  auth:\n    url: http://127.0.0.1:9001\n")
    argv = ["up", "-f", str(stack_file), "--api-image", "myorg/backend:fix", "--api-image-port", "9000",
            "--api-health", "/healthz", "--api-env", "A={port}"]
    args = build_parser().parse_args(argv)
    again = build_parser().parse_args(["up", *own.to_argv(args)])
    assert own.from_args(again) == own.from_args(args)
    assert [(s.name, s.image or s.url, s.port) for s in own.from_args(args)] == [
        ("auth", "http://127.0.0.1:9001", 8000), ("api", "myorg/backend:fix", 9000)]


def test_simstack_logs_shows_your_service_and_its_gateway(tmp_path):
    env = {**os.environ, "SIMSTACK_STATE_DIR": str(tmp_path), "NO_PROXY": "127.0.0.1,localhost"}
    cmd = UPSTREAM_CMD.replace("--log-level warning", "--log-level info")
    up = subprocess.run([sys.executable, "-m", "simstack.cli", "up", "--detach", "--profile", "fast", "--api-cmd", cmd],
                        env=env, capture_output=True, text=True, timeout=60)
    try:
        assert up.returncode == 0, up.stderr
        yours = subprocess.run([sys.executable, "-m", "simstack.cli", "logs", "api"], env=env, capture_output=True,
                               text=True, timeout=30)
        gateway = subprocess.run([sys.executable, "-m", "simstack.cli", "logs", "api-gateway"], env=env,
                                 capture_output=True, text=True, timeout=30)
    finally:
        subprocess.run([sys.executable, "-m", "simstack.cli", "down"], env=env, capture_output=True, timeout=60)
    assert "Uvicorn running" in yours.stdout or "Application startup complete" in yours.stdout
    assert gateway.returncode == 0 and "Traceback" not in gateway.stdout


def test_a_dependency_both_services_declare_gets_one_listener_and_a_clash_is_refused(echo_dependency):
    svc = lambda name, addr: OwnService(name, cmd=UPSTREAM_CMD, deps={"echo": addr}, env={"DEP_ADDR": "{dep.echo}"})  # noqa: E731
    with Stack(mode="local", profile="fast", own=[svc("api", echo_dependency), svc("auth", echo_dependency)]) as stack:
        with http(stack.endpoints.api_url) as api, http(stack.endpoints.auth_url) as auth:
            both = (api.get("/dep").json(), auth.get("/dep").json())
    assert both == ({"ok": True}, {"ok": True})
    with pytest.raises(ConfigError) as clash:         # refused before anything starts
        Stack(mode="local", own=[svc("api", echo_dependency), svc("auth", "127.0.0.1:1")])
    assert f"dependency echo is declared at {echo_dependency} and at 127.0.0.1:1" in str(clash.value)


def test_a_running_service_cannot_be_given_dependencies_or_an_environment():
    with pytest.raises(ConfigError) as info:
        OwnService("api", url="http://127.0.0.1:9000", deps={"redis": "127.0.0.1:6379"})
    assert "a service already running cannot be handed" in str(info.value)
