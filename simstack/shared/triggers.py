"""When a fault fires. Every trigger is explicit and deterministic.

A trigger is evaluated once per *candidate*: a new WebSocket connection for
WebSocket faults, a request for HTTP faults. Its decisions depend only on the
sequence of candidates (and, for ``window``, on time since the stack started),
so the same scenario gives the same decisions on every run. A candidate is seen
as a :class:`Candidate`: the user id of its token (``sub``; for HTTP requests, of
an ``Authorization: Bearer`` token) and whether it carries E2E test headers.

Written in scenario files and the CLI as a one-key mapping:

    always: true                 every candidate (the default)
    first: 3                     the first 3 candidates, then never
    every: 2                     the 2nd, 4th, 6th ... candidate
    probability: 0.3, seed: 7    a seeded draw per candidate (same seed, same decisions)
    user: "^e2e-"                candidates whose user id matches the regex
    e2e: true                    candidates carrying E2E test headers (X-E2E-Test: true or X-Test-Type: E2E)
    window: [0, 30]              candidates between 0 s and 30 s after the fault was applied
                                 (a scenario given to `simstack up` is applied as the stack starts)
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

from .errors import ConfigError

RULES = ("always", "first", "every", "probability", "user", "e2e", "window")


@dataclass(frozen=True)
class Candidate:
    """What a trigger sees of one candidate (a new WebSocket connection or an HTTP request)."""
    user_id: str | None = None   # the ``sub`` of its token, when it carries one that decodes
    e2e: bool = False            # it carries E2E test headers (X-E2E-Test: true or X-Test-Type: E2E)


@dataclass(frozen=True)
class Trigger:
    rule: str = "always"
    n: int = 0
    p: float = 1.0
    seed: int = 0
    pattern: str = ""
    window: tuple[float, float] = (0.0, float("inf"))

    @classmethod
    def parse(cls, spec: "Trigger | dict | str | None", where: str = "trigger") -> "Trigger":
        """Build from the scenario/CLI form; raise ConfigError naming the bad field."""
        if spec is None:
            return cls()
        if isinstance(spec, Trigger):
            return spec
        if isinstance(spec, str):
            if spec != "always":
                raise ConfigError(f"{where}: unknown trigger {spec!r}",
                                  f"use one of {', '.join(RULES)} (e.g. {{first: 3}})")
            return cls()
        if not isinstance(spec, dict):
            raise ConfigError(f"{where}: expected a mapping, got {spec!r}",
                              f"use one of {', '.join(RULES)}, e.g. {{every: 2}}")
        rules = [k for k in spec if k in RULES]
        extra = [k for k in spec if k not in RULES and k != "seed"]
        if len(rules) != 1 or extra:
            raise ConfigError(f"{where}: needs exactly one rule, got {sorted(spec)}",
                              f"rules are {', '.join(RULES)}; 'seed' goes with probability")
        rule = rules[0]
        value = spec[rule]
        if rule == "always":
            if value is not True:
                raise ConfigError(f"{where}.always: {value!r} is not true",
                                  "write `always: true`, or remove the fault to never fire it")
            return cls()
        if rule == "e2e":
            if value is not True:
                raise ConfigError(f"{where}.e2e: {value!r} is not true",
                                  "write `e2e: true` to fire for candidates that carry E2E test headers")
            return cls(rule=rule)
        if rule in ("first", "every"):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{where}.{rule}: {value!r} is not a positive integer",
                                  f"e.g. {{{rule}: 2}}")
            return cls(rule=rule, n=value)
        if rule == "probability":
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
                raise ConfigError(f"{where}.probability: {value!r} is not between 0 and 1",
                                  "e.g. {probability: 0.25, seed: 42}")
            seed = spec.get("seed")
            if not isinstance(seed, int) or isinstance(seed, bool):
                raise ConfigError(f"{where}.seed: probability needs an integer seed, got {seed!r}",
                                  "add one, e.g. {probability: 0.25, seed: 42}: decisions are replayed from it")
            return cls(rule=rule, p=float(value), seed=seed)
        if rule == "user":
            try:
                re.compile(value)
            except (re.error, TypeError) as exc:
                raise ConfigError(f"{where}.user: {value!r} is not a valid regex ({exc})",
                                  "e.g. {user: '^e2e-'}") from None
            return cls(rule=rule, pattern=value)
        # window
        if (not isinstance(value, (list, tuple)) or len(value) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
                or value[0] > value[1]):
            raise ConfigError(f"{where}.window: {value!r} is not [start_s, end_s]",
                              "seconds after the fault is applied, e.g. {window: [0, 30]}")
        return cls(rule=rule, window=(float(value[0]), float(value[1])))

    def to_dict(self) -> dict:
        if self.rule in ("first", "every"):
            return {self.rule: self.n}
        if self.rule == "probability":
            return {"probability": self.p, "seed": self.seed}
        if self.rule == "user":
            return {"user": self.pattern}
        if self.rule == "e2e":
            return {"e2e": True}
        if self.rule == "window":
            return {"window": list(self.window)}
        return {"always": True}

    def __str__(self) -> str:
        d = self.to_dict()
        return ", ".join(f"{k}={v}" for k, v in d.items())


@dataclass
class TriggerState:
    """The running decisions of one trigger. Lives where the fault is applied."""
    trigger: Trigger
    seen: int = 0
    fired: int = 0
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.trigger.seed)
        self._re = re.compile(self.trigger.pattern) if self.trigger.rule == "user" else None

    def decide(self, user_id: str | None = None, since_applied: float = 0.0, e2e: bool = False) -> bool:
        """One candidate (its user id, time since the fault was applied, E2E headers or not): does the fault fire?"""
        self.seen += 1
        t = self.trigger
        if t.rule == "always":
            hit = True
        elif t.rule == "first":
            hit = self.seen <= t.n
        elif t.rule == "every":
            hit = self.seen % t.n == 0
        elif t.rule == "probability":
            hit = self._rng.random() < t.p
        elif t.rule == "user":
            hit = bool(user_id) and self._re.search(user_id) is not None
        elif t.rule == "e2e":
            hit = e2e
        else:
            hit = t.window[0] <= since_applied < t.window[1]
        self.fired += hit
        return hit
