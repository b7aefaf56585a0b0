"""No `simstack` command ends in a Python traceback: against no stack, a stack that stopped answering,
or bad arguments, every subcommand exits non-zero with one line that says what and what to do."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

SIMSTACK = [sys.executable, "-m", "simstack.cli"]

NEED_A_STACK = [
    ["env"], ["logs", "api"], ["ws-mode", "healthy"], ["fault", "add", "lost_events"], ["fault", "ls"],
    ["fault", "rm", "some-id"], ["fault", "reset"], ["watch", "--once"], ["scenario", "run", "repro-1011", "--id", "x"],
    ["down", "--id", "nosuchstack"],
]
DEAD_STACK = [c for c in NEED_A_STACK if c[0] != "down"] + [["scenario", "run", "repro-1011"]]
BAD_ARGS = [
    ["up", "--profile", "turbo"], ["up", "--api-port", "abc"], ["up", "--auth-policy", "paranoid"],
    ["fault", "add", "no_such_kind"], ["fault", "add", "latency", "-p", "latency_ms"],
    ["fault", "add", "latency", "-t", "{first: "], ["fault", "add", "latency", "-p", "latency_ms=fast"],
    ["fault", "add", "cold_start", "--target", "database"], ["scenario", "run", "no-such-scenario"],
    ["repro", "1012"], ["ws-mode", "sideways"], ["logs", "database"], ["e2e", "--no-such-option"],
    ["no-such-command"], ["status", "--bogus"],
]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def env(tmp_path):
    return {**os.environ, "SIMSTACK_STATE_DIR": str(tmp_path / "state"), "NO_PROXY": "127.0.0.1,localhost"}


@pytest.fixture
def dead_stack(env, tmp_path):
    """A record whose owner process lives but whose endpoints no longer answer (a wedged or half-dead stack)."""
    owner = subprocess.Popen(["sleep", "120"])
    url = f"http://127.0.0.1:{_closed_port()}"
    endpoints = {k: url for k in ("api_url", "auth_url", "toxiproxy_url", "api_control_url", "auth_control_url")}
    record = {"id": "deadbeef00", "mode": "local", "profile": "fast", "pid": owner.pid, "created": time.time(),
              "startup_s": 1.0, "scenario": None, "log_dir": str(tmp_path / "gone"), "up_log": None,
              "endpoints": {**endpoints, "ws_url": url.replace("http", "ws") + "/ws", "admin_key": "k"}}
    state = tmp_path / "state"
    state.mkdir()
    (state / "deadbeef00.json").write_text(json.dumps(record))
    yield
    owner.kill()
    owner.wait()


def _run_all(commands: list[list[str]], env: dict) -> list[tuple[list[str], subprocess.CompletedProcess]]:
    def one(args):
        return args, subprocess.run([*SIMSTACK, *args], env=env, capture_output=True, text=True, timeout=60)
    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(one, commands))


def _problems(results, argparse_usage: bool = False) -> list[str]:
    bad = []
    for args, proc in results:
        out = proc.stdout + proc.stderr
        lines = proc.stderr.strip().splitlines()
        if "Traceback" in out or proc.returncode == 0 or not lines:
            bad.append(f"simstack {' '.join(args)}: exit {proc.returncode}\n{out}")
        elif argparse_usage and not ("error:" in lines[-1] and lines[-1].startswith("simstack")):
            bad.append(f"simstack {' '.join(args)}: no argparse error line\n{out}")
        elif not argparse_usage and (len(lines) != 1 or " -> " not in lines[0]):
            bad.append(f"simstack {' '.join(args)}: not one 'what -> what to do' line\n{out}")
    return bad


def test_every_command_without_a_stack_says_so_in_one_line(env):
    results = _run_all(NEED_A_STACK, env)
    assert _problems(results) == []
    for _, proc in results:
        assert "simstack up --detach" in proc.stderr


def test_every_command_against_a_stack_that_stopped_answering_says_so_in_one_line(env, dead_stack):
    results = _run_all(DEAD_STACK, env)
    assert _problems(results) == []
    for args, proc in results:   # the dead stack's record was found, not taken for "no stack"
        if "--id" not in args:     # (an unknown id is "no running stack with id ..." on purpose)
            assert "simstack up --detach" not in proc.stderr, (args, proc.stderr)


def test_bad_arguments_are_one_error_line_never_a_traceback(env):
    usage = [c for c in BAD_ARGS if c[0] in ("up", "repro", "ws-mode", "logs", "e2e", "no-such-command", "status")
             or "--target" in c]
    ours = [c for c in BAD_ARGS if c not in usage]
    assert _problems(_run_all(usage, env), argparse_usage=True) == []
    assert _problems(_run_all(ours, env)) == []
