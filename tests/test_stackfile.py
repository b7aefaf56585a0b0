"""The stack file (simstack.yaml): services of your own for `simstack up -f` and the plugin's
--simstack-file; every bad field named with its file, value and what is allowed."""
from __future__ import annotations

import sys
import textwrap

import pytest

from simstack import stackfile
from simstack.shared.errors import ConfigError
from test_gateway import TESTS

GOOD = {"services": {"api": {"cmd": "uvicorn app:app --port {port}", "health": "/healthz",
                             "depends": {"redis": "127.0.0.1:6379"}, "env": {"REDIS_URL": "redis://{dep.redis}"}}}}


def test_a_stack_file_describes_services_of_your_own():
    [api] = stackfile.parse(GOOD, "simstack.yaml")
    assert (api.name, api.cmd, api.health) == ("api", "uvicorn app:app --port {port}", "/healthz")
    assert api.deps == {"redis": "127.0.0.1:6379"} and api.env == {"REDIS_URL": "redis://{dep.redis}"}


@pytest.mark.parametrize("data,expected", [
    ({"services": {"api": {"cmd": "x", "dependz": {}}}},
     "simstack.yaml: services.api: unknown field 'dependz' (value {})\n  -> allowed fields: url, cmd, image, port, health, depends, env"),
    ({"services": {"backend": {"url": "http://127.0.0.1:1"}}},
     "simstack.yaml: services: unknown field 'backend'"),
    ({"service": {}}, "simstack.yaml: unknown field 'service'"),
    ({"services": {"api": {"cmd": "x --port {port}", "env": {"R": "{dep.redis}"}}}},
     "simstack.yaml: services.api: --api-env R: {dep.redis} names no dependency of api"),
    ({"services": {"api": {"cmd": 5}}}, "simstack.yaml: services.api.cmd: 5 is not a string"),
    ({"services": {"api": {"health": "/h"}}}, "simstack.yaml: services.api: api: give exactly one of"),
    ({"redirect": {"api.staging.x.invalid": "backend"}},
     "simstack.yaml: redirect: unknown service 'backend' in 'api.staging.x.invalid=backend'\n"
     "  -> redirect a host to one of api, ws, auth"),
    ({"redirect": {"10.0.0.1": "api"}}, "simstack.yaml: redirect: '10.0.0.1' in '10.0.0.1=api' is an IP address"),
    ({"redirect": ["api.staging.x.invalid=api"]},
     "simstack.yaml: redirect: expected a mapping of hosts to services, got ['api.staging.x.invalid=api']\n"
     "  -> e.g. redirect: {api.staging.example.com: api}"),
    ({"redirect": {"api.staging.x.invalid": None}}, "simstack.yaml: redirect: 'api.staging.x.invalid': None is not HOST: SERVICE"),
    ({"redirect": {"API.staging.x.invalid": "api", "api.staging.x.invalid": "auth"}},
     "simstack.yaml: redirect: api.staging.x.invalid is redirected twice, to 'api' (simstack.yaml: redirect) and to 'auth'"),
])
def test_bad_fields_are_named_with_file_field_value_and_allowed_values(data, expected):
    with pytest.raises(ConfigError) as info:
        stackfile.parse(data, "simstack.yaml")
        stackfile.parse_redirect_field(data, "simstack.yaml")
    assert str(info.value).startswith(expected), str(info.value)


def test_a_stack_file_with_only_redirect_lines_is_valid(tmp_path):
    path = tmp_path / "simstack.yaml"
    path.write_text("redirect:\n  api.staging.x.invalid: api\n  auth.staging.x.invalid: auth\n")
    got = stackfile.read(path)
    assert got.services == [] and stackfile.load(path) == []
    assert got.redirects == [("api.staging.x.invalid=api", f"{path}: redirect"),
                             ("auth.staging.x.invalid=auth", f"{path}: redirect")]


def test_a_missing_stack_file_says_so(tmp_path):
    with pytest.raises(ConfigError) as info:
        stackfile.load(tmp_path / "simstack.yaml")
    assert "cannot be read" in str(info.value)


