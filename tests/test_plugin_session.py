"""What the plugin reports is this session's and final: traffic scoped to the session that caused it
(also on a shared, attached stack), simstack's own calls kept apart, close codes once known, an
opt-out for tests that legitimately do no I/O, and --simstack-attach=ID among several stacks."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

BASE = ["-p", "no:cacheprovider", "-o", "asyncio_default_fixture_loop_scope=function"]
FAST = ["--simstack=local", "--simstack-profile", "fast"]
CLI = [sys.executable, "-m", "simstack.cli"]

AGENT_RUN = '''
import asyncio, os
from simstack.client import observe_ws

def test_agent_run(simstack):
    if os.environ.get("CANNED"):
        return              # the suite silently fell back to canned data: no traffic at all
    obs = asyncio.run(observe_ws(simstack.endpoints.ws_url, simstack.token, timeout_s=5))
    assert len(obs.events) == 5
'''


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(*BASE, *args, timeout=180)


@pytest.fixture(scope="module")
def detached(tmp_path_factory):
    """Two detached stacks in a state directory of their own: (env, [plain id, bypass-key id])."""
    import os
    env = {**os.environ, "SIMSTACK_STATE_DIR": str(tmp_path_factory.mktemp("state")),
           "NO_PROXY": "127.0.0.1,localhost", "SIMSTACK_BYPASS_KEY": ""}
    ids = []
    try:
        for extra in ([], ["--bypass-key", "the-team-key"]):
            up = subprocess.run([*CLI, "up", "--detach", "--profile", "fast", *extra], env=env, capture_output=True,
                                text=True, timeout=150)
            assert up.returncode == 0, up.stdout + up.stderr
            ids.append(re.search(r"simstack (\w+): local mode", up.stdout).group(1))
        yield env, ids
    finally:
        subprocess.run([*CLI, "down"], env=env, capture_output=True, timeout=60)


@pytest.fixture
def state_env(detached, monkeypatch):
    env, ids = detached
    monkeypatch.setenv("SIMSTACK_STATE_DIR", env["SIMSTACK_STATE_DIR"])
    return ids


def _row(result: pytest.RunResult, test: str) -> list[str]:
    """The traffic summary's row of ``test``: http, ws, events, closes, faults, outcome (the test id
    may wrap onto the next line)."""
    lines = result.stdout.lines
    for i, line in enumerate(lines):
        if re.match(r"\s*\d+\s+\d+\s+\d+\s", line):
            following = lines[i + 1].strip() if i + 1 < len(lines) else ""
            if line.rstrip().endswith(test):
                return line.rstrip()[:-len(test)].split()
            if following == test:
                return line.split()
    raise AssertionError(f"no summary row for {test}:\n{result.stdout.str()}")


def test_attach_picks_one_of_several_stacks_by_id_and_uses_its_bypass_key(pytester, state_env):
    plain, keyed = state_env
    pytester.makepyfile(test_which=f'''
        import os, httpx

        def test_which(simstack):
            assert simstack.stack.id == "{keyed}"
            assert os.environ["SIMSTACK_TOKEN"].count(".") == 2      # minted with the stack's bypass key
            assert httpx.get(os.environ["SIMSTACK_API_URL"] + "/health").status_code == 200
    ''')
    bare = run(pytester, "--simstack-attach")
    assert bare.ret == pytest.ExitCode.USAGE_ERROR
    bare.stderr.fnmatch_lines(["*2 stacks are running*", "*--simstack-attach=ID*"])
    run(pytester, f"--simstack-attach={keyed}").assert_outcomes(passed=1)
    missing = run(pytester, "--simstack-attach=nosuchstack")
    assert missing.ret == pytest.ExitCode.USAGE_ERROR
    missing.stderr.fnmatch_lines(["*no running stack with id 'nosuchstack'*"])


def test_a_second_run_on_a_shared_stack_counts_only_its_own_traffic(pytester, state_env, monkeypatch):
    plain, _ = state_env
    pytester.makepyfile(test_suite=AGENT_RUN)
    args = (f"--simstack-attach={plain}", "--simstack-require-traffic")
    first = run(pytester, *args)
    first.assert_outcomes(passed=1)
    assert _row(first, "test_suite.py::test_agent_run")[:3] == ["0", "1", "5"]
    second = run(pytester, *args)
    assert _row(second, "test_suite.py::test_agent_run")[:3] == ["0", "1", "5"], "not the first run's too"
    monkeypatch.setenv("CANNED", "1")
    canned = run(pytester, *args)
    canned.assert_outcomes(failed=1)        # earlier runs' connections no longer vouch for it
    canned.stdout.fnmatch_lines(["*test_agent_run passed without touching the stack*"])


def test_simstacks_own_token_request_is_labelled_internal(pytester, state_env):
    plain, _ = state_env
    pytester.makepyfile(test_suite=AGENT_RUN)
    run(pytester, f"--simstack-attach={plain}").assert_outcomes(passed=1)
    # (read through the CLI: pytester's teardown unloads modules first imported during the test)
    watch = subprocess.run([*CLI, "watch", "--once", "--id", plain], capture_output=True, text=True, timeout=60)
    lines = [line for line in watch.stdout.split("\n") if "/auth/e2e/test-auth" in line]
    assert lines and all("[simstack:internal]" in line for line in lines), watch.stdout
    assert "test_suite.py::test_agent_run" in watch.stdout, "the suite's own traffic keeps its test label"


def test_close_codes_of_connections_still_closing_when_the_test_ended_are_shown(pytester):
    pytester.makepyfile(test_closing='''
        import asyncio
        from websockets.asyncio.client import connect

        async def _open_and_leave(url, token):
            # the client's close frame reaches the server 0.4 s later; the client does not wait for it
            async with connect(url, additional_headers={"Authorization": "Bearer " + token,
                                                        "X-E2E-Test": "true"}, close_timeout=0.05) as ws:
                await ws.recv()

        def test_closing(simstack, faults):
            faults.add("latency", target="ws", latency_ms=400, direction="upstream")
            async def main():
                await asyncio.gather(*(_open_and_leave(simstack.endpoints.ws_url, simstack.token)
                                       for _ in range(3)))
            asyncio.run(main())
    ''')
    result = run(pytester, *FAST)
    result.assert_outcomes(passed=1)
    row = _row(result, "test_closing.py::test_closing")
    codes = [c for c in row[3].split(",") if c != "-"]
    assert sum(int(c.split("x")[1]) if "x" in c else 1 for c in codes) == 3, result.stdout.str()


PURE = '''
import httpx

def test_pure_logic():
    assert sorted([3, 1, 2]) == [1, 2, 3]

def test_real_traffic(simstack):
    assert httpx.get(simstack.endpoints.api_url + "/health").status_code == 200
'''


def test_tests_that_do_no_io_can_be_exempted_without_editing_the_suite(pytester):
    pytester.makepyfile(test_mixed=PURE)
    strict = run(pytester, *FAST, "--simstack-require-traffic")
    strict.assert_outcomes(passed=1, failed=1)                   # still failing by default
    exempt = run(pytester, *FAST, "--simstack-require-traffic", "--simstack-no-traffic-ok", "*::test_pure_*")
    exempt.assert_outcomes(passed=2)
    assert _row(exempt, "test_mixed.py::test_pure_logic")[5:7] == ["no", "I/O"]
    exempt.stdout.fnmatch_lines(["no I/O: 1 test(s) passed without touching the stack*"])
    pytester.makeini("[pytest]\nsimstack_no_traffic_ok =\n    test_mixed.py::test_pure_logic\n")
    run(pytester, *FAST, "--simstack-require-traffic").assert_outcomes(passed=2)
