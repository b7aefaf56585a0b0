"""examples/own-backend: a backend that is not simstack's, its WebSocket registration a round trip to a
real Redis. With a healthy link both builds pass the team's suite (through the pytest plugin,
attached); with latency on dep:redis the racy build closes 1011 on every connection and the fixed
build delivers all five agent events. This is `make repro-own-backend`."""
from __future__ import annotations

import importlib.util
import shutil
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


def test_racy_closes_1011_only_under_a_slow_redis_link_and_fixed_passes_everywhere(example, tmp_path, monkeypatch):
    monkeypatch.setenv("SIMSTACK_STATE_DIR", str(tmp_path))
    redis, addr = example.start_redis()
    try:
        rows = example.compare(addr, out=lambda *_: None)
    finally:
        redis.terminate()
        redis.wait(5)
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
