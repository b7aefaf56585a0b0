"""Protocol faults at the edge of a service: one applier per kind, registered by the phase it hooks.

    BEFORE_ACCEPT  a WebSocket upgrade, before it is answered: an applier may refuse it
                   (a status with a JSON body; the client sees ``InvalidStatus ... HTTP <status>``)
    AFTER_ACCEPT   right after HTTP 101: an applier may reject the connection (an ``error_message``
                   frame, then 1008) or shape it through its :class:`Plan` (a close at a time, frames
                   held back, events dropped or delayed)
    FRAME_OUT      every frame from the service to the client: forwarded, delayed or dropped, as the
                   plan says

HTTP requests are the fourth phase; their appliers are ``HTTPFaults`` in :mod:`fakes.common`.

The appliers only read the fault book and the connection's facts, so any server can call them: the
gateway (:mod:`fakes.gateway`) does for a service simstack forwards to. Kinds that change how a
server works inside (when it registers a connection, what its setup raises) cannot be applied in
front of a service simstack did not write: :data:`SERVER_INTERNAL` says why, and a forwarded
service's book refuses them.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from websockets.frames import CloseCode

from simstack.shared.constants import AGENT_EVENTS
from simstack.shared.triggers import Candidate

from . import agent, strictjson
from .control import FaultBook, Record
from .tokens import TokenError, verify

CUT = CloseCode.ABNORMAL_CLOSURE    # "close code" of a connection ended without a close frame
POLICY_VIOLATION = CloseCode.POLICY_VIOLATION
NO_CLOSE_FRAME = (CloseCode.NO_STATUS_RCVD, CloseCode.ABNORMAL_CLOSURE, CloseCode.TLS_HANDSHAKE)


def sendable(code: int) -> int:
    """A close code that may go in a close frame: the codes that mean "there was none" become 1000."""
    return CloseCode.NORMAL_CLOSURE if code in NO_CLOSE_FRAME else code


def reject_frame(reason: str) -> str:
    """The ``error_message`` frame sent before closing 1008 when auth fails after accept."""
    return strictjson.dumps({"type": "error_message", "error_code": "AUTH_FAILED", "message": reason,
                             "timestamp": agent.now_iso()})

SERVER_INTERNAL = {
    "race_on_accept": "it changes when the server registers a new connection, which happens inside "
                      "the server's own code; to see the race in your service, make its registration "
                      "slow (e.g. `latency --target dep:NAME` on the dependency it registers with)",
    "setup_error": "it makes the server's own connection setup raise; in front of your service use "
                   "close_after_accept for the same client signature (HTTP 101, then 1011)",
}


@dataclass
class Refusal:
    """An upgrade refused before accept: a status with a JSON body."""
    status: int
    message: str
    error_code: str = ""
    headers: dict | None = None
    raises: bool = False          # a server raises here (upgrade_exception); a proxy answers the status


@dataclass
class Upgrade:
    """What the before-accept appliers see of one upgrade request."""
    book: FaultBook
    target: str
    user_id: str
    token: str | None
    rec: Record
    open_for: Callable[[str], int]      # open connections of a user (for connection_cap)
    e2e: bool = False                   # the upgrade carries E2E test headers

    @property
    def who(self) -> Candidate:
        """The upgrade as triggers see it."""
        return Candidate(self.user_id, self.e2e)


@dataclass
class Plan:
    """How one accepted connection is shaped by the faults that fired for it."""
    reject: str | None = None                          # error_message + 1008 with this reason
    close_at: tuple[float, int, str] | None = None     # (seconds after accept, code, reason); 1006 = cut
    hold_until_s: float = 0.0                          # frames to the client held until then
    hold_to_close: bool = False                        # frames to the client held until the close
    lost_from: int | None = None                       # index in AGENT_EVENTS from which events are lost
    event_delay_s: float = 0.0                         # extra delay before each agent event

    def close(self, after_s: float, code: int, reason: str) -> None:
        """Plan a close; the earliest planned close wins."""
        if self.close_at is None or after_s < self.close_at[0]:
            self.close_at = (after_s, code, reason)


BEFORE_ACCEPT: list[tuple[str, Callable[[Upgrade], Refusal | None]]] = []
AFTER_ACCEPT: list[tuple[str, Callable[[Upgrade, Plan], None]]] = []
FRAME_OUT: list[tuple[str, Callable[[Plan, str | None, float], float | None]]] = []


def applies(phase: list, kind: str):
    """Register an applier for ``kind`` in ``phase`` (appliers run in registration order)."""
    def register(fn):
        phase.append((kind, fn))
        return fn
    return register


HTTP_KINDS = ("cold_start", "status_override", "health_hang", "slow_ready")   # applied by HTTPFaults


def edge_kinds() -> set[str]:
    """Every protocol kind that applies at the edge of a service."""
    return {k for k, _ in BEFORE_ACCEPT + AFTER_ACCEPT + FRAME_OUT} | set(HTTP_KINDS)


# ---------------------------------------------------------------- before the upgrade is answered

@applies(BEFORE_ACCEPT, "cold_start")
def _cold_start(u: Upgrade) -> Refusal | None:
    f = u.book.fire("cold_start", u.target, u.who, where=u.rec)
    if f:
        return Refusal(503, "service is starting (cold start), retry later", "SERVICE_UNAVAILABLE",
                       {"Retry-After": str(f.params["retry_after_s"])})
    return None


@applies(BEFORE_ACCEPT, "connection_cap")
def _connection_cap(u: Upgrade) -> Refusal | None:
    for f in u.book.candidates("connection_cap", u.target):
        cap = f.params["max_connections"]
        if u.open_for(u.user_id) >= cap and u.book.decide(f, u.who, where=u.rec):
            return Refusal(429, f"connection limit of {cap} per user reached", "CONNECTION_LIMIT")
    return None


@applies(BEFORE_ACCEPT, "upgrade_exception")
def _upgrade_exception(u: Upgrade) -> Refusal | None:
    if u.book.fire("upgrade_exception", u.target, u.who, where=u.rec):
        return Refusal(500, "simstack upgrade_exception fault: exception before accept", "INTERNAL_ERROR",
                       raises=True)
    return None


@applies(BEFORE_ACCEPT, "auth_reject")
def _auth_reject(u: Upgrade) -> Refusal | None:
    if u.book.fire("auth_reject", u.target, u.who, where=u.rec):
        return Refusal(403, "auth_reject fault", "FORBIDDEN")
    return None


def _mismatch(u: Upgrade, placement: str) -> str | None:
    """Why the token fails the api's (rotated) secret, if a mismatch fault at ``placement`` fires."""
    for f in u.book.candidates("jwt_secret_mismatch", u.target):
        if f.params["placement"] == placement and u.book.decide(f, u.who, where=u.rec):
            try:
                verify(u.token or "", [f.params["api_secret"]])
            except TokenError as exc:
                return f"JWT verification failed: {exc}"
    return None


