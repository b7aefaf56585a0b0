"""examples/own-backend: a backend that is not simstack's, its WebSocket registration a round trip to a
real Redis. With a healthy link both builds pass the team's suite (through the pytest plugin,
attached); with latency on dep:redis the racy build closes 1011 on every connection and the fixed
build delivers all five agent events. This is `make repro-own-backend`.

The same through the example's committed stack file (simstack.yaml): `simstack scenario run -f`
and the plugin's --simstack-file start the backend from it, the build chosen by $BUILD."""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "own-backend"
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("redis-server") is None,
                                 reason="redis-server is not installed (`make redis`)")]


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("own_backend_compare", EXAMPLE / "compare.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module          # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def redis_addr(example):
    """One redis-server on a free loopback port for the module."""
    redis, addr = example.start_redis()
    yield addr
    redis.terminate()
    redis.wait(5)


@pytest.fixture(scope="module")
def copy(example, redis_addr, tmp_path_factory) -> Path:
    """The example as committed, with the stack file's Redis address swapped for this module's Redis
    (the only change: its command runs in the copy, next to backend.py)."""
    dest = tmp_path_factory.mktemp("own-backend") / "own-backend"
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns("__pycache__"))
    committed = (dest / "simstack.yaml").read_text()
    assert committed.count("redis: 127.0.0.1:6379") == 1
    (dest / "simstack.yaml").write_text(committed.replace("redis: 127.0.0.1:6379", f"redis: {redis_addr}"))
    return dest


def run(argv: list[str], build: str, state_dir: Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """A command with the caller's environment, as a team runs it: $BUILD, and the venv on $PATH."""
    env = {**os.environ, "BUILD": build, "SIMSTACK_STATE_DIR": str(state_dir), "COLUMNS": "200",
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    return subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=180)


def test_racy_closes_1011_only_under_a_slow_redis_link_and_fixed_passes_everywhere(example, redis_addr, tmp_path,
                                                                                     monkeypatch):
    monkeypatch.setenv("SIMSTACK_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("PATH", example.venv_path())     # the stack file's `uvicorn`
    rows = example.compare(redis_addr, out=lambda *_: None)
    by = {(r["build"], r["link"] == "healthy"): r for r in rows}
    racy_slow = by[("racy", False)]
    assert racy_slow["suite"]["test_health"] == "passed"
    assert "received 1011 (internal error) Internal error" in racy_slow["suite"]["test_agent_run_delivers_all_five_events"]
    assert [(o.close, o.events) for o in racy_slow["probe"]] == [(1011, 0)] * 5
    for key in (("racy", True), ("fixed", True), ("fixed", False)):
        assert set(by[key]["suite"].values()) == {"passed"}, by[key]
        assert [o.events for o in by[key]["probe"]] == [5] * 5, by[key]
    assert example.verdict(rows) == []
    assert list(tmp_path.iterdir()) == []              # no stack record or report left behind



@pytest.mark.parametrize("build,passes,fails", [("racy", "repro-slow-redis", "fix-slow-redis"),
                                                ("fixed", "fix-slow-redis", "repro-slow-redis")])
def test_scenario_run_with_the_stack_file_reproduces_the_1011_on_racy_and_passes_on_fixed(copy, build, passes,
                                                                                          fails, tmp_path):
    r = run([sys.executable, "-m", "simstack.cli", "scenario", "run", "repro-slow-redis", "fix-slow-redis",
             "--scenarios", str(copy / "scenarios"), "-f", str(copy / "simstack.yaml"), "--profile", "fast"],
            build, tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr      # on either build, one of the two fails
    assert re.search(r"started stack \w+ \(local mode\) for this run with your api service", r.stdout), r.stdout
    assert f"scenario {passes}: PASS" in r.stdout and f"scenario {fails}: FAIL" in r.stdout, r.stdout
    close = re.findall(r"ws\[0\]\.close_code +expected \d+ +observed (\d+)", r.stdout)
    assert close == (["1011", "1011"] if build == "racy" else ["1000", "1000"]), r.stdout
    assert ("client saw: ConnectionClosedError: received 1011 (internal error) Internal error" in r.stdout) \
        == (build == "racy")
    assert "Traceback" not in r.stderr and list(tmp_path.glob("*.json")) == []   # no stack record left


def test_the_unmodified_suite_under_the_plugin_with_the_stack_file_gets_the_racy_1011_with_traffic(copy, tmp_path):
    r = run([sys.executable, "-m", "pytest", str(copy / "suite"), "-v", "--simstack=local", "--simstack-profile",
             "fast", "--simstack-file", "../simstack.yaml", "--simstack-scenario", "../scenarios/slow-redis.yaml",
             "--simstack-require-traffic"], "racy", tmp_path, cwd=copy / "suite")
    assert r.returncode == 1, r.stdout + r.stderr
    assert re.search(r"test_health PASSED", r.stdout) and re.search(r"test_agent_run_\S+ FAILED", r.stdout), r.stdout
    assert "ConnectionClosedError: received 1011 (internal error) Internal error" in r.stdout
    # the traffic summary, from the gateway in front of the backend: one WebSocket connection closed
    # 1011 for the agent test, one HTTP request for the health check
    assert re.search(r"\n +0 +1 +0 +1011 +- +failed", r.stdout) and re.search(r"\n +1 +0 +0 +- +- +passed", r.stdout)
