"""DockerLauncher against the real engine, the offline-built images and the real Toxiproxy."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid

import httpx
import pytest

from simstack import images
from simstack.shared.errors import NoDockerEngine, PortInUse, StartError
from simstack.launchers.base import LaunchSpec
from simstack.launchers.docker import LABEL_STACK, DockerLauncher, docker_client, reap_orphans
from simstack.services import API, AUTH, PROXIES, TOXIPROXY_API_PORT

def _stack_id() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


def _labelled(stack_id: str) -> tuple[list, list]:
    client = docker_client()
    try:
        flt = {"label": f"{LABEL_STACK}={stack_id}"}
        return client.containers.list(all=True, filters=flt), client.networks.list(filters=flt)
    finally:
        client.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get_when_up(url: str, timeout: float = 15.0) -> httpx.Response:
    """The stand-in behind a fresh proxy may still be importing: retry until it answers."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return httpx.get(url, timeout=2, trust_env=False)
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.fixture(scope="module")
def running():
    """One launched stack shared by the read-only tests of this module."""
    launcher = DockerLauncher()
    api_port = _free_port()
    launched = launcher.start(LaunchSpec(_stack_id(), {"SIMSTACK_PROFILE": "fast"}, ports={"api": api_port}))
    yield launcher, launched, api_port
    launcher.stop()


@pytest.mark.docker
def test_toxiproxy_image_reports_version_2_12_0(running):
    _, launched, _ = running
    r = httpx.get(f"{launched.toxiproxy_url}/version", trust_env=False, timeout=5)
    assert r.status_code == 200
    assert json.loads(r.text)["version"] == images.TOXIPROXY_VERSION == "2.12.0"


@pytest.mark.docker
def test_health_answers_through_a_proxy_created_on_toxiproxys_api(running):
    launcher, launched, api_port = running
    assert launched.upstreams == {"api": "api:8000", "auth": "auth:8001"}
    toxi = httpx.Client(base_url=launched.toxiproxy_url, trust_env=False, timeout=5)
    for name, service in (("api", API), ("auth", AUTH)):
        listen = launcher.proxy_listen(name, 0)
        assert listen == f"0.0.0.0:{next(p.container_port for p in PROXIES if p.name == name)}"
        created = toxi.post("/proxies", json={"name": name, "listen": listen, "enabled": True,
                                              "upstream": launched.upstreams[service.name]})
        assert created.status_code == 201, created.text
        port = launcher.host_port(name, created.json()["listen"])
        r = _get_when_up(f"http://127.0.0.1:{port}/health")
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "healthy"
    assert launcher.host_port("api", "[::]:8666") == api_port  # the host port LaunchSpec.ports asked for


@pytest.mark.docker
def test_only_loopback_ports_are_published(running):
    launcher, _, _ = running
    container = launcher._containers["toxiproxy"].get_wrapped_container()
    bindings = container.attrs["NetworkSettings"]["Ports"]
    published = {int(k.split("/")[0]) for k, v in bindings.items() if v}
    assert published == {TOXIPROXY_API_PORT, *(p.container_port for p in PROXIES)}
    assert {b["HostIp"] for v in bindings.values() if v for b in v} == {"127.0.0.1"}
    for service in ("api", "auth"):
        assert not any(launcher._containers[service].get_wrapped_container().attrs["NetworkSettings"]["Ports"]
                       .values())


@pytest.mark.docker
def test_logs_return_the_container_log(running):
    launcher, launched, _ = running
    httpx.get(f"{launched.toxiproxy_url}/proxies", trust_env=False, timeout=5)
    assert "Starting Toxiproxy" in launcher.logs("toxiproxy")
    assert launcher.alive() == {"api": True, "auth": True, "toxiproxy": True}


@pytest.mark.docker
def test_start_then_stop_leaves_no_labelled_container_or_network():
    stack_id = _stack_id()
    launcher = DockerLauncher()
    launcher.start(LaunchSpec(stack_id, {}))
    containers, networks = _labelled(stack_id)
    assert sorted(c.name for c in containers) == sorted(f"simstack-{stack_id}-{s}" for s in ("api", "auth", "toxiproxy"))
    assert len(networks) == 1
    assert all(c.labels["simstack.owner_pid"] == str(os.getpid()) for c in containers)
    assert networks[0].attrs["Labels"]["simstack.owner_host"] == socket.gethostname()
    launcher.stop()
    launcher.stop()  # safe twice
    assert _labelled(stack_id) == ([], [])


_RUNNER = textwrap.dedent("""
    import sys, time
    from simstack.launchers.base import LaunchSpec
    from simstack.launchers.docker import DockerLauncher
    DockerLauncher().start(LaunchSpec(sys.argv[1], {}))
    print("started", flush=True)
    time.sleep(600)
""")


@pytest.mark.docker
def test_reap_orphans_removes_a_killed_runners_stack_and_spares_a_live_one():
    live_id, orphan_id = _stack_id(), _stack_id()
    live = DockerLauncher()
    live.start(LaunchSpec(live_id, {}))
    try:
        runner = subprocess.Popen([sys.executable, "-c", _RUNNER, orphan_id], stdout=subprocess.PIPE, text=True)
        try:
            assert runner.stdout.readline().strip() == "started"
        finally:
            runner.send_signal(signal.SIGKILL)
            runner.wait()
        containers, networks = _labelled(orphan_id)
        assert len(containers) == 3 and len(networks) == 1  # SIGKILL left them behind

        assert orphan_id in reap_orphans()

        assert _labelled(orphan_id) == ([], [])
        containers, networks = _labelled(live_id)
        assert [c.status for c in containers] == ["running"] * 3 and len(networks) == 1
    finally:
        live.stop()
    assert _labelled(live_id) == ([], [])


@pytest.mark.docker
def test_a_stack_id_in_use_by_a_live_stack_is_refused():
    stack_id = _stack_id()
    first = DockerLauncher()
    first.start(LaunchSpec(stack_id, {}))
    try:
        with pytest.raises(StartError, match="already running"):
            DockerLauncher().start(LaunchSpec(stack_id, {}))
        assert len(_labelled(stack_id)[0]) == 3  # the refused start removed nothing
    finally:
        first.stop()


@pytest.mark.docker
def test_a_busy_host_port_is_reported_with_the_option_to_change_it():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        stack_id = _stack_id()
        with pytest.raises(PortInUse) as info:
            DockerLauncher().start(LaunchSpec(stack_id, {}, ports={"ws": port}))
    assert info.value.port == port and "--ws-port" in str(info.value)
    assert _labelled(stack_id) == ([], [])


@pytest.mark.docker
def test_a_missing_image_says_to_run_make_images(monkeypatch):
    monkeypatch.setenv(images.ENV_TOXIPROXY, "simstack/not-built:0")
    with pytest.raises(StartError) as info:
        DockerLauncher().start(LaunchSpec(_stack_id(), {}))
    assert "simstack/not-built:0" in str(info.value) and "make images" in str(info.value)


def test_no_engine_raises_no_docker_engine_and_reaping_is_a_no_op(monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    with pytest.raises(NoDockerEngine, match="make engine"):
        DockerLauncher().start(LaunchSpec(_stack_id(), {}))
    assert reap_orphans() == []
