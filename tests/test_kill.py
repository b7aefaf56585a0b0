"""Start-up interrupted at seeded points with SIGINT, SIGTERM or SIGKILL, for the CLI (`simstack up`)
and the plugin (`pytest --simstack=local`): after the next command (or session) nothing remains: no
process, no `$TMPDIR/simstack-*` directory, no record or log. SIGINT and SIGTERM never end in a
traceback; the plugin exits with pytest's "interrupted" code. Bounded: 12 cases, ~15-30 s."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from test_cli import processes_with_env

SEED = 9
SIGNALS = ("SIGINT", "SIGTERM", "SIGKILL")
SIMSTACK = [sys.executable, "-m", "simstack.cli"]
HOLD = "import time\n\ndef test_hold(simstack):\n    time.sleep(60)\n"


_rng = random.Random(SEED)   # seconds after the stack's temporary directory appears (its launcher is starting)
CLI_CASES = [(sig, round(_rng.uniform(0.0, 0.6), 3)) for sig in SIGNALS for _ in range(2)]
PLUGIN_CASES = [(sig, round(_rng.uniform(0.0, 0.6), 3)) for sig in SIGNALS for _ in range(2)]


def _marked(marker: str) -> list[int]:
    return processes_with_env("SIMSTACK_KILL_TEST", marker)


@pytest.fixture
def sandbox(tmp_path):
    """An environment of its own: TMPDIR, state directory, and a marker every child inherits."""
    (tmp_path / "tmp").mkdir()
    marker = uuid.uuid4().hex
    env = {**os.environ, "TMPDIR": str(tmp_path / "tmp"), "SIMSTACK_STATE_DIR": str(tmp_path / "state"),
           "SIMSTACK_KILL_TEST": marker, "NO_PROXY": "127.0.0.1,localhost", "PYTHONDONTWRITEBYTECODE": "1"}
    yield tmp_path, env, marker
    for pid in _marked(marker):   # a failing case leaves nothing running either
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def interrupt(argv: list[str], env: dict, cwd: Path, sig: str, after_s: float,
               started=None) -> tuple[subprocess.Popen, str]:
    """Run ``argv``, wait until ``started(proc)`` (default: its stack's temporary directory exists),
    then ``after_s`` more, send ``sig``; the process and its output once it ended."""
    started = started or (lambda proc: list(Path(env["TMPDIR"]).glob("simstack-*")))
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while not started(proc) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        assert proc.poll() is None, f"ended before its stack started: {proc.communicate()[0]}"
        time.sleep(after_s)
        proc.send_signal(getattr(signal, sig))
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc, out


def _leftovers(tmp_path: Path, marker: str) -> dict:
    deadline = time.monotonic() + 10   # children of a SIGKILLed parent get SIGTERM and take a moment
    while _marked(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    state = tmp_path / "state"
    return {"processes": _marked(marker), "temp dirs": sorted(p.name for p in (tmp_path / "tmp").iterdir()),
            "records": sorted(p.name for p in state.iterdir()) if state.exists() else []}


NOTHING = {"processes": [], "temp dirs": [], "records": []}


@pytest.mark.parametrize("sig, after_s", CLI_CASES, ids=[f"{s}-{p}s" for s, p in CLI_CASES])
def test_interrupted_simstack_up_leaves_nothing_after_the_next_command(sandbox, sig, after_s):
    tmp_path, env, marker = sandbox
    proc, out = interrupt([*SIMSTACK, "up", "--profile", "fast"], env, tmp_path, sig, after_s)
    if sig != "SIGKILL":
        assert "Traceback" not in out, out
    nxt = subprocess.run([*SIMSTACK, "status"], env=env, capture_output=True, text=True, timeout=60)
    assert "Traceback" not in nxt.stdout + nxt.stderr
    assert _leftovers(tmp_path, marker) == NOTHING, out


@pytest.mark.parametrize("sig, after_s", PLUGIN_CASES, ids=[f"{s}-{p}s" for s, p in PLUGIN_CASES])
def test_interrupted_plugin_start_up_leaves_nothing_after_the_next_session(sandbox, sig, after_s):
    tmp_path, env, marker = sandbox
    (tmp_path / "test_hold.py").write_text(HOLD)
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--simstack=local",
            "--simstack-profile", "fast", "test_hold.py"]
    proc, out = interrupt(argv, env, tmp_path, sig, after_s)
    if sig != "SIGKILL":
        assert proc.returncode == pytest.ExitCode.INTERRUPTED, out
        assert "Traceback (most recent call last)" not in out, out
        if "simstack: interrupted while starting" in out:   # the signal landed during start-up
            assert "KeyboardInterrupt" not in out, out
    # the next session (a stack start) or command removes what a killed one left
    (tmp_path / "test_hold.py").write_text("def test_ok(simstack):\n    pass\n")
    if sig == "SIGKILL":
        nxt = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert nxt.returncode == 0, nxt.stdout + nxt.stderr
    else:
        subprocess.run([*SIMSTACK, "status"], env=env, capture_output=True, text=True, timeout=60)
    assert _leftovers(tmp_path, marker) == NOTHING, out


# A service of yours whose real server is a grandchild of simstack's child: forked behind a shell,
# or in a session of its own (setsid), so neither the child's PDEATHSIG nor a killpg of its group
# reaches it. Its port is the one simstack handed it, and it keeps it while it runs.
UVICORN = f"{sys.executable} -m uvicorn upstream_app:app --app-dir {Path(__file__).parent} --port {{port}}"
FORKING = {"forked": f"{UVICORN} & wait", "setsid": f"setsid {UVICORN} & wait", "workers": f"{UVICORN} --workers 2"}
OWN_CASES = [("SIGKILL", "forked"), ("SIGKILL", "setsid"), ("SIGKILL", "workers"), ("SIGTERM", "setsid"),
             ("SIGINT", "forked")]


@pytest.mark.parametrize("sig, command", OWN_CASES, ids=[f"{s}-{c}" for s, c in OWN_CASES])
def test_interrupted_owner_leaves_no_grandchild_of_a_command_of_yours(sandbox, sig, command):
    tmp_path, env, marker = sandbox
    argv = [*SIMSTACK, "up", "--profile", "fast", "--api-cmd", FORKING[command]]
    ready = lambda proc: list((tmp_path / "state").glob("*.json"))   # the stack is healthy: its record exists
    proc, out = interrupt(argv, env, tmp_path, sig, 0.0, started=ready)
    if command != "workers":   # (a supervisor exec'd by simstack gets PDEATHSIG and stops its workers itself)
        assert "uvicorn" in " ".join(_cmdlines(marker)) or sig != "SIGKILL", "the server should outlive a SIGKILL"
    if sig != "SIGKILL":
        assert "Traceback" not in out, out
    nxt = subprocess.run([*SIMSTACK, "status"], env=env, capture_output=True, text=True, timeout=60)
    assert "Traceback" not in nxt.stdout + nxt.stderr
    assert _leftovers(tmp_path, marker) == NOTHING, out


def test_the_next_command_ends_only_processes_whose_owner_died(sandbox):
    """A dead owner's process is ended, SIGKILLed if it ignores SIGTERM; one whose owner lives (this
    test) and one without a mark are left alone."""
    from simstack.lineage import ENV_OWNER
    from simstack.state import OWNER_FILE, owner_mark
    tmp_path, env, _ = sandbox
    gone = subprocess.Popen(["sleep", "60"])
    dead = owner_mark(gone.pid)
    gone.kill()
    gone.wait()
    (tmp_path / "tmp" / "simstack-dead").mkdir()   # what its stack left: the reason to look at processes
    (tmp_path / "tmp" / "simstack-dead" / OWNER_FILE).write_text(dead)
    stubborn = "trap '' TERM; while :; do sleep 0.05; done"
    procs = {"orphan": subprocess.Popen(["sh", "-c", stubborn], env={**env, ENV_OWNER: f"{dead} simstack-dead"}),
             "live owner's": subprocess.Popen(["sleep", "60"], env={**env, ENV_OWNER: f"{owner_mark()} simstack-x"}),
             "unmarked": subprocess.Popen(["sleep", "60"], env=env)}
    try:
        subprocess.run([*SIMSTACK, "status"], env=env, capture_output=True, text=True, timeout=60)
        assert {name: p.poll() is None for name, p in procs.items()} == \
            {"orphan": False, "live owner's": True, "unmarked": True}
        assert procs["orphan"].returncode == -signal.SIGKILL   # it ignored the SIGTERM
    finally:
        for p in procs.values():
            p.kill()
            p.wait()


def _cmdlines(marker: str) -> list[str]:
    out = []
    for pid in _marked(marker):
        try:
            out.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            pass
    return out


def _docker():
    from simstack.launchers.docker import docker_client
    return docker_client()   # tests marked docker are skipped (conftest) when docker mode cannot run


def _owned_by(client, pid: int) -> list[str]:
    owner = {"label": f"simstack.owner_pid={pid}"}
    return ([c.name for c in client.containers.list(all=True, filters=owner)]
            + [n.name for n in client.networks.list(filters=owner)])


@pytest.mark.docker
@pytest.mark.parametrize("sig", ["SIGINT", "SIGKILL"])
def test_interrupted_docker_start_leaves_no_container_after_the_next_command(sandbox, sig):
    client = _docker()
    tmp_path, env, _ = sandbox
    proc, out = interrupt([*SIMSTACK, "up", "--mode", "docker", "--profile", "fast"], env, tmp_path, sig,
                           random.Random(f"{SEED}{sig}").uniform(0.0, 0.3),   # while containers are created
                           started=lambda p: _owned_by(client, p.pid))
    if sig != "SIGKILL":
        assert "Traceback" not in out, out
    subprocess.run([*SIMSTACK, "status"], env=env, capture_output=True, text=True, timeout=60)
    try:
        assert _owned_by(client, proc.pid) == [], out
    finally:
        client.close()
