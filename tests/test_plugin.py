"""The pytest plugin, proven by running inner pytest sessions (pytester, in subprocesses) against real stacks."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from simstack.state import pid_alive
from test_kill import interrupt

EXAMPLE = Path(__file__).resolve().parent / "example_suite"
BASE = ["-p", "no:cacheprovider", "-o", "asyncio_default_fixture_loop_scope=function"]
FAST = ["--simstack=local", "--simstack-profile", "fast"]

SETTINGS = '''
API_URL = "https://api.staging.netra-example.invalid"
class Settings:
    ws_url = "wss://api.staging.netra-example.invalid/ws"
SETTINGS = Settings()
URLS = {"auth": "https://auth.staging.netra-example.invalid"}
'''

READS_SETTINGS = '''
import httpx
from suite_settings import API_URL, SETTINGS, URLS

AT_IMPORT = (API_URL, SETTINGS.ws_url, URLS["auth"])
HEALTH_AT_IMPORT = httpx.get(API_URL + "/health", timeout=10).status_code

def test_settings_point_at_the_stack(simstack):
    e = simstack.endpoints
    assert AT_IMPORT == (e.api_url, e.ws_url, e.auth_url)
    assert HEALTH_AT_IMPORT == 200
'''

RECORD_PIDS = '''
import json, os, time

def test_record_pids(simstack):
    pids = [p.pid for p in simstack.stack.launcher.procs.values()]
    with open(os.environ["PIDFILE"], "w") as f:
        json.dump(pids, f)
    if os.environ.get("HOLD"):
        time.sleep(120)
'''


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(*BASE, *args, timeout=180)


def wait_gone(pids: list[int], within_s: float = 10.0) -> list[int]:
    deadline = time.monotonic() + within_s
    while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [p for p in pids if pid_alive(p)]


# ------------------------------------------------------------------ pointing a suite at the stack

def test_env_is_exported_before_collection(pytester):
    pytester.makepyfile(test_env='''
        import os, httpx
        NAMES = ("SIMSTACK_API_URL", "SIMSTACK_WS_URL", "SIMSTACK_AUTH_URL", "SIMSTACK_TOKEN",
                 "SUITE_HEALTH", "SUITE_JWT", "NO_PROXY")
        AT_IMPORT = {n: os.environ.get(n) for n in NAMES}
        HEALTH_AT_IMPORT = httpx.get(AT_IMPORT["SUITE_HEALTH"], timeout=10).status_code

        def test_env_was_set_before_import(simstack):
            e = simstack.endpoints
            assert AT_IMPORT["SIMSTACK_API_URL"] == e.api_url and AT_IMPORT["SIMSTACK_WS_URL"] == e.ws_url
            assert AT_IMPORT["SIMSTACK_AUTH_URL"] == e.auth_url
            assert AT_IMPORT["SUITE_HEALTH"] == e.api_url + "/health" and HEALTH_AT_IMPORT == 200
            assert "127.0.0.1" in AT_IMPORT["NO_PROXY"].split(",")

        def test_token_is_minted_by_the_auth_standin(simstack):
            token = AT_IMPORT["SUITE_JWT"]
            assert token == AT_IMPORT["SIMSTACK_TOKEN"] == simstack.token and token.count(".") == 2
            r = httpx.post(simstack.endpoints.auth_url + "/auth/validate", headers={"Authorization": "Bearer " + token})
            assert r.status_code == 200 and r.json()["valid"] is True
    ''')
    result = run(pytester, *FAST, "--simstack-env", "SUITE_HEALTH={api_url}/health",
                 "--simstack-env", "SUITE_JWT={token}")
    result.assert_outcomes(passed=2)


def test_override_is_applied_before_collection(pytester):
    pytester.makepyfile(suite_settings=SETTINGS, test_settings=READS_SETTINGS)
    result = run(pytester, *FAST, "--simstack-override", "suite_settings:API_URL={api_url}",
                 "--simstack-override", "suite_settings:SETTINGS.ws_url={ws_url}",
                 "--simstack-override", "suite_settings:URLS.auth={auth_url}")
    result.assert_outcomes(passed=1)


def test_ini_lines_configure_overrides_and_env(pytester):
    pytester.makeini('''
        [pytest]
        simstack_override =
            suite_settings:API_URL={api_url}
            suite_settings:SETTINGS.ws_url={ws_url}
            suite_settings:URLS.auth={auth_url}
        simstack_env =
            SUITE_JWT={token}
            SUITE_AUTH={auth_url}/auth
    ''')
    pytester.makepyfile(suite_settings=SETTINGS, test_settings=READS_SETTINGS + '''
import os
ENV_AT_IMPORT = (os.environ.get("SUITE_JWT"), os.environ.get("SUITE_AUTH"))

def test_env_lines(simstack):
    assert ENV_AT_IMPORT == (simstack.token, simstack.endpoints.auth_url + "/auth")
''')
    result = run(pytester, *FAST)
    result.assert_outcomes(passed=2)
    # without --simstack, the ini lines do nothing: the suite still points at "staging"
    pytester.makepyfile(test_settings="import suite_settings\n\ndef test_untouched():\n"
                                      "    assert 'staging' in suite_settings.API_URL\n")
    run(pytester).assert_outcomes(passed=1)


# ------------------------------------------------------------------ fixtures and markers

def test_fixtures_and_markers_apply_faults_for_one_test_then_reset(pytester):
    pytester.makepyfile(test_faults='''
        import json, httpx, pytest
        from websockets.asyncio.client import connect
        from websockets.exceptions import InvalidStatus

        def health(s):
            return httpx.get(s.endpoints.api_url + "/health", timeout=10).status_code

        def kinds(s):
            return sorted(f["kind"] for f in s.faults.list())

        def headers(s):
            return {"Authorization": "Bearer " + s.token, "X-E2E-Test": "true"}

        @pytest.mark.simstack_faults({"kind": "status_override", "target": "api",
                                      "params": {"path": "/health", "status": 503}})
        def test_1_marker_faults_apply(simstack):
            assert health(simstack) == 503
            assert kinds(simstack) == ["race_on_accept", "status_override"]

        def test_2_fixture_faults_apply(simstack, faults):
            assert kinds(simstack) == ["race_on_accept"]      # the marker's fault is gone, the run's scenario stays
            assert health(simstack) == 200
            faults.add("status_override", target="api", path="/health", status=500)
            assert health(simstack) == 500

        @pytest.mark.asyncio
        @pytest.mark.simstack_scenario("auth-403")
        async def test_3_scenario_marker_applies(simstack):
            assert kinds(simstack) == ["auth_reject", "race_on_accept"]
            with pytest.raises(InvalidStatus) as exc:
                async with connect(simstack.endpoints.ws_url, additional_headers=headers(simstack)):
                    pass
            assert exc.value.response.status_code == 403

        @pytest.mark.asyncio
        async def test_4_all_reset_afterwards(simstack):
            assert kinds(simstack) == ["race_on_accept"]
            assert health(simstack) == 200
            async with connect(simstack.endpoints.ws_url, additional_headers=headers(simstack)) as ws:
                await ws.send(json.dumps({"type": "start_agent", "payload": {"user_request": "costs"}}))
                types = []
                while "agent_completed" not in types:
                    types.append(json.loads(await ws.recv())["type"])
            assert [t for t in types if t.startswith("agent_") and t != "agent_status"][-1] == "agent_completed"
    ''')
    result = run(pytester, *FAST, "--simstack-scenario", "fix-1011", "-v")
    result.assert_outcomes(passed=4)


def test_markers_and_fixtures_skip_without_a_stack(pytester):
    pytester.makepyfile(test_nostack='''
        import pytest

        def test_fixture(simstack):
            pass

        @pytest.mark.simstack_faults("race_on_accept")
        def test_marker():
            pass
    ''')
    result = run(pytester, "-rs")
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(["*needs a simstack stack: run with --simstack=local*",
                                 "*simstack markers need a stack*"])


# ------------------------------------------------------------------ evidence of real traffic

CANNED = '''
    import json, httpx, pytest
    from websockets.exceptions import WebSocketException
    from websockets.sync.client import connect

    CANNED = ["agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_completed"]

    def test_touches_nothing():
        assert True

    @pytest.mark.simstack_faults("race_on_accept")
    def test_falls_back_to_canned_events(simstack):
        try:
            with connect(simstack.endpoints.ws_url,
                         additional_headers={"Authorization": "Bearer " + simstack.token}) as ws:
                ws.send(json.dumps({"type": "start_agent", "payload": {"user_request": "costs"}}))
                events = [json.loads(ws.recv(timeout=10))["type"] for _ in range(8)]
        except (OSError, TimeoutError, WebSocketException):
            events = CANNED
        assert events == CANNED

    def test_real_traffic(simstack):
        assert httpx.get(simstack.endpoints.api_url + "/health").status_code == 200
'''


def test_require_traffic_fails_tests_that_passed_without_the_stack(pytester):
    pytester.makepyfile(test_canned=CANNED)
    run(pytester, *FAST).assert_outcomes(passed=3)     # the canned fallback hides the broken socket...
    result = run(pytester, *FAST, "--simstack-require-traffic")
    result.assert_outcomes(passed=1, failed=2)        # ...until traffic is required
    result.stdout.fnmatch_lines([
        "*test_touches_nothing passed without touching the stack*",
        "*test_falls_back_to_canned_events passed although none of its 1 WebSocket connection(s) got a "
        "single frame from the server (close codes: 1011): did it fall back to canned data?",
    ])
    result.stdout.re_match_lines([r"\s+0\s+1\s+0\s+1011\s+race_on_accept-\w+\s+failed$",   # 100 columns: the
                                  r"\s+test_canned.py::test_falls_back_to_canned_events$"])   # test id wraps


# ------------------------------------------------------------------ bad values

BAD = {
    "env template key": (["--simstack-env", "X={api}"], ["*--simstack-env: unknown template key {api}*",
                                                         "*allowed keys: {api_url}, {ws_url}, {auth_url}*"]),
    "env syntax": (["--simstack-env", "no equals sign"], ["*'no equals sign' is not NAME=TEMPLATE*"]),
    "override syntax": (["--simstack-override", "suite_settings={api_url}"],
                        ["*'suite_settings={api_url}' is not MODULE:OBJECT.ATTR=TEMPLATE*"]),
    "override module": (["--simstack-override", "no_such_module:X.y={api_url}"],
                        ["*cannot import module 'no_such_module'*"]),
    "override attribute": (["--simstack-override", "suite_settings:SETTINGS.wsurl={ws_url}"],
                           ["*suite_settings:SETTINGS.wsurl does not exist*", "*names defined there: ws_url*"]),
    "override template": (["--simstack-override", "suite_settings:API_URL={apiurl}"],
                          ["*unknown template key {apiurl}*"]),
    "scenario": (["--simstack-scenario", "no-such-scenario"],
                 ["*--simstack-scenario: no scenario 'no-such-scenario'*", "*shipped scenarios:*repro-1011*"]),
    "mode": (["--simstack", "bogus"], ["*argument --simstack: invalid choice: 'bogus'*"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_option_values_are_usage_errors(pytester, case):
    args, lines = BAD[case]
    pytester.makepyfile(suite_settings=SETTINGS, test_x="def test_x():\n    pass\n")
    result = run(pytester, "--simstack=local", *args) if "--simstack" not in args else run(pytester, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(lines)


def test_bad_ini_line_is_a_usage_error(pytester):
    pytester.makeini("[pytest]\nsimstack_env = STAGING_JWT={jwt}\n")
    result = run(pytester, "--simstack=local")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*ini simstack_env: unknown template key {jwt}*"])


# ------------------------------------------------------------------ lifecycle

@pytest.mark.parametrize("ending", ["normal", "SIGINT", "SIGTERM"])
def test_no_process_left_behind(pytester, tmp_path, ending):
    pytester.makepyfile(test_pids=RECORD_PIDS)
    pidfile = tmp_path / "pids.json"
    env = {**os.environ, "PIDFILE": str(pidfile), "PYTHONDONTWRITEBYTECODE": "1"}
    argv = [sys.executable, "-m", "pytest", *BASE, *FAST, "-q"]
    if ending == "normal":
        proc = subprocess.run(argv, cwd=pytester.path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=60)
        out = proc.stdout
    else:   # the test holds; signalled 0.2 s after the pid file appears (json.dump done, the test asleep)
        env["HOLD"] = "1"
        proc, out = interrupt(argv, env, pytester.path, ending, 0.2, started=lambda _: pidfile.exists())
    pids = json.loads(pidfile.read_text())
    assert len(pids) == 3, pids                      # api, auth, toxiproxy
    assert proc.returncode == (0 if ending == "normal" else pytest.ExitCode.INTERRUPTED), out
    assert wait_gone(pids) == [], f"left running after the session ({ending}): {pids}\n{out}"


def test_xdist_gives_each_worker_its_own_stack(pytester, tmp_path, monkeypatch):
    pytester.makepyfile(test_workers='''
        import os, httpx, pytest

        @pytest.mark.parametrize("i", range(4))
        def test_worker_stack(simstack, i):
            assert os.environ["SIMSTACK_API_URL"] == simstack.endpoints.api_url
            assert httpx.get(simstack.endpoints.api_url + "/health").status_code == 200
            with open(os.path.join(os.environ["OUT"], f"{i}.txt"), "w") as f:
                f.write(os.environ["PYTEST_XDIST_WORKER"] + " " + simstack.endpoints.api_url)
    ''')
    monkeypatch.setenv("OUT", str(tmp_path))
    result = run(pytester, *FAST, "-n", "2", "--simstack-require-traffic")
    result.assert_outcomes(passed=4)
    seen = {tuple(p.read_text().split()) for p in tmp_path.glob("*.txt")}
    workers = {w for w, _ in seen}
    urls = {u for _, u in seen}
    assert len(workers) == len(urls) == 2, seen      # one stack per worker
    result.stdout.fnmatch_lines(["*simstack traffic*", "one stack per xdist worker*"])


def test_attach_shares_a_detached_stack_across_xdist_workers(pytester, tmp_path, monkeypatch):
    monkeypatch.setenv("SIMSTACK_STATE_DIR", str(tmp_path / "state"))
    cli = [sys.executable, "-m", "simstack.cli"]
    up = subprocess.run([*cli, "up", "--detach", "--profile", "fast"], capture_output=True, text=True, timeout=150)
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        from simstack.state import find_running
        from simstack.stack import FaultControl
        endpoints = find_running()
        pytester.makepyfile(test_attached='''
            import os, httpx, pytest

            @pytest.mark.parametrize("i", range(4))
            def test_shared_stack(simstack, i):
                assert simstack.endpoints.api_url == os.environ["EXPECTED_API_URL"]
                assert [f["kind"] for f in simstack.faults.list()] == ["lost_events"]   # applied once
                assert httpx.get(simstack.endpoints.api_url + "/health").status_code == 200
        ''')
        monkeypatch.setenv("EXPECTED_API_URL", endpoints.api_url)
        result = run(pytester, "--simstack-attach", "--simstack-scenario", "lost-events", "-n", "2")
        result.assert_outcomes(passed=4)
        control = FaultControl(endpoints)
        try:
            assert control.list() == []                    # the run's scenario is removed afterwards
        finally:
            control.close()
        assert httpx.get(endpoints.api_url + "/health", trust_env=False).status_code == 200   # still running
    finally:
        subprocess.run([*cli, "down"], capture_output=True, text=True, timeout=60)


# ------------------------------------------------------------------ the worked example

def _example(pytester: pytest.Pytester) -> None:
    shutil.copytree(EXAMPLE, pytester.path, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))


def test_example_suite_skips_everything_without_the_stack(pytester):
    _example(pytester)
    result = run(pytester, "-rs")
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(["*staging is down: https://api.staging.netra-example.invalid/health is not 200*"])


def test_example_suite_passes_unmodified_against_the_fixed_stack(pytester):
    _example(pytester)
    result = run(pytester, *FAST, "--simstack-scenario", "fix-1011", "--simstack-require-traffic")
    result.assert_outcomes(passed=2)
    result.stdout.re_match_lines([
        r"\s+0\s+1\s+5\s+1000\s+race_on_accept-\w+\s+passed$", r"\s+test_staging.py::test_agent_run_reports_all_events$",
        r"\s+1\s+0\s+0\s+-\s+-\s+passed\s+test_staging.py::test_health"])


def test_example_suite_canned_fallback_is_caught_under_repro_1011(pytester):
    _example(pytester)
    run(pytester, *FAST, "--simstack-scenario", "repro-1011").assert_outcomes(passed=2)   # green, but fake
    result = run(pytester, *FAST, "--simstack-scenario", "repro-1011", "--simstack-require-traffic")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*test_agent_run_reports_all_events passed although none of its 1 WebSocket "
                                 "connection(s) got a single frame from the server (close codes: 1011)*"])


@pytest.mark.docker
def test_example_suite_runs_the_same_against_a_docker_stack(pytester):
    _example(pytester)
    docker = ["--simstack=docker", "--simstack-profile", "fast", "--simstack-require-traffic"]
    run(pytester, *docker, "--simstack-scenario", "fix-1011").assert_outcomes(passed=2)
    run(pytester, *docker, "--simstack-scenario", "repro-1011").assert_outcomes(passed=1, failed=1)
