"""The WebSocket connection lifecycle of fakes/lifecycle.py, without sockets."""
from __future__ import annotations

import pytest

from simstack.fakes.lifecycle import Connection, IllegalTransition, NotRegistered, Registry, State

S = State


def walk(*states: State) -> Connection:
    conn = Connection("e2e-user")
    for s in states:
        conn.advance(s)
    return conn


def test_the_fixed_path_reaches_ready_and_records_each_state():
    conn = walk(S.AUTHENTICATED, S.ACCEPTED, S.REGISTERED, S.READY, S.CLOSED)
    assert conn.state is S.CLOSED and conn.accepted
    assert [name for name, _ms in conn.history] == ["authenticated", "accepted", "registered", "ready", "closed"]


def test_auth_after_accept_path_is_legal():
    conn = walk(S.ACCEPTED, S.AUTHENTICATED, S.REGISTERED, S.READY)
    assert conn.ready and conn.accepted


@pytest.mark.parametrize("path", [
    (S.READY,),                                   # ready before anything
    (S.REGISTERED,),                              # registered before auth or accept
    (S.AUTHENTICATED, S.READY),                   # ready without registration
    (S.AUTHENTICATED, S.ACCEPTED, S.READY),       # the race: serving an unregistered connection
    (S.AUTHENTICATED, S.ACCEPTED, S.REGISTERED, S.ACCEPTED),
    (S.AUTHENTICATED, S.ACCEPTED, S.REGISTERED, S.READY, S.REGISTERED),
    (S.CLOSED, S.AUTHENTICATED),                  # nothing after closed
    (S.CLOSED, S.CLOSED),
], ids=lambda p: "-".join(s.value for s in p))
def test_illegal_transitions_raise_and_leave_the_state_unchanged(path):
    conn = walk(*path[:-1])
    before = conn.state
    with pytest.raises(IllegalTransition, match=f"{before.value} -> {path[-1].value}"):
        conn.advance(path[-1])
    assert conn.state is before


@pytest.mark.parametrize("path", [(), (S.AUTHENTICATED,), (S.ACCEPTED,), (S.AUTHENTICATED, S.ACCEPTED),
                                  (S.AUTHENTICATED, S.ACCEPTED, S.REGISTERED),
                                  (S.AUTHENTICATED, S.ACCEPTED, S.REGISTERED, S.READY)],
                         ids=["connecting", "authenticated", "accepted", "auth-then-accept", "registered", "ready"])
def test_every_open_state_can_close(path):
    conn = walk(*path)
    conn.advance(S.CLOSED)
    assert conn.state is S.CLOSED


def test_lookup_before_register_raises_not_registered_naming_the_connection():
    registry = Registry()
    conn = walk(S.AUTHENTICATED, S.ACCEPTED)
    with pytest.raises(NotRegistered) as info:
        registry.lookup(conn.id)
    assert conn.id in str(info.value) and "not registered" in str(info.value)


def test_lookup_after_register_finds_the_connection_and_after_unregister_does_not():
    registry = Registry()
    conn = walk(S.AUTHENTICATED, S.ACCEPTED)
    registry.register(conn)
    assert registry.lookup(conn.id) is conn
    assert conn.state is S.REGISTERED and len(registry) == 1
    registry.unregister(conn)
    registry.unregister(conn)   # twice is harmless
    with pytest.raises(NotRegistered):
        registry.lookup(conn.id)
    assert len(registry) == 0


def test_a_connection_that_cannot_be_registered_is_not_known():
    registry = Registry()
    conn = Connection("e2e-user")   # still connecting
    with pytest.raises(IllegalTransition):
        registry.register(conn)
    with pytest.raises(NotRegistered):
        registry.lookup(conn.id)


def test_open_connections_are_counted_per_user():
    registry = Registry()
    registry.count_open("e2e-a", +1)
    registry.count_open("e2e-a", +1)
    registry.count_open("e2e-b", +1)
    assert (registry.open_for("e2e-a"), registry.open_for("e2e-b"), registry.open_for("e2e-c")) == (2, 1, 0)
    registry.count_open("e2e-a", -1)
    assert registry.open_for("e2e-a") == 1
    registry.count_open("e2e-a", -1)
    registry.count_open("e2e-b", -1)
    assert registry.open_for("e2e-a") == registry.open_for("e2e-b") == 0


def test_connection_ids_are_unique():
    assert len({Connection("e2e-user").id for _ in range(100)}) == 100
