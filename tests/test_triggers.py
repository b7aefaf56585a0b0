"""Triggers (simstack/shared/triggers.py): each rule, seeded replay, and errors that name the field."""
from __future__ import annotations

import pytest

from simstack.shared.errors import ConfigError
from simstack.shared.faults import Fault
from simstack.shared.triggers import RULES, Trigger, TriggerState


def decisions(spec, n: int = 8, **kw) -> list[bool]:
    state = TriggerState(Trigger.parse(spec))
    return [state.decide(**kw) for _ in range(n)]


@pytest.mark.parametrize("spec", [None, "always", {"always": True}])
def test_always_fires_for_every_candidate(spec):
    assert decisions(spec) == [True] * 8


def test_first_fires_for_the_first_n_candidates_only():
    assert decisions({"first": 3}, 6) == [True, True, True, False, False, False]


def test_every_fires_for_each_nth_candidate():
    assert decisions({"every": 2}, 6) == [False, True, False, True, False, True]
    assert decisions({"every": 3}, 6) == [False, False, True, False, False, True]


def test_user_fires_for_matching_user_ids_only():
    state = TriggerState(Trigger.parse({"user": "^e2e-"}))
    assert [state.decide(u) for u in ("e2e-123", "alice", "test-e2e-1", None, "e2e-")] == \
        [True, False, False, False, True]


def test_e2e_fires_for_candidates_with_e2e_headers_whatever_their_user_id():
    state = TriggerState(Trigger.parse({"e2e": True}))
    assert [state.decide(u, e2e=e2e) for u, e2e in (("staging_pipeline_test_user_1", True), ("e2e-1", False),
                                                     (None, True), ("alice", False))] == [True, False, True, False]


def test_window_fires_between_start_and_end_seconds():
    state = TriggerState(Trigger.parse({"window": [1, 2]}))
    assert [state.decide(None, t) for t in (0.0, 0.99, 1.0, 1.5, 1.99, 2.0, 30.0)] == \
        [False, False, True, True, True, False, False]


def test_probability_with_the_same_seed_replays_the_same_decisions():
    a = decisions({"probability": 0.5, "seed": 42}, 200)
    b = decisions({"probability": 0.5, "seed": 42}, 200)
    assert a == b
    assert 0 < sum(a) < 200


def test_probability_with_another_seed_decides_differently():
    assert decisions({"probability": 0.5, "seed": 42}, 200) != decisions({"probability": 0.5, "seed": 43}, 200)


@pytest.mark.parametrize("p,expected", [(0, False), (1, True), (0.0, False), (1.0, True)])
def test_probability_bounds_are_never_and_always(p, expected):
    assert decisions({"probability": p, "seed": 1}, 50) == [expected] * 50


def test_seen_and_fired_count_candidates_and_hits():
    state = TriggerState(Trigger.parse({"every": 2}))
    for _ in range(5):
        state.decide()
    assert (state.seen, state.fired) == (5, 2)


@pytest.mark.parametrize("spec", [{"first": 3}, {"every": 2}, {"probability": 0.3, "seed": 7},
                                  {"user": "^e2e-"}, {"e2e": True}, {"window": [0.0, 30.0]}, {"always": True}])
def test_to_dict_round_trips(spec):
    assert Trigger.parse(spec).to_dict() == spec
    assert Trigger.parse(Trigger.parse(spec).to_dict()) == Trigger.parse(spec)


BAD = [
    ({"first": 0}, "trigger.first", "positive integer"),
    ({"first": "3"}, "trigger.first", "positive integer"),
    ({"first": True}, "trigger.first", "positive integer"),
    ({"every": -2}, "trigger.every", "positive integer"),
    ({"probability": 1.5, "seed": 1}, "trigger.probability", "between 0 and 1"),
    ({"probability": "half", "seed": 1}, "trigger.probability", "between 0 and 1"),
    ({"probability": 0.5}, "trigger.seed", "integer seed"),
    ({"probability": 0.5, "seed": "x"}, "trigger.seed", "integer seed"),
    ({"user": "(unclosed"}, "trigger.user", "valid regex"),
    ({"window": [5, 1]}, "trigger.window", "[start_s, end_s]"),
    ({"window": 30}, "trigger.window", "[start_s, end_s]"),
    ({"window": [False, True]}, "trigger.window", "[start_s, end_s]"),
    ({"probability": True, "seed": 1}, "trigger.probability", "between 0 and 1"),
    ({"always": False}, "trigger.always", "is not true"),
    ({"e2e": False}, "trigger.e2e", "is not true"),
    ({"e2e": "yes"}, "trigger.e2e", "is not true"),
]


@pytest.mark.parametrize("spec,field,why", BAD, ids=[f"{b[1]}={list(b[0].values())[0]!r}" for b in BAD])
def test_bad_values_name_the_field_and_value(spec, field, why):
    with pytest.raises(ConfigError) as info:
        Trigger.parse(spec)
    message = info.value.message
    assert message.startswith(field) and why in message
    assert info.value.hint, "says what to write instead"


@pytest.mark.parametrize("spec", [{"sometimes": 1}, {"first": 1, "every": 2}, {}, "never", 42, ["first", 3]],
                         ids=["unknown-rule", "two-rules", "empty", "unknown-string", "number", "list"])
def test_unknown_or_ambiguous_rules_list_the_allowed_rules(spec):
    with pytest.raises(ConfigError) as info:
        Trigger.parse(spec)
    assert info.value.message.startswith("trigger")
    assert all(rule in str(info.value) for rule in RULES)


def test_a_fault_names_where_its_bad_trigger_is():
    with pytest.raises(ConfigError) as info:
        Fault.from_dict({"kind": "drop_connection", "trigger": {"every": 0}}, where="faults[2]")
    assert info.value.message.startswith("faults[2].trigger.every")
