"""Every shipped scenario passes against a real stack, gives the same verdicts every
run, and bad scenario files are refused before anything is applied."""
from __future__ import annotations

import textwrap

import pytest

from simstack.shared.errors import ConfigError
from simstack.scenarios import SCENARIO_DIR, list_scenarios, load_scenario, parse_scenario, run_scenario

SHIPPED = sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))
REQUIRED = {"repro-1011", "setup-error-1011", "fix-1011", "staging-down", "cold-start-503", "auth-403",
            "auth-after-accept-1008", "lb-reset-1006", "lost-events", "slow-network", "lifetime-cut",
            "connection-cap"}


def run(stack, name):
    return run_scenario(load_scenario(name), stack)


def test_every_required_scenario_ships_and_loads():
    assert REQUIRED <= set(SHIPPED)
    assert {s.name for s in list_scenarios()} == set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_scenario_passes(stack, name):
    result = run(stack, name)
    failed = [f"{c.what}: expected {c.expected!r}, observed {c.observed!r}" for c in result.checks if not c.ok]
    assert result.checks, f"{name} checks nothing"
    assert not failed, failed
    assert stack.faults.list() == [], "a scenario run must leave the stack healthy"


@pytest.mark.parametrize("name", ["repro-1011", "fix-1011", "setup-error-1011", "connection-cap"])
def test_scenario_verdicts_are_identical_on_repeated_runs(stack, name):
    runs = [run(stack, name) for _ in range(3)]
    verdicts = [[(c.what, c.observed) for c in r.checks] for r in runs]
    assert all(r.passed for r in runs)
    assert verdicts[0] == verdicts[1] == verdicts[2]


def test_1011_phases_use_the_staging_timing_too(staging_stack):
    for name in ("repro-1011", "fix-1011", "setup-error-1011"):
        assert run(staging_stack, name).passed, name


def write(tmp_path, text: str):
    path = tmp_path / "bad.yaml"
    path.write_text(textwrap.dedent(text))
    return path


@pytest.mark.parametrize("text, names", [
    ("name: x\nfaults:\n  - kind: race_on_acept\n", ["bad.yaml", "faults[0].kind", "race_on_acept", "race_on_accept"]),
    ("name: x\nfaults:\n  - kind: latency\n    params: {latency_ms: fast}\n",
     ["faults[0].params.latency_ms", "'fast'", "int"]),
    ("name: x\nfaults:\n  - kind: drop_connection\n    trigger: {probability: 0.5}\n",
     ["faults[0].trigger.seed", "integer seed"]),
    ("name: x\nfaults:\n  - kind: cold_start\n    target: database\n", ["faults[0].target", "'database'", "api, ws, auth"]),
    ("name: x\nclient: {action: dance}\n", ["client.action", "'dance'", "start_agent, listen, connect"]),
    ("name: x\nexpect:\n  ws: {close_code: 1011, frames: 0}\n", ["expect.ws[0]", "frames", "frames_before_close"]),
    ("name: x\nfautls: []\n", ["unknown key", "fautls", "faults"]),
    ("name: [unclosed\n", ["bad.yaml", "not valid YAML"]),
    ("- just\n- a list\n", ["a scenario is a mapping"]),
])
def test_bad_scenario_file_names_file_field_value_and_allowed(tmp_path, text, names):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_scenario(path)
    message = str(err.value)
    for part in names:
        assert part in message, (part, message)


def test_unknown_scenario_name_lists_the_shipped_ones():
    with pytest.raises(ConfigError) as err:
        load_scenario("repro-1012")
    assert "repro-1012" in str(err.value) and "repro-1011" in str(err.value)


def test_a_scenario_whose_applying_fails_part_way_leaves_nothing_applied():
    """The file is valid, so applying starts; the third fault is refused by Toxiproxy (its proxy is
    gone), after a network and a protocol fault were applied: both must be rolled back."""
    from simstack.shared.errors import SimstackError
    from simstack.stack import Stack
    from simstack.toxiproxy import Toxiproxy
    scenario = parse_scenario({"name": "half", "faults": [
        {"kind": "latency", "target": "api", "params": {"latency_ms": 5}, "id": "net"},
        {"kind": "lost_events", "id": "proto"},
        {"kind": "latency", "target": "ws", "params": {"latency_ms": 5}, "id": "refused"}]}, "half.yaml")
    with Stack(mode="local", profile="fast") as stack:
        toxi = Toxiproxy(stack.endpoints.toxiproxy_url)
        try:
            toxi._call("DELETE", "/proxies/ws")
            with pytest.raises(SimstackError) as err:
                run_scenario(scenario, stack)
            assert "/proxies/ws/toxics" in str(err.value)
            assert stack.faults.list() == [], "what was applied before the failure is rolled back"
            assert all(not p["toxics"] for p in toxi.proxies().values())
        finally:
            toxi.close()


def test_fault_batch_rejected_by_a_standin_rolls_back_what_was_applied(stack):
    # The network fault is applied first; the stand-in then refuses the second (it re-validates
    # what it receives), and the latency toxic must be rolled back.
    from simstack.shared.faults import Fault
    good = Fault.build("latency", "ws", latency_ms=10)
    bad = Fault.build("race_on_accept")
    bad = type(bad)(kind=bad.kind, target="auth", params=bad.params, trigger=bad.trigger, id=bad.id)  # not served by auth
    with pytest.raises(ConfigError) as err:
        stack.faults.apply([good, bad])
    assert "cannot target 'auth'" in str(err.value)
    assert stack.faults.list() == []


def test_a_fault_id_in_use_on_any_layer_is_refused(stack):
    stack.faults.add("latency", target="ws", latency_ms=5, id="same")
    with pytest.raises(ConfigError) as err:
        stack.faults.add("drop_connection", id="same")
    assert "already in use: 'same'" in str(err.value)
    with pytest.raises(ConfigError):
        stack.faults.apply([{"kind": "lost_events", "id": "twice"}, {"kind": "late_welcome", "id": "twice"}])
    assert [f["id"] for f in stack.faults.list()] == ["same"]
