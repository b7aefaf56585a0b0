"""The WebSocket connection lifecycle, without I/O.

    CONNECTING -> AUTHENTICATED -> ACCEPTED -> REGISTERED -> READY -> CLOSED
                  (auth after accept: ACCEPTED -> AUTHENTICATED -> REGISTERED)

Frames may only be sent to a connection the registry knows. That one rule is
where the staging race lives: the unfixed handler starts sending and reading
while registration is still running, the lookup fails with
:class:`NotRegistered`, and the generic handler closes 1011. The fix registers
before any handling and queues inbound frames until READY.
"""
from __future__ import annotations

import enum
import time
import uuid
from dataclasses import dataclass, field


class State(enum.Enum):
    CONNECTING = "connecting"
    AUTHENTICATED = "authenticated"
    ACCEPTED = "accepted"
    REGISTERED = "registered"
    READY = "ready"
    CLOSED = "closed"


S = State
TRANSITIONS: dict[State, frozenset[State]] = {
    S.CONNECTING: frozenset({S.AUTHENTICATED, S.ACCEPTED, S.CLOSED}),
    S.AUTHENTICATED: frozenset({S.ACCEPTED, S.REGISTERED, S.CLOSED}),
    S.ACCEPTED: frozenset({S.AUTHENTICATED, S.REGISTERED, S.CLOSED}),
    S.REGISTERED: frozenset({S.READY, S.CLOSED}),
    S.READY: frozenset({S.CLOSED}),
    S.CLOSED: frozenset(),
}


class IllegalTransition(RuntimeError):
    pass


class NotRegistered(KeyError):
    """A frame was routed to a connection the registry does not know (yet)."""

    def __str__(self) -> str:
        return f"connection {self.args[0]} is not registered"


@dataclass
class Connection:
    user_id: str
    id: str = field(default_factory=lambda: f"conn_{uuid.uuid4().hex[:12]}")
    state: State = State.CONNECTING
    opened: float = field(default_factory=time.monotonic)
    history: list[tuple[str, float]] = field(default_factory=list)

    def advance(self, to: State) -> None:
        if to not in TRANSITIONS[self.state]:
            raise IllegalTransition(f"{self.id}: {self.state.value} -> {to.value}")
        self.state = to
        self.history.append((to.value, round((time.monotonic() - self.opened) * 1000, 1)))

    @property
    def accepted(self) -> bool:
        """Was the WebSocket accepted at some point (HTTP 101 sent)?"""
        return any(state == State.ACCEPTED.value for state, _ in self.history)

    @property
    def ready(self) -> bool:
        return self.state is State.READY


class Registry:
    """Connections that may receive frames, by id; counts open connections per user."""

    def __init__(self) -> None:
        self._by_id: dict[str, Connection] = {}
        self._per_user: dict[str, int] = {}

    def register(self, conn: Connection) -> None:
        conn.advance(State.REGISTERED)
        self._by_id[conn.id] = conn

    def lookup(self, conn_id: str) -> Connection:
        try:
            return self._by_id[conn_id]
        except KeyError:
            raise NotRegistered(conn_id) from None

    def unregister(self, conn: Connection) -> None:
        self._by_id.pop(conn.id, None)

    def open_for(self, user_id: str) -> int:
        return self._per_user.get(user_id, 0)

    def count_open(self, user_id: str, delta: int) -> None:
        self._per_user[user_id] = self._per_user.get(user_id, 0) + delta
        if self._per_user[user_id] <= 0:
            del self._per_user[user_id]

    def __len__(self) -> int:
        return len(self._by_id)
