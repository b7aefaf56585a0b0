"""The fault model: every staging failure is a named kind with typed parameters,
a target endpoint and a trigger.

Adding a kind is adding one ``declare(...)`` below; the stand-ins (protocol
faults) and the Toxiproxy adapter (network faults) only *apply* faults.

Targets are the endpoints a suite sees: ``api`` (HTTP), ``ws`` (the WebSocket
at /ws, on its own proxy listener) and ``auth``.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from .constants import AGENT_EVENTS
from .errors import ConfigError
from .triggers import Trigger

NETWORK = "network"     # applied by Toxiproxy (bytes: delay, hang, reset, cut)
PROTOCOL = "protocol"   # applied by the stand-ins (status codes, close codes, races, events)
TARGETS = ("api", "ws", "auth")
DEP_PREFIX = "dep:"     # network faults also target a service's link to a dependency: dep:NAME


@dataclass(frozen=True)
class Param:
    name: str
    type: type
    default: Any
    help: str
    choices: tuple = ()
    minimum: float | None = None

    def check(self, value: Any, where: str) -> Any:
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if self.type is bool and isinstance(value, str) and value.lower() in ("true", "false"):
            value = value.lower() == "true"
        if self.type in (int, float) and isinstance(value, str):
            try:
                value = self.type(value)
            except ValueError:
                pass
        if self.type is list and isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if not isinstance(value, self.type) or (self.type is int and isinstance(value, bool)):
            raise ConfigError(f"{where}: {value!r} is not a {self.type.__name__}",
                              f"{self.name}: {self.help} (default {self.default!r})")
        if self.choices and value not in self.choices:
            raise ConfigError(f"{where}: {value!r} is not allowed",
                              f"allowed values: {', '.join(map(str, self.choices))}")
        if self.minimum is not None and value < self.minimum:
            raise ConfigError(f"{where}: {value!r} is below the minimum {self.minimum}",
                              f"{self.name}: {self.help}")
        return value


@dataclass(frozen=True)
class FaultKind:
    name: str
    layer: str
    targets: tuple[str, ...]
    summary: str
    signature: str                      # what a client sees
    params: tuple[Param, ...] = ()
    default_trigger: dict | None = None
    toxic: str | None = None            # Toxiproxy toxic type, for network faults

    @property
    def default_target(self) -> str:
        return self.targets[0]


KINDS: dict[str, FaultKind] = {}


def declare(kind: FaultKind) -> FaultKind:
    KINDS[kind.name] = kind
    return kind


@dataclass(frozen=True)
class Fault:
    kind: str
    target: str
    params: dict = field(default_factory=dict)
    trigger: Trigger = field(default_factory=Trigger)
    id: str = ""

    @property
    def spec(self) -> FaultKind:
        return KINDS[self.kind]

    @property
    def layer(self) -> str:
        return self.spec.layer

    @classmethod
    def build(cls, kind: str, target: str | None = None, trigger: Any = None,
              id: str | None = None, where: str = "fault", **params: Any) -> "Fault":
        """Validate and fill defaults; raise ConfigError naming the bad field, value and allowed values."""
        if kind not in KINDS:
            raise ConfigError(f"{where}.kind: unknown fault kind {kind!r}",
                              f"allowed kinds: {', '.join(sorted(KINDS))} (`simstack fault kinds` lists them)")
        spec = KINDS[kind]
        target = target or spec.default_target
        dep = spec.layer == NETWORK and isinstance(target, str) and target.startswith(DEP_PREFIX) and target[4:]
        if target not in spec.targets and not dep:
            more = f", {DEP_PREFIX}NAME (a dependency)" if spec.layer == NETWORK else ""
            raise ConfigError(f"{where}.target: {kind} cannot target {target!r}",
                              f"allowed targets for {kind}: {', '.join(spec.targets)}{more}")
        known = {p.name: p for p in spec.params}
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise ConfigError(f"{where}.params: unknown parameter(s) {', '.join(unknown)} for {kind}",
                              f"allowed: {', '.join(known) or 'none'}")
        values = {name: p.default for name, p in known.items()}
        for name, value in params.items():
            values[name] = known[name].check(value, f"{where}.params.{name}")
        if trigger is None:
            trigger = spec.default_trigger
        trig = Trigger.parse(trigger, f"{where}.trigger")
        if spec.layer == NETWORK and trig.rule != "always":
            raise ConfigError(
                f"{where}.trigger: network fault {kind} applies to every connection through its proxy; "
                f"got {trig}",
                "Toxiproxy cannot pick connections deterministically; use a protocol fault such as "
                "drop_connection with this trigger, or the 'toxicity' parameter (random, not seedable)")
        return cls(kind=kind, target=target, params=values, trigger=trig, id=id or f"{kind}-{uuid.uuid4().hex[:6]}")

    @classmethod
    def from_dict(cls, data: Any, where: str = "fault") -> "Fault":
        if isinstance(data, Fault):
            return data
        if not isinstance(data, dict) or "kind" not in data:
            raise ConfigError(f"{where}: expected a mapping with 'kind', got {data!r}",
                              "e.g. {kind: race_on_accept, target: ws, params: {register_delay_ms: 500}}")
        extra = sorted(set(data) - {"kind", "target", "params", "trigger", "id"})
        if extra:
            raise ConfigError(f"{where}: unknown field(s) {', '.join(extra)}",
                              "a fault has kind, target, params, trigger and id")
        params = data.get("params") or {}
        if not isinstance(params, dict):
            raise ConfigError(f"{where}.params: expected a mapping, got {params!r}", "e.g. params: {delay_ms: 500}")
        return cls.build(data["kind"], data.get("target"), data.get("trigger"), data.get("id"),
                         where=where, **params)

    def to_dict(self) -> dict:
        return {"id": self.id, "kind": self.kind, "target": self.target,
                "params": dict(self.params), "trigger": self.trigger.to_dict()}


# ---------------------------------------------------------------- network faults (Toxiproxy)
_DIRECTION = Param("direction", str, "downstream", "which way the bytes flow: downstream (to the client) or upstream",
                   choices=("downstream", "upstream"))
_TOXICITY = Param("toxicity", float, 1.0, "share of connections affected; random per connection, NOT seedable "
                  "(Toxiproxy's -seed is ignored since v2.9)", minimum=0.0)


def _network(name: str, toxic: str | None, summary: str, signature: str, *params: Param) -> FaultKind:
    extra = (_DIRECTION, _TOXICITY) if toxic else ()
    return declare(FaultKind(name, NETWORK, TARGETS, summary, signature, params + extra, toxic=toxic))


_network("latency", "latency", "delay every chunk of data", "slow responses and frames",
         Param("latency_ms", int, 1000, "added delay", minimum=0), Param("jitter_ms", int, 0, "random +/- (not seedable)", minimum=0))
_network("bandwidth", "bandwidth", "limit throughput", "slow large bodies; rate 0 holds all data",
         Param("rate_kbps", int, 1, "KB/s", minimum=0))
_network("hang", "timeout", "accept connections, pass no data, never close", "HTTP read timeout; WebSocket open timeout")
_network("cut", "timeout", "pass no data, close after a delay", "connection closed without response after after_ms (1006 for WebSockets)",
         Param("after_ms", int, 1000, "delay before the close", minimum=1))
_network("reset", "reset_peer", "reset the TCP connection (RST)", "ECONNRESET; WebSocket 1006 with no close frame",
         Param("after_ms", int, 0, "delay before the reset", minimum=0))
_network("slow_close", "slow_close", "delay the TCP close", "close takes delay_ms longer",
         Param("delay_ms", int, 1000, "delay before the close", minimum=0))
_network("slicer", "slicer", "split data into small chunks", "frames arrive in pieces (transparent to correct clients)",
         Param("average_size", int, 8, "bytes per chunk", minimum=1), Param("size_variation", int, 4, "bytes", minimum=0),
         Param("delay_us", int, 1000, "microseconds between chunks", minimum=0))
_network("limit_data", "limit_data", "close after N bytes", "cut mid-response or mid-frame (1006)",
         Param("bytes", int, 1024, "bytes passed before the close", minimum=0))
_network("proxy_down", None, "disable the proxy (refuse connections)", "connection refused")

# ---------------------------------------------------------------- protocol faults (stand-ins)


def _protocol(name: str, targets: tuple[str, ...], summary: str, signature: str, *params: Param,
              trigger: dict | None = None) -> FaultKind:
    return declare(FaultKind(name, PROTOCOL, targets, summary, signature, params, default_trigger=trigger))


_protocol("race_on_accept", ("ws",),
          "registration of a new connection runs concurrently with its handling and takes register_delay_ms; "
          "the unfixed handler looks the connection up before it is registered",
          "HTTP 101, then close 1011 'Internal error' with no frame before it; with fixed=true: normal run",
          Param("register_delay_ms", int, 500, "how long registration takes", minimum=0),
          Param("fixed", bool, False, "deploy the fix: register before handling, queue inbound frames until ready"))
_protocol("setup_error", ("ws",),
          "connection setup raises for e2e test users (a user-id format check that rejects e2e ids); by default "
          "for every connection that carries E2E test headers, whatever its user id looks like",
          "HTTP 101, then close 1011 'Internal error', even with the race fix deployed",
          Param("message", str, "invalid user id format", "the exception text (server log only)"),
          trigger={"e2e": True})
_protocol("health_hang", ("api", "auth"), "matching health paths never answer", "HTTP read timeout (e.g. curl -m 10 gives up)",
          Param("paths", list, ["/health"], "paths that hang"),
          Param("hold_s", float, 600.0, "how long the request is held before the server gives up", minimum=0))
_protocol("slow_ready", ("api", "auth"), "the readiness endpoint /health/ready answers late", "/health/ready answers after delay_s",
          Param("delay_s", float, 12.0, "seconds before it answers", minimum=0))
_protocol("cold_start", ("api", "ws", "auth"), "deploy / cold start: everything answers 503",
          "HTTP 503 JSON on REST and on the upgrade (InvalidStatus ... HTTP 503), with Retry-After",
          Param("retry_after_s", int, 5, "Retry-After header value", minimum=0),
          trigger={"window": [0, 30]})
_protocol("auth_reject", ("ws",), "auth rejected before accept (close before accept)", "InvalidStatus ... HTTP 403")
_protocol("upgrade_exception", ("ws",), "an exception before accept", "InvalidStatus ... HTTP 500")
_protocol("auth_after_accept", ("ws",), "auth rejected after accept", "an error_message frame, then close 1008",
          Param("reason", str, "Authentication failed", "close reason"))
_protocol("jwt_secret_mismatch", ("ws",), "the api verifies tokens with a different secret than auth signs them with",
          "403 on the upgrade (placement before_accept) or error_message + 1008 (after_accept)",
          Param("api_secret", str, "rotated-api-secret", "the secret the api verifies with"),
          Param("placement", str, "before_accept", "where the check runs", choices=("before_accept", "after_accept")))
_protocol("drop_connection", ("ws",), "a load balancer drops the connection", "1006, no close frame (TCP cut)",
          Param("after_ms", int, 0, "time after accept before the drop", minimum=0))
_protocol("lost_events", ("ws",), "agent events are lost from from_event on; the socket stays open",
          "no agent_* frames from from_event on; the client times out",
          Param("from_event", str, "agent_started", "first lost event (agent_completed = never completes)",
                choices=AGENT_EVENTS))
_protocol("delayed_events", ("ws",), "agent events are sent late", "each agent event arrives delay_ms later than usual",
          Param("delay_ms", int, 3000, "extra delay before each event", minimum=0))
_protocol("late_welcome", ("ws",), "slow network on connect: the welcome sequence is late", "welcome frames after delay_ms",
          Param("delay_ms", int, 5000, "delay before the welcome", minimum=0))
_protocol("max_lifetime", ("ws",), "connections are cut after a maximum lifetime", "connection closed after seconds",
          Param("seconds", float, 5.0, "lifetime", minimum=0),
          Param("close_code", int, 1006, "1006 = cut without close frame; else an explicit close code", minimum=1000))
_protocol("connection_cap", ("ws",), "per-user connection cap", "the N+1th concurrent connection of one user: InvalidStatus ... HTTP 429",
          Param("max_connections", int, 2, "open connections allowed per user", minimum=0))
_protocol("status_override", ("api", "auth"), "any HTTP route answers a fixed status", "HTTP <status> with a JSON body",
          Param("path", str, "/api/*", "glob over the path (fnmatch)"),
          Param("method", str, "*", "HTTP method or *"),
          Param("status", int, 500, "status code", minimum=100))
_protocol("close_after_accept", ("ws",),
          "the server accepts the WebSocket, then closes it with a chosen code (the staging 1011); "
          "applicable in front of any service",
          "HTTP 101, then close <code> '<reason>' (default 1011 'Internal error') with no frame before it",
          Param("code", int, 1011, "close code sent to the client", minimum=1000),
          Param("reason", str, "Internal error", "close reason"),
          Param("after_ms", int, 0, "time after accept before the close", minimum=0),
          Param("before_first_frame", bool, True, "hold the server's frames back so none reaches the client "
                "before the close"))