def test_the_plugin_runs_a_suite_against_a_forwarded_backend_with_per_test_faults_and_traffic(pytester):
    pytester.makefile(".yaml", simstack=textwrap.dedent(f"""\
        services:
          api:
            cmd: {sys.executable} -m uvicorn upstream_app:app --app-dir {TESTS} --port {{port}} --log-level warning
    """))
    pytester.makepyfile(test_suite='''
        import json, os, httpx, pytest
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosedError

        def ws():
            return connect(os.environ["SIMSTACK_WS_URL"], proxy=None,
                           additional_headers={"Authorization": "Bearer " + os.environ["SIMSTACK_TOKEN"]})

        def test_http_reaches_the_backend():
            r = httpx.get(os.environ["SIMSTACK_API_URL"] + "/echo", timeout=10, trust_env=False)
            assert r.json()["path"] == "/echo"

        @pytest.mark.asyncio
        async def test_agent_events_arrive():
            async with ws() as c:
                assert json.loads(await c.recv())["type"] == "hello"
                await c.send(json.dumps({"type": "start_agent"}))
                assert [json.loads(await c.recv())["type"] for _ in range(5)][-1] == "agent_completed"

        @pytest.mark.asyncio
        @pytest.mark.simstack_faults("close_after_accept")
        async def test_the_staging_1011_for_this_test_only():
            async with ws() as c:
                with pytest.raises(ConnectionClosedError) as info:
                    await c.recv()
            assert info.value.rcvd.code == 1011
    ''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-o", "asyncio_default_fixture_loop_scope=function",
                                           "--simstack=local", "--simstack-profile", "fast",
                                           "--simstack-file", "simstack.yaml", "-v",
                                           timeout=180)
    result.assert_outcomes(passed=3)
    # the traffic summary: one WebSocket connection with 5 agent events for the agent test; for the
    # marked test, one connection closed 1011 by the fault (the test name may wrap onto its own line)
    result.stdout.re_match_lines([r"\s+0\s+1\s+5\s+1000\s+-\s+passed.*",
                                  r"\s+0\s+1\s+0\s+1011\s+close_after_accept-\w+\s+passed.*"])


@pytest.mark.parametrize("text,expected", [
    ("services:\n  api:\n    url: http://127.0.0.1:9\n    bogus: 1\n", "services.api: unknown field 'bogus' (value 1)"),
    ("redirect:\n  api.staging.x.invalid: backend\n",
     "redirect: unknown service 'backend' in 'api.staging.x.invalid=backend'"),
])
@pytest.mark.parametrize("command", [["up"], ["scenario", "run", "repro-1011"]], ids=["up", "scenario-run"])
def test_cli_refuses_a_bad_stack_file_in_one_line_before_starting_anything(tmp_path, text, expected, command):
    import os
    import subprocess
    path, state = tmp_path / "simstack.yaml", tmp_path / "state"
    path.write_text(text)
    r = subprocess.run([sys.executable, "-m", "simstack.cli", *command, "-f", str(path)], capture_output=True,
                       text=True, timeout=30, env={**os.environ, "SIMSTACK_STATE_DIR": str(state)})
    assert r.returncode == 2
    assert r.stderr.startswith(f"simstack: error: {path}: {expected}"), r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    assert not state.exists() or list(state.iterdir()) == []     # nothing started: no output, no record


def test_scenario_run_refuses_id_with_a_stack_file_instead_of_ignoring_either(tmp_path, capsys):
    """-f describes a stack to start and --id picks a running one: running on either would surprise."""
    from simstack.cli import main
    path = tmp_path / "simstack.yaml"
    path.write_text("services:\n  api:\n    url: http://127.0.0.1:9\n")
    assert main(["scenario", "run", "repro-1011", "-f", str(path), "--id", "0123456789"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("simstack: error: --id 0123456789 picks a running stack, and -f/--api-*/--auth-* "
                          "describe one to start -> drop --id"), err
