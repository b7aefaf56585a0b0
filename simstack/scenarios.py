"""Scenarios: a named set of faults plus what a client must observe under them.

A scenario file (YAML: shipped in ``scenarios/``, in a directory of your own given with ``--scenarios DIR``
or ``$SIMSTACK_SCENARIOS``, or anywhere by path)::

    name: repro-1011
    description: why this scenario exists
    faults:                      # applied together, all or nothing, before the client connects
      - kind: race_on_accept
        params: {register_delay_ms: 500}
    after_open: []               # faults applied once every client connection is open
    client:                      # optional; the checking client (simstack.client)
      action: start_agent        # start_agent | listen | connect
      timeout_s: 10
      connections: 1             # >1: opened one after another and held open
      email: e2e-user@staging.netra.test
    expect:
      ws:                        # one mapping for every connection, or a list, one per connection
        status: 101
        close_code: 1011
        close_reason: Internal error
        frames_before_close: 0
      http:
        - {path: /health, status: 200}
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import resources
from .client import ACTIONS, HttpObservation, Observation, observe_http, observe_ws
from .shared.constants import DEFAULT_EMAIL
from .shared.errors import ConfigError
from .shared.faults import Fault
from .terminal import fit
from .toxiproxy import drain_s

SCENARIO_DIR = resources.shipped("scenarios")   # the shipped ones
TOP_KEYS = {"name", "description", "faults", "after_open", "client", "expect"}
CLIENT_KEYS = {"action": str, "timeout_s": (int, float), "connections": int, "email": str}
WS_KEYS = {"status": (int, type(None)), "close_code": (int, type(None)), "close_reason": (str, type(None)),
           "frames_before_close": int, "first_frame": str, "events": list, "timed_out": bool}
HTTP_KEYS = {"path": str, "method": str, "status": int, "timed_out": bool, "retry_after": bool, "timeout_s": (int, float)}


@dataclass
class Scenario:
    name: str
    description: str
    faults: list[dict]
    after_open: list[dict]
    client: dict
    expect_ws: list[dict]
    expect_http: list[dict]
    path: Path | None = None

    @property
    def connections(self) -> int:
        return self.client.get("connections", 1)

    def ws_expectation(self, i: int) -> dict:
        if not self.expect_ws:
            return {}
        return self.expect_ws[i] if len(self.expect_ws) > 1 else self.expect_ws[0]


def scenario_files(extra: list[Path] | tuple[Path, ...] = ()) -> dict[str, Path]:
    """Every scenario file by name (its file name): the shipped ones, then the user's directories
    (``$SIMSTACK_SCENARIOS``, then ``extra``). A name found twice is refused rather than shadowed."""
    found: dict[str, Path] = {}
    for folder in resources.scenario_dirs(extra):
        if not folder.is_dir():
            raise ConfigError(f"scenario directory {str(folder)!r} does not exist",
                              f"check --scenarios and ${resources.SCENARIOS_ENV}")
        for path in sorted(folder.glob("*.yaml")):
            if path.stem in found:
                raise ConfigError(f"scenario {path.stem!r} is both {found[path.stem]} and {path}",
                                  "rename one of the files: a scenario is found by its file name")
            found[path.stem] = path
    return found


def _known(files: dict[str, Path]) -> str:
    shipped = [name for name, path in files.items() if path.parent == SCENARIO_DIR]
    yours = [name for name in files if name not in shipped]
    return (f"shipped scenarios: {', '.join(shipped)}" + (f"; yours: {', '.join(yours)}" if yours else "")
            + f"; add your own with --scenarios DIR or ${resources.SCENARIOS_ENV}")


def list_scenarios(extra: list[Path] | tuple[Path, ...] = ()) -> list[Scenario]:
    return [load_scenario(p) for p in scenario_files(extra).values()]


def load_scenario(name_or_path: str | Path, extra: list[Path] | tuple[Path, ...] = ()) -> Scenario:
    """By name (shipped, or from the user's directories, see :func:`scenario_files`), or by path.
    Raises ConfigError naming the file, field, value and what is allowed."""
    path = Path(name_or_path)
    if not path.suffix:
        files = scenario_files(extra)
        if str(name_or_path) not in files:
            raise ConfigError(f"no scenario {str(name_or_path)!r} (looked in "
                              f"{', '.join(str(d) for d in resources.scenario_dirs(extra))})",
                              _known(files))
        path = files[str(name_or_path)]
    if not path.exists():
        raise ConfigError(f"no scenario file {str(name_or_path)!r} ({path} does not exist)",
                          "give the path of a YAML file, or a name from `simstack scenario ls`")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}", "fix the syntax; `simstack scenario ls` validates every file") from None
    return parse_scenario(data, str(path), path)


def parse_scenario(data: Any, where: str, path: Path | None = None) -> Scenario:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: a scenario is a mapping, got {type(data).__name__}",
                          f"top-level keys: {', '.join(sorted(TOP_KEYS))}")
    _keys(data, TOP_KEYS, where)
    if not isinstance(data.get("name"), str) or not data["name"]:
        raise ConfigError(f"{where}: name: missing or not a string ({data.get('name')!r})", "e.g. name: repro-1011")
    faults, after_open = data.get("faults") or [], data.get("after_open") or []
    for key, items in (("faults", faults), ("after_open", after_open)):
        if not isinstance(items, list):
            raise ConfigError(f"{where}: {key}: expected a list, got {items!r}", "e.g. faults: [{kind: race_on_accept}]")
        for i, f in enumerate(items):
            Fault.from_dict(f, where=f"{where}: {key}[{i}]")   # validate now; nothing is applied yet
    client = data.get("client") or {}
    _typed(client, CLIENT_KEYS, f"{where}: client")
    if client.get("action", "start_agent") not in ACTIONS:
        raise ConfigError(f"{where}: client.action: {client['action']!r} is not allowed",
                          f"allowed values: {', '.join(ACTIONS)}")
    if client.get("connections", 1) < 1 or client.get("timeout_s", 1) <= 0:
        raise ConfigError(f"{where}: client: connections must be >= 1 and timeout_s > 0", f"got {client}")
    expect = data.get("expect") or {}
    _keys(expect, {"ws", "http"}, f"{where}: expect")
    ws = expect.get("ws") or []
    ws = [ws] if isinstance(ws, dict) else ws
    for i, e in enumerate(ws):
        _typed(e, WS_KEYS, f"{where}: expect.ws[{i}]")
    if len(ws) > 1 and len(ws) != client.get("connections", 1):
        raise ConfigError(f"{where}: expect.ws has {len(ws)} entries but client.connections is "
                          f"{client.get('connections', 1)}", "give one mapping for all connections or one per connection")
    http = expect.get("http") or []
    if not isinstance(http, list):
        raise ConfigError(f"{where}: expect.http: expected a list, got {http!r}", "e.g. http: [{path: /health, status: 200}]")
    for i, e in enumerate(http):
        _typed(e, HTTP_KEYS, f"{where}: expect.http[{i}]")
        if "path" not in e:
            raise ConfigError(f"{where}: expect.http[{i}]: missing path", "e.g. {path: /health, status: 200}")
    return Scenario(data["name"], str(data.get("description", "")).strip(), faults, after_open, client, ws, http, path)


def _keys(d: Any, allowed: set, where: str) -> None:
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: expected a mapping, got {d!r}", f"keys: {', '.join(sorted(allowed))}")
    extra = sorted(set(d) - allowed)
    if extra:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(map(str, extra))}", f"allowed keys: {', '.join(sorted(allowed))}")


def _typed(d: Any, schema: dict, where: str) -> None:
    _keys(d, set(schema), where)
    for k, v in d.items():
        if not isinstance(v, schema[k]) or (schema[k] is int and isinstance(v, bool)):
            raise ConfigError(f"{where}.{k}: {v!r} has the wrong type", f"expected {_tname(schema[k])}")


def _tname(t) -> str:
    return " or ".join(x.__name__ for x in t) if isinstance(t, tuple) else t.__name__


# ------------------------------------------------------------------ running


@dataclass
class Check:
    what: str
    expected: Any
    observed: Any

    @property
    def ok(self) -> bool:
        return self.expected == self.observed


@dataclass
class ScenarioResult:
    scenario: Scenario
    connections: list[Observation]
    http: list[HttpObservation]
    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.ok for c in self.checks)


def run_scenario(scenario: Scenario, stack) -> ScenarioResult:
    """Apply the scenario's faults to a running stack, observe with real clients, check, reset.

    ``stack`` is a started :class:`~simstack.stack.Stack` or one from ``Stack.attach()``."""
    endpoints, faults = stack.endpoints, stack.faults
    faults.reset()
    applied = faults.apply(scenario.faults)
    try:
        token = stack.token(scenario.client.get("email", DEFAULT_EMAIL))
        observed = asyncio.run(_connections(scenario, endpoints.ws_url, token, faults))
        http = [observe_http(endpoints.api_url, e["path"], e.get("method", "GET"), e.get("timeout_s", 5.0))
                for e in scenario.expect_http]
    finally:
        time.sleep(drain_s(applied))   # let Toxiproxy deliver held data, or its reset blocks (issue #558)
        faults.reset()
    result = ScenarioResult(scenario, observed, http)
    for i, obs in enumerate(observed):
        for key, want in scenario.ws_expectation(i).items():
            result.checks.append(Check(f"ws[{i}].{key}", want, _ws_value(obs, key)))
    for e, obs in zip(scenario.expect_http, http):
        what = f"http {e.get('method', 'GET')} {e['path']}"
        for key in ("status", "timed_out", "retry_after"):
            if key in e:
                got = obs.retry_after is not None if key == "retry_after" else getattr(obs, key)
                result.checks.append(Check(f"{what} {key}", e[key], got))
        if "status" in e:   # CONTRACT §2: every answer, error or not, has a JSON body
            result.checks.append(Check(f"{what} json body", True, obs.json_ok))
    return result


def _ws_value(obs: Observation, key: str) -> Any:
    if key == "first_frame":
        return obs.frames[0] if obs.frames else None
    if key == "frames_before_close":
        return obs.frames_before_close
    return getattr(obs, key)


async def _connections(scenario: Scenario, ws_url: str, token: str, faults) -> list[Observation]:
    """Open the connections one after another (held open when there are several), then apply after_open."""
    client = scenario.client
    kwargs = {"action": client.get("action", "start_agent"), "timeout_s": float(client.get("timeout_s", 10))}
    hold = asyncio.Event() if scenario.connections > 1 else None
    tasks = []
    for _ in range(scenario.connections):
        opened = asyncio.Event()
        tasks.append(asyncio.create_task(observe_ws(ws_url, token, hold=hold, opened=opened, **kwargs)))
        await opened.wait()
    if scenario.after_open:
        await asyncio.to_thread(faults.apply, scenario.after_open)
    if hold is not None:
        hold.set()
    return list(await asyncio.gather(*tasks))


def format_result(result: ScenarioResult) -> str:
    """Every check with what was observed, wrapped to the terminal (never cut)."""
    lines = [f"scenario {result.scenario.name}: {'PASS' if result.passed else 'FAIL'}"]
    if result.scenario.description:
        lines.append(f"  {result.scenario.description.splitlines()[0]}")
    width = min(32, max((len(c.what) for c in result.checks), default=10))
    for c in result.checks:
        lines.append(f"  {'ok  ' if c.ok else 'FAIL'} {c.what:<{width}}  expected {c.expected!r:<18} observed {c.observed!r}")
    for i, obs in enumerate(result.connections):
        if obs.error:
            lines.append(f"  ws[{i}] client saw: {obs.error}")
    return "\n".join(fit(line, indent=6) for line in lines)


def run_labelled(scenario: Scenario, stack, label: str) -> tuple[ScenarioResult, list[dict]]:
    """:func:`run_scenario` with its traffic labelled ``label`` in the timeline; returns the result and
    the stand-ins' records of that traffic (what the server saw)."""
    stack.faults.mark(label)
    try:
        result = run_scenario(scenario, stack)
    finally:
        stack.faults.mark(None)
    return result, stack.faults.timeline(label=label)[0]


def failed_checks(result: ScenarioResult) -> str:
    return ", ".join(f"{c.what} expected {c.expected!r} got {c.observed!r}" for c in result.checks if not c.ok)