@applies(BEFORE_ACCEPT, "jwt_secret_mismatch")
def _jwt_mismatch_before(u: Upgrade) -> Refusal | None:
    why = _mismatch(u, "before_accept")
    return Refusal(403, why, "FORBIDDEN") if why else None


def refusal_before_accept(u: Upgrade) -> Refusal | None:
    for _kind, applier in BEFORE_ACCEPT:
        refusal = applier(u)
        if refusal is not None:
            return refusal
    return None


# ---------------------------------------------------------------- right after accept

@applies(AFTER_ACCEPT, "auth_after_accept")
def _auth_after_accept(u: Upgrade, plan: Plan) -> None:
    f = u.book.fire("auth_after_accept", u.target, u.who, where=u.rec)
    if f and plan.reject is None:
        plan.reject = f.params["reason"]


@applies(AFTER_ACCEPT, "jwt_secret_mismatch")
def _jwt_mismatch_after(u: Upgrade, plan: Plan) -> None:
    why = _mismatch(u, "after_accept")
    if why and plan.reject is None:
        plan.reject = why


@applies(AFTER_ACCEPT, "close_after_accept")
def _close_after_accept(u: Upgrade, plan: Plan) -> None:
    f = u.book.fire("close_after_accept", u.target, u.who, where=u.rec)
    if f:
        plan.close(f.params["after_ms"] / 1000, f.params["code"], f.params["reason"])
        plan.hold_to_close |= f.params["before_first_frame"]


