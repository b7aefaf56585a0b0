"""The `simstack` command as a user runs it: real subprocesses, real stacks.

Each test gets its own state directory, so detached stacks never leak between tests.
"""
from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from simstack.client import observe_ws
from simstack.scenarios import load_scenario, run_scenario
from simstack.stack import Stack
from simstack.report import data_in
from simstack.state import pid_alive

SIMSTACK = [sys.executable, "-m", "simstack.cli"]


def stack_processes(stack_id: str) -> list[int]:
    """Every process on this machine that belongs to the stack (by its environment marker)."""
    return processes_with_env("SIMSTACK_STACK_ID", stack_id)


def processes_with_env(name: str, value: str) -> list[int]:
    """Every process on this machine whose environment has ``name=value`` (children inherit it)."""
    marker = f"{name}={value}".encode()
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if marker in (d / "environ").read_bytes().split(b"\0"):
                    pids.append(int(d.name))
            except OSError:
                continue
    return pids


def wait_gone(stack_id: str, timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := stack_processes(stack_id)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


@pytest.fixture
def cli(tmp_path):
    env = {**os.environ, "SIMSTACK_STATE_DIR": str(tmp_path / "state"), "NO_PROXY": "127.0.0.1,localhost"}

    def run(*args, check=True, timeout=120) -> subprocess.CompletedProcess:
        proc = subprocess.run([*SIMSTACK, *args], env=env, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"simstack {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc

    run.env = env
    yield run
    run("down", check=False)


def detached(cli, *extra) -> tuple[str, dict]:
    out = cli("up", "--detach", "--profile", "fast", *extra).stdout
    stack_id = re.search(r"simstack (\w+): local mode", out).group(1)
    urls = dict(re.findall(r"^\s+(api|ws|auth)\s+(\S+)$", out, re.M))
    return stack_id, urls


def test_up_detach_env_status_down_leaves_no_process(cli):
    stack_id, urls = detached(cli)
    assert len(stack_processes(stack_id)) == 3, "two stand-ins and Toxiproxy"
    status = cli("status").stdout
    assert stack_id in status and urls["api"] in status
    env = dict(re.findall(r"^export (\w+)=(\S+)$", cli("env").stdout, re.M))
    assert env["SIMSTACK_API_URL"] == urls["api"] and env["SIMSTACK_WS_URL"] == urls["ws"]
    assert env["SIMSTACK_AUTH_URL"] == urls["auth"] and env["SIMSTACK_TOKEN"].count(".") == 2
    state_dir = Path(cli.env["SIMSTACK_STATE_DIR"])
    assert list(state_dir.glob("up-*.log")), "a detached stack keeps its output while it runs"
    down = cli("down").stdout
    assert f"stopped {stack_id}" in down
    assert wait_gone(stack_id) == []
    assert list(state_dir.iterdir()) == [], "down leaves no record or log behind"
    assert cli("status", check=False).returncode == 1


def test_faults_and_ws_mode_flip_live_on_a_detached_stack(cli):
    stack_id, urls = detached(cli)
    token = dict(re.findall(r"^export (\w+)=(\S+)$", cli("env").stdout, re.M))["SIMSTACK_TOKEN"]
    assert "ws-mode race_on_accept" in cli("ws-mode", "race_on_accept").stdout
    obs = asyncio.run(observe_ws(urls["ws"], token, timeout_s=5))
    assert (obs.close_code, obs.close_reason, obs.frames_before_close) == (1011, "Internal error", 0)
    assert "ws-mode healthy: no fault" in cli("ws-mode", "healthy").stdout
    obs = asyncio.run(observe_ws(urls["ws"], token, timeout_s=5))
    assert len(obs.events) == 5 and obs.close_code == 1000
    cli("ws-mode", "race_on_accept")
    old_name = cli("ws-mode", "fixed")   # the deprecated name of healthy says what it means
    assert "ws-mode healthy: no fault" in old_name.stdout
    assert "deprecated" in old_name.stderr and "not race_on_accept with fixed=true" in old_name.stderr
    assert "no faults" in cli("fault", "ls").stdout

    added = cli("fault", "add", "drop_connection", "--trigger", "{first: 1}", "--id", "lb").stdout
    assert added.startswith("applied lb: drop_connection on ws")
    listed = cli("fault", "ls").stdout
    assert "lb  drop_connection on ws (protocol)" in listed and '"first": 1' in listed
    cli("fault", "add", "latency", "--target", "api", "-p", "latency_ms=5")
    assert "latency on api (network)" in cli("fault", "ls").stdout
    assert "removed lb" in cli("fault", "rm", "lb").stdout
    cli("fault", "reset")
    assert "no faults" in cli("fault", "ls").stdout


def test_scenario_run_uses_the_running_stack(cli, tmp_path):
    stack_id, _ = detached(cli)
    out = cli("scenario", "run", "repro-1011", "fix-1011", "--html", str(tmp_path / "scenarios.html")).stdout
    assert "scenario repro-1011: PASS" in out and "scenario fix-1011: PASS" in out
    assert stack_processes(stack_id), "the detached stack is still running"
    assert "no faults" in cli("fault", "ls").stdout
    data = data_in((tmp_path / "scenarios.html").read_text())
    assert [(g["name"], g["outcome"]) for g in data["groups"]] == [("repro-1011", "passed"), ("fix-1011", "passed")]
    assert [[ln["cc"] for ln in g["lanes"] if ln["k"] == "ws"] for g in data["groups"]] == [[1011], [1000]]
    assert data["layout"] == "columns", "the scenarios side by side"


def test_report_of_a_running_stack_shows_what_it_saw_so_far(cli, tmp_path):
    _, urls = detached(cli)
    token = dict(re.findall(r"^export (\w+)=(\S+)$", cli("env").stdout, re.M))["SIMSTACK_TOKEN"]
    cli("fault", "add", "race_on_accept")
    asyncio.run(observe_ws(urls["ws"], token, timeout_s=5))
    out = cli("report", "--out", str(tmp_path / "now.html")).stdout
    assert f"HTML timeline: {tmp_path / 'now.html'}" in out
    lanes = [ln for g in data_in((tmp_path / "now.html").read_text())["groups"] for ln in g["lanes"]]
    ws = [ln for ln in lanes if ln["k"] == "ws"]
    assert [(ln["st"], ln["cc"], ln["by"]) for ln in ws] == [(101, 1011, "server")]
    assert ws[0]["err"].startswith("NotRegistered") and ws[0]["faults"]


def test_scenario_ls_lists_every_shipped_scenario(cli):
    out = cli("scenario", "ls").stdout
    for name in ("repro-1011", "fix-1011", "setup-error-1011", "connection-cap"):
        assert re.search(rf"^{name}\s", out, re.M)


def test_sigkilled_supervisor_takes_its_processes_with_it(cli):
    stack_id, _ = detached(cli)
    supervisor = int(re.search(r"owner pid (\d+)", cli("status").stdout).group(1))
    children = stack_processes(stack_id)
    assert len(children) == 3 and supervisor not in children
    log_dir = Path(re.search(r"logs (\S+)", cli("status").stdout).group(1))
    assert log_dir.is_dir()
    os.kill(supervisor, signal.SIGKILL)
    assert wait_gone(stack_id) == []
    assert "no stack is running" in cli("status", check=False).stdout
    assert not log_dir.exists(), "the next command removes what the killed stack left"
    assert list(Path(cli.env["SIMSTACK_STATE_DIR"]).iterdir()) == []


def test_sigint_on_a_foreground_up_stops_everything(cli):
    proc = subprocess.Popen([*SIMSTACK, "up", "--profile", "fast"], env=cli.env, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    stack_id = re.search(r"simstack (\w+):", line).group(1)
    for _ in range(5):
        proc.stdout.readline()
    assert stack_processes(stack_id)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=15) == 0
    assert wait_gone(stack_id) == []


def test_busy_port_is_a_clear_error(cli):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = cli("up", "--profile", "fast", "--api-port", str(port), check=False)
    assert proc.returncode == 2
    assert f"port {port} on 127.0.0.1 is already in use" in proc.stderr
    assert "--api-port" in proc.stderr


def test_wrong_toxiproxy_binary_is_a_clear_error(cli):
    cli.env["SIMSTACK_TOXIPROXY_BIN"] = "/nonexistent/toxiproxy-server"
    proc = cli("up", "--profile", "fast", check=False)
    assert proc.returncode == 2
    assert "SIMSTACK_TOXIPROXY_BIN='/nonexistent/toxiproxy-server' is not an executable" in proc.stderr
    assert "make toxiproxy" in proc.stderr


def test_docker_mode_without_an_engine_says_what_to_do(cli):
    cli.env["DOCKER_HOST"] = "unix:///nonexistent/docker.sock"
    proc = cli("up", "--mode", "docker", "--profile", "fast", check=False)
    assert proc.returncode == 2
    assert "Docker" in proc.stderr and "--mode local" in proc.stderr


def test_auto_mode_falls_back_to_local_and_says_so(cli):
    cli.env["DOCKER_HOST"] = "unix:///nonexistent/docker.sock"
    out = cli("up", "--detach", "--mode", "auto", "--profile", "fast").stdout
    assert "local mode" in out


def test_commands_without_a_stack_say_how_to_start_one(cli):
    proc = cli("fault", "ls", check=False)
    assert proc.returncode == 2
    assert "no simstack stack is running" in proc.stderr and "simstack up --detach" in proc.stderr


def test_bad_fault_request_is_refused_with_allowed_values(cli):
    detached(cli)
    proc = cli("fault", "add", "lost_events", "-p", "from_event=agent_exploded", check=False)
    assert proc.returncode == 2
    assert "'agent_exploded' is not allowed" in proc.stderr and "agent_completed" in proc.stderr
    assert "no faults" in cli("fault", "ls").stdout


def test_repro_1011_exits_zero_and_shows_the_three_phases(cli):
    out = cli("repro", "1011", "--profile", "fast").stdout
    assert "REPRODUCED 1011" in out and "FIXED" in out and "STILL 1011" in out
    assert "NotRegistered" in out, "the server view names the failed lookup"
    assert max(map(len, out.splitlines())) <= 100


@pytest.mark.parametrize("argv", [("fault", "kinds"), ("scenario", "ls"), ("--help",)])
def test_outputs_without_a_stack_fit_in_100_columns(cli, argv):
    out = cli(*argv).stdout
    assert out.strip() and max(map(len, out.splitlines())) <= 100


def test_fault_ls_wraps_long_faults_at_100_columns(cli):
    detached(cli)
    paths = [f"/api/some/rather/long/path/number/{i}" for i in range(6)]
    fault_id = re.search(r"applied (\S+):", cli("fault", "add", "health_hang", "-p", f"paths={paths}").stdout).group(1)
    out = cli("fault", "ls").stdout
    assert max(map(len, out.splitlines())) <= 100
    assert fault_id in out and all(p in " ".join(out.split()) for p in paths), "wrapped, nothing cut"


@pytest.mark.docker
def test_docker_mode_up_logs_down_leaves_nothing(cli):
    """Only this stack's containers and network are compared (by its label): other runs may share the engine."""
    from own_image import labelled
    out = cli("up", "--detach", "--mode", "docker", "--profile", "fast").stdout
    stack_id = re.search(r"simstack (\w+): docker mode", out).group(1)
    ws_url = re.search(r"^\s+ws\s+(\S+)$", out, re.M).group(1)
    running = labelled(stack_id)
    token = dict(re.findall(r"^export (\w+)=(\S+)$", cli("env").stdout, re.M))["SIMSTACK_TOKEN"]
    cli("ws-mode", "race_on_accept")
    obs = asyncio.run(observe_ws(ws_url, token, timeout_s=5))
    assert obs.close_code == 1011
    assert "level" in cli("logs", "toxiproxy").stdout   # Toxiproxy logs JSON lines
    cli("down")
    assert [c.removeprefix(f"simstack-{stack_id}-") for c in running[0]] == ["api", "auth", "toxiproxy"]
    assert len(running[1]) == 1
    assert labelled(stack_id) == ([], [])


def test_watch_shows_what_each_connection_went_through(cli):
    stack_id, urls = detached(cli)
    token = dict(re.findall(r"^export (\w+)=(\S+)$", cli("env").stdout, re.M))["SIMSTACK_TOKEN"]
    fault_id = re.search(r"applied (\S+):", cli("fault", "add", "race_on_accept").stdout).group(1)
    asyncio.run(observe_ws(urls["ws"], token, timeout_s=5))
    cli("fault", "reset")
    asyncio.run(observe_ws(urls["ws"], token, timeout_s=5))
    out = cli("watch", "--once").stdout
    assert max(map(len, out.splitlines())) <= 100, "watch wraps at 100 columns"
    records = re.split(r"\n(?=\d\d:\d\d:\d\d\.\d{3} )", out.strip())   # a record's continuation lines are indented
    lines = [" ".join(r.split()) for r in records if " WS " in r]
    race, fixed = lines[-2], lines[-1]
    assert "[authenticated > accepted > closed] close=1011 (Internal error)" in race
    assert "error=NotRegistered" in race and f"faults={fault_id}" in race
    assert "[authenticated > accepted > registered > ready > closed]" in fixed
    assert "agent_completed" in fixed and "faults=" not in fixed


def test_e2e_subcommand_takes_its_options():
    from simstack.cli import build_parser
    args = build_parser().parse_args(["e2e", "--profile", "fast", "--mode", "local"])
    assert (args.profile, args.mode) == ("fast", "local")


def test_attach_is_the_same_handle_as_a_started_stack_and_stop_leaves_it_running(cli, monkeypatch):
    stack_id, urls = detached(cli, "--bypass-key", "attach-key")
    monkeypatch.setenv("SIMSTACK_STATE_DIR", cli.env["SIMSTACK_STATE_DIR"])
    stack = Stack.attach()
    assert (stack.id, stack.attached, stack.mode, stack.profile) == (stack_id, True, "local", "fast")
    assert (stack.endpoints.api_url, stack.endpoints.ws_url, stack.endpoints.auth_url) == \
        (urls["api"], urls["ws"], urls["auth"])
    token = stack.token()   # with the bypass key the stack was started with
    stack.faults.add("race_on_accept", id="race")
    assert asyncio.run(observe_ws(urls["ws"], token, timeout_s=5)).close_code == 1011
    assert any("race" in (r.get("faults") or []) for r in stack.timeline() if r["kind"] == "ws")
    stack.faults.reset()
    assert run_scenario(load_scenario("fix-1011"), stack).passed   # the scenario runner takes the handle
    stack.stop()
    assert len(stack_processes(stack_id)) == 3, "stop() on an attached stack leaves it running"
    assert f"simstack {stack_id}" in cli("status").stdout


def test_a_start_up_killed_with_sigkill_leaves_nothing_the_next_command_does_not_remove(cli, tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    cli.env["TMPDIR"] = str(tmp)
    proc = subprocess.Popen([*SIMSTACK, "up", "--profile", "fast"], env=cli.env, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not list(tmp.glob("simstack-*")) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert list(tmp.glob("simstack-*")), "the stack's log directory appears during start-up"
    proc.kill()
    proc.wait()
    cli("status", check=False)
    assert list(tmp.iterdir()) == [], "the next command removes the killed start-up's temporary directory"


@pytest.mark.docker
def test_status_removes_containers_whose_owner_died(cli):
    from simstack import images
    from simstack.launchers.docker import LABEL_OWNER_HOST, LABEL_OWNER_PID, LABEL_STACK, docker_client
    gone = subprocess.Popen(["true"])
    gone.wait()
    client = docker_client()
    labels = {LABEL_STACK: "orphan0001", LABEL_OWNER_PID: str(gone.pid), LABEL_OWNER_HOST: socket.gethostname()}
    container = client.containers.create(images.toxiproxy_image(), labels=labels, name=f"simstack-orphan-{gone.pid}")
    try:
        cli("status", check=False)
        remaining = client.containers.list(all=True, filters={"label": f"{LABEL_STACK}=orphan0001"})
        assert remaining == [], "status removes what a dead owner left"
    finally:
        try:
            container.remove(force=True)
        except Exception:
            pass
        client.close()
