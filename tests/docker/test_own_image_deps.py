"""Dependencies of an image of yours (docker mode): a TCP echo on this machine and the auth stand-in,
each behind its own Toxiproxy listener ``dep:NAME`` that the image reaches as ``toxiproxy:PORT``;
network faults (`fault add`, `fault ls` and `watch` through the CLI, as a team runs them) and
scenarios on them as in local mode; a dependency listening on loopback only refused with what to do,
nothing left. One stack for the module."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from own_image import labelled
from simstack.own import OwnService
from simstack.scenarios import parse_scenario, run_scenario
from simstack.shared.errors import StartError
from simstack.stack import Stack
from standin_client import http
from test_own_service import echo_server

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def host_echo():
    """Listening on every address, as a service on this machine must for containers to reach it."""
    server = echo_server("0.0.0.0")
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def simstack(tmp_path_factory):
    """The CLI, with a state directory of the module's own (so `fault`, `watch`, `down` find its stack)."""
    env = {**os.environ, "SIMSTACK_STATE_DIR": str(tmp_path_factory.mktemp("state")), "NO_PROXY": "127.0.0.1,localhost"}

    def run(*args) -> str:
        proc = subprocess.run([sys.executable, "-m", "simstack.cli", *args], env=env, capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 0, f"simstack {' '.join(args)} exited {proc.returncode}: {proc.stderr}"
        return proc.stdout

    run.env = env
    return run


@pytest.fixture(scope="module")
def deps_stack(upstream_image, host_echo, simstack):
    """Started as a team would (`up --detach` with --api-dep/--api-env), attached here for the API."""
    out = simstack("up", "--detach", "--mode", "docker", "--profile", "fast", "--api-image", upstream_image,
                   "--api-dep", f"echo={host_echo}", "--api-dep", "auth=auth",
                   "--api-env", "DEP_ADDR={dep.echo}", "--api-env", "DEP_HTTP_ADDR={dep.auth}")
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("SIMSTACK_STATE_DIR", simstack.env["SIMSTACK_STATE_DIR"])
            stack = Stack.attach(re.search(r"simstack (\w+): docker mode", out).group(1))
        yield stack
        stack.stop()
    finally:
        simstack("down")


def test_an_image_reaches_a_dependency_on_this_machine_through_its_listener(deps_stack, simstack):
    with http(deps_stack.endpoints.api_url) as c:
        healthy = c.get("/dep").json()
        simstack("fault", "add", "latency", "--target", "dep:echo", "-p", "latency_ms=800")
        listed = simstack("fault", "ls")
        slowed = c.get("/dep").json()
        watched = simstack("watch", "--once")
        deps_stack.faults.reset()
        recovered = c.get("/dep").json()
    assert healthy == {"ok": True}
    assert re.search(r"latency\s.*dep:echo", listed), listed
    assert slowed == {"ok": False, "error": "dependency timed out"}
    assert "/dep" in watched, watched
    assert recovered == {"ok": True}


def test_an_image_reaches_the_auth_stand_in_on_its_own_link(deps_stack):
    with http(deps_stack.endpoints.api_url) as c:
        healthy = c.get("/dep-http").json()
        deps_stack.faults.add("latency", target="dep:auth", latency_ms=800)
        slowed = c.get("/dep-http").json()
        deps_stack.faults.reset()
    assert (healthy["ok"], healthy["health"]["service"]) == (True, "auth-service")
    assert slowed == {"ok": False, "error": "dependency timed out"}


def test_a_scenario_can_slow_an_image_s_dependency(deps_stack):
    scenario = parse_scenario({
        "name": "slow-echo", "client": {"action": "connect", "timeout_s": 5},
        "faults": [{"kind": "latency", "target": "dep:echo", "params": {"latency_ms": 800}}],
        "expect": {"http": [{"path": "/dep?timeout_s=5", "timeout_s": 0.3, "timed_out": True}]}}, "inline")
    result = run_scenario(scenario, deps_stack)
    assert result.passed, [(c.what, c.observed) for c in result.checks]


def test_a_dependency_listening_on_loopback_only_is_refused_saying_what_to_do(upstream_image):
    server = echo_server("127.0.0.1")
    address = f"127.0.0.1:{server.server_address[1]}"
    try:
        svc = OwnService("api", image=upstream_image, deps={"redis": address}, env={"DEP_ADDR": "{dep.redis}"})
        stack = Stack(mode="docker", profile="fast", own=[svc])
        with pytest.raises(StartError) as info:
            stack.start()
    finally:
        server.shutdown()
        server.server_close()
    assert info.value.message.startswith(f"dependency redis of api at {address} is not reachable from the "
                                         f"stack's containers (they dial it as host.docker.internal:")
    assert "Connection refused" in info.value.message
    assert "bind it to 0.0.0.0 (or the docker0 address)" in info.value.hint
    assert labelled(stack.id) == ([], [])
