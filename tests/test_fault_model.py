"""The fault model's validation (simstack/shared/faults.py), in-process: no stack, no sockets.

What a client sees when a fault is applied is proved against live stacks in test_faults_*.py; what is
refused before anything is applied, and the defaults a fault is filled with, are decided here.
"""
from __future__ import annotations

import pytest

from simstack.shared.errors import ConfigError
from simstack.shared.faults import KINDS, NETWORK, PROTOCOL, Fault


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_declared_kind_builds_with_its_defaults_on_each_of_its_targets(kind):
    spec = KINDS[kind]
    assert spec.layer in (NETWORK, PROTOCOL) and spec.targets and spec.summary and spec.signature
    for target in spec.targets:
        fault = Fault.build(kind, target)
        assert fault.target == target and fault.layer == spec.layer
        assert fault.params == {p.name: p.default for p in spec.params}
        assert Fault.from_dict(fault.to_dict()) == fault


def test_the_default_target_is_the_kinds_first():
    assert Fault.build("race_on_accept").target == "ws"
    assert Fault.build("latency").target == "api"


def test_a_kinds_default_trigger_applies_unless_one_is_given():
    assert Fault.build("setup_error").trigger.to_dict() == KINDS["setup_error"].default_trigger
    assert Fault.build("cold_start").trigger.to_dict() == {"window": [0, 30]}
    assert Fault.build("setup_error", trigger={"first": 1}).trigger.to_dict() == {"first": 1}
    assert Fault.build("drop_connection").trigger.to_dict() == {"always": True}


def test_ids_are_generated_per_fault_unless_given():
    ids = {Fault.build("latency").id for _ in range(50)}
    assert len(ids) == 50 and all(i.startswith("latency-") for i in ids)
    assert Fault.build("latency", id="mine").id == "mine"


@pytest.mark.parametrize("name,given,expected", [
    ("latency_ms", "500", 500),                 # CLI -p values arrive as text
    ("jitter_ms", 0, 0),
], ids=["int-from-text", "int"])
def test_integer_parameters_accept_text_from_the_command_line(name, given, expected):
    assert Fault.build("latency", **{name: given}).params[name] == expected


def test_parameters_are_coerced_only_where_unambiguous():
    assert Fault.build("race_on_accept", fixed="true").params["fixed"] is True
    assert Fault.build("max_lifetime", seconds=3).params["seconds"] == 3.0
    assert Fault.build("health_hang", paths="/health,/api/health").params["paths"] == ["/health", "/api/health"]
    with pytest.raises(ConfigError, match=r"fault.params.latency_ms: True is not a int"):
        Fault.build("latency", latency_ms=True)


@pytest.mark.parametrize("call,field,value,allowed", [
    (dict(kind="earthquake"), "fault.kind", "'earthquake'", "latency"),
    (dict(kind="latency", target="database"), "fault.target", "'database'", "api, ws, auth"),
    (dict(kind="race_on_accept", target="api"), "fault.target", "'api'", "ws"),
    (dict(kind="latency", latency_msec=5), "fault.params", "latency_msec", "latency_ms, jitter_ms"),
    (dict(kind="jwt_secret_mismatch", placement="middle"), "fault.params.placement", "'middle'",
     "before_accept, after_accept"),
    (dict(kind="latency", direction="sideways"), "fault.params.direction", "'sideways'", "downstream, upstream"),
    (dict(kind="latency", latency_ms="slow"), "fault.params.latency_ms", "'slow'", "latency_ms"),
    (dict(kind="drop_connection", after_ms=-1), "fault.params.after_ms", "-1", "after_ms"),
    (dict(kind="proxy_down", delay_ms=5), "fault.params", "delay_ms", "none"),
    (dict(kind="race_on_accept", target="dep:redis"), "fault.target", "'dep:redis'", "ws"),
], ids=["kind", "target", "target-of-kind", "param", "choice", "direction", "type", "minimum", "no-params",
        "dep-on-protocol"])
def test_bad_faults_name_the_field_the_value_and_the_allowed_values(call, field, value, allowed):
    with pytest.raises(ConfigError) as info:
        Fault.build(**call)
    assert info.value.message.startswith(field)
    assert value in info.value.message
    assert allowed in info.value.hint


def test_network_faults_may_target_a_dependency_link():
    assert Fault.build("latency", target="dep:redis").target == "dep:redis"


@pytest.mark.parametrize("kind", ["latency", "reset", "proxy_down"])
@pytest.mark.parametrize("trigger", [{"first": 2}, {"probability": 0.5, "seed": 1}, {"user": "^e2e-"}],
                         ids=["first", "probability", "user"])
def test_network_faults_with_a_selective_trigger_are_refused(kind, trigger):
    with pytest.raises(ConfigError) as info:
        Fault.build(kind, target="api", trigger=trigger)
    assert info.value.message.startswith("fault.trigger: network fault")
    assert "drop_connection" in info.value.hint           # what to use instead


@pytest.mark.parametrize("data,message", [
    ("latency", "faults[2]: expected a mapping with 'kind'"),
    ({"target": "api"}, "faults[2]: expected a mapping with 'kind'"),
    ({"kind": "latency", "param": {}}, "faults[2]: unknown field(s) param"),
    ({"kind": "latency", "params": [1]}, "faults[2].params: expected a mapping"),
    ({"kind": "latency", "trigger": {"sometimes": 1}}, "faults[2].trigger"),
], ids=["not-a-mapping", "no-kind", "unknown-field", "params-not-a-mapping", "bad-trigger"])
def test_a_fault_from_a_file_or_the_admin_api_names_where_it_is_wrong(data, message):
    with pytest.raises(ConfigError) as info:
        Fault.from_dict(data, where="faults[2]")
    assert info.value.message.startswith(message), info.value.message