@applies(AFTER_ACCEPT, "drop_connection")
def _drop_connection(u: Upgrade, plan: Plan) -> None:
    f = u.book.fire("drop_connection", u.target, u.who, where=u.rec)
    if f:
        plan.close(f.params["after_ms"] / 1000, CUT, "dropped")


@applies(AFTER_ACCEPT, "max_lifetime")
def _max_lifetime(u: Upgrade, plan: Plan) -> None:
    f = u.book.fire("max_lifetime", u.target, u.who, where=u.rec)
    if f:
        plan.close(f.params["seconds"], f.params["close_code"], "Maximum connection lifetime reached")


@applies(AFTER_ACCEPT, "late_welcome")
def _late_welcome(u: Upgrade, plan: Plan) -> None:
    f = u.book.fire("late_welcome", u.target, u.who, where=u.rec)
    if f:
        plan.hold_until_s = max(plan.hold_until_s, f.params["delay_ms"] / 1000)


@applies(AFTER_ACCEPT, "lost_events")
def _lost_events(u: Upgrade, plan: Plan) -> None:
    f = u.book.fire("lost_events", u.target, u.who, where=u.rec)
    if f:
        plan.lost_from = AGENT_EVENTS.index(f.params["from_event"])


@applies(AFTER_ACCEPT, "delayed_events")
def _delayed_events(u: Upgrade, plan: Plan) -> None:
    f = u.book.fire("delayed_events", u.target, u.who, where=u.rec)
    if f:
        plan.event_delay_s = f.params["delay_ms"] / 1000


def plan_after_accept(u: Upgrade) -> Plan:
    """The plan for one accepted connection; a rejection ends planning (later kinds are not evaluated)."""
    plan = Plan()
    for _kind, applier in AFTER_ACCEPT:
        applier(u, plan)
        if plan.reject is not None:
            break
    return plan


# ---------------------------------------------------------------- every frame to the client

@applies(FRAME_OUT, "close_after_accept")
def _held_to_close(plan: Plan, ftype: str | None, since_accept_s: float) -> float | None:
    return math.inf if plan.hold_to_close else 0.0


@applies(FRAME_OUT, "late_welcome")
def _held_until(plan: Plan, ftype: str | None, since_accept_s: float) -> float | None:
    return max(0.0, plan.hold_until_s - since_accept_s)


@applies(FRAME_OUT, "lost_events")
def _lost(plan: Plan, ftype: str | None, since_accept_s: float) -> float | None:
    if plan.lost_from is not None and ftype in AGENT_EVENTS and AGENT_EVENTS.index(ftype) >= plan.lost_from:
        return None
    return 0.0


@applies(FRAME_OUT, "delayed_events")
def _delayed(plan: Plan, ftype: str | None, since_accept_s: float) -> float | None:
    return plan.event_delay_s if ftype in AGENT_EVENTS else 0.0


def frame_delay(plan: Plan, ftype: str | None, since_accept_s: float) -> float | None:
    """Seconds to hold one frame to the client before sending it (inf: until the close); None: drop it."""
    total = 0.0
    for _kind, applier in FRAME_OUT:
        delay = applier(plan, ftype, since_accept_s)
        if delay is None:
            return None
        total += delay
    return total

