"""simstack's pytest plugin: run an existing staging suite against a local stack, test files unedited.

    pytest --simstack=local [--simstack-scenario repro-1011] [--simstack-redirect api.staging.example.com=api]
           [--simstack-env 'STAGING_API_URL={api_url}'] [--simstack-override 'pkg.config:STAGING.api_url={api_url}']
           [--simstack-require-traffic [--simstack-no-traffic-ok 'tests/unit/*']]

Off by default (``--simstack=off``). When on, the stack starts before the suite's
conftest.py files and test modules are imported, so import-time health probes
and config modules already see it, and stops when the session ends, also on
Ctrl-C or SIGTERM. Every test is marked in the stand-ins' timeline; the terminal
summary shows the traffic each test caused (this session's only), with each connection's final
close code. See the README's "pytest plugin" section.
"""
from __future__ import annotations

import fnmatch
import importlib
import json
import os
import re
import signal
import string
import sys
import threading
import time
import uuid
import warnings
from collections import Counter
from collections.abc import MutableMapping
from dataclasses import dataclass, field, fields
from typing import Any

import pytest

from .endpoints import Endpoints
from .shared.errors import SimstackError
from .shared.constants import AGENT_EVENTS, DEFAULT_EMAIL, LOOPBACK_HOSTS, MODES, PROFILES
from .terminal import fit

PLUGIN_MODES = (*MODES, "off")
TEMPLATE_KEYS = tuple(f.name for f in fields(Endpoints)) + ("token",)
TRAFFIC_PROPERTY = "simstack_traffic"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")


# ------------------------------------------------------------------ options

def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("simstack", "run the suite against a local simulated staging stack (simstack)")
    g.addoption("--simstack", choices=PLUGIN_MODES, default="off", dest="simstack",
                help="start a stack for the session: local processes, docker containers, auto (docker when an "
                     "engine answers, else local) or off (default)")
    g.addoption("--simstack-profile", choices=PROFILES, default="staging", dest="simstack_profile",
                help="timing profile of the stack (default: staging; fast adds no delays)")
    g.addoption("--simstack-scenario", metavar="NAME", dest="simstack_scenario",
                help="apply this scenario's faults for the whole run (a name from scenarios/ or a path)")
    g.addoption("--simstack-attach", nargs="?", const="", default=None, metavar="ID", dest="simstack_attach",
                help="use the stack started by `simstack up --detach` instead of starting one; with several "
                     "running, pick one with --simstack-attach=ID (ids: `simstack status`)")
    g.addoption("--simstack-env", metavar="NAME=TEMPLATE", action="append", default=[], dest="simstack_env",
                help="export NAME before collection, e.g. STAGING_API_URL={api_url}; keys: "
                     + ", ".join("{%s}" % k for k in TEMPLATE_KEYS) + " (repeatable)")
    g.addoption("--simstack-override", metavar="MODULE:OBJ.ATTR=TEMPLATE", action="append", default=[],
                dest="simstack_override",
                help="import MODULE and set OBJ.ATTR before collection, e.g. "
                     "'tests.config:STAGING.api_url={api_url}' (repeatable)")
    g.addoption("--simstack-redirect", metavar="HOST=SERVICE", action="append", default=[], dest="simstack_redirect",
                help="resolve HOST to the stack's SERVICE (api, ws or auth) inside this process, over TLS with a "
                     "throwaway CA, e.g. api.staging.example.com=api (repeatable)")
    g.addoption("--simstack-require-traffic", action="store_true", dest="simstack_require_traffic",
                help="fail a test that passed without real traffic to the stack (e.g. a canned-data fallback)")
    g.addoption("--simstack-no-traffic-ok", metavar="PATTERN", action="append", default=[],
                dest="simstack_no_traffic_ok",
                help="with --simstack-require-traffic: tests whose node id matches this glob may pass without "
                     "touching the stack (pure-logic tests), e.g. 'tests/unit/*' (repeatable)")
    g.addoption("--simstack-file", metavar="PATH", dest="simstack_file",
                help="a stack file (simstack.yaml) with services of your own for the stack the plugin starts")
    parser.addini("simstack_file", "a stack file like --simstack-file (relative to the ini file)", default="")
    g.addoption("--simstack-report", metavar="PATH", dest="simstack_report",
                help="write an HTML timeline of the session here: one entry per test, one lane per connection")
    from .recording import add_pytest_options
    add_pytest_options(g)
    parser.addini("simstack_env", "NAME=TEMPLATE lines exported like --simstack-env", type="linelist", default=[])
    parser.addini("simstack_override", "MODULE:OBJ.ATTR=TEMPLATE lines applied like --simstack-override",
                  type="linelist", default=[])
    parser.addini("simstack_redirect", "HOST=SERVICE lines applied like --simstack-redirect", type="linelist", default=[])
    parser.addini("simstack_no_traffic_ok", "node id globs that may pass without traffic, like "
                  "--simstack-no-traffic-ok", type="linelist", default=[])


@dataclass(frozen=True)
class Override:
    module: str
    path: tuple[str, ...]      # attribute path inside the module; the last one is set
    template: str
    spec: str


@dataclass
class Options:
    mode: str = "off"
    profile: str = "staging"
    scenario: str | None = None
    attach: str | None = None          # None: start a stack; "": the running one; else that stack's id
    env: list[tuple[str, str]] = field(default_factory=list)
    overrides: list[Override] = field(default_factory=list)
    require_traffic: bool = False
    redirects: list = field(default_factory=list)   # simstack.redirect.Redirect
    own: list = field(default_factory=list)         # simstack.own.OwnService, from the stack file
    no_traffic_ok: list[str] = field(default_factory=list)   # node id globs
    report: str | None = None
    stack_kwargs: dict = field(default_factory=dict)   # recording / replay (simstack.recording)

    @property
    def enabled(self) -> bool:
        return self.attach is not None or self.mode != "off"

    def may_skip_traffic(self, nodeid: str) -> bool:
        return any(fnmatch.fnmatchcase(nodeid, p) for p in self.no_traffic_ok)


def _usage(message: str, allowed: str) -> pytest.UsageError:
    return pytest.UsageError(f"simstack: {message}\n  -> {allowed}")


def check_template(template: str, where: str) -> str:
    try:
        keys = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise _usage(f"{where}: template {template!r} is malformed ({exc})",
                     "write literal braces as {{ and }}; keys: " + ", ".join("{%s}" % k for k in TEMPLATE_KEYS))
    for key in keys:
        if key not in TEMPLATE_KEYS:
            raise _usage(f"{where}: unknown template key {{{key}}} in {template!r}",
                         "allowed keys: " + ", ".join("{%s}" % k for k in TEMPLATE_KEYS))
    return template


def parse_env(spec: str, where: str) -> tuple[str, str]:
    name, eq, template = spec.partition("=")
    name = name.strip()
    if not eq or not _NAME.match(name):
        raise _usage(f"{where}: {spec!r} is not NAME=TEMPLATE",
                     "e.g. --simstack-env 'STAGING_API_URL={api_url}' or simstack_env = STAGING_JWT={token}")
    return name, check_template(template.strip(), where)


def parse_override(spec: str, where: str) -> Override:
    target, eq, template = spec.partition("=")
    module, colon, attr = target.strip().partition(":")
    if not eq or not colon or not _DOTTED.match(module) or not _DOTTED.match(attr):
        raise _usage(f"{where}: {spec!r} is not MODULE:OBJECT.ATTR=TEMPLATE",
                     "e.g. --simstack-override 'tests.config:STAGING.api_url={api_url}' "
                     "(or MODULE:NAME=TEMPLATE for a module-level name)")
    return Override(module, tuple(attr.split(".")), check_template(template.strip(), where), spec.strip())


def read_options(config: pytest.Config, ns: Any) -> Options:
    """Options from the command line namespace and the ini file; raises UsageError on bad values."""
    opts = Options(mode=ns.simstack, profile=ns.simstack_profile, scenario=ns.simstack_scenario,
                   attach=ns.simstack_attach, require_traffic=ns.simstack_require_traffic,
                   no_traffic_ok=[*config.getini("simstack_no_traffic_ok"), *ns.simstack_no_traffic_ok],
                   report=ns.simstack_report)
    if opts.report:
        _check_report_option(opts)
    for line in config.getini("simstack_env"):
        opts.env.append(parse_env(line, "ini simstack_env"))
    for spec in ns.simstack_env:
        opts.env.append(parse_env(spec, "--simstack-env"))
    for line in config.getini("simstack_override"):
        opts.overrides.append(parse_override(line, "ini simstack_override"))
    for spec in ns.simstack_override:
        opts.overrides.append(parse_override(spec, "--simstack-override"))
    opts.redirects = read_redirects(config, ns, opts.enabled)
    opts.own = read_stack_file(config, ns) if opts.enabled else []
    if opts.mode != "off" and opts.attach is None:
        from .recording import pytest_stack_kwargs
        try:
            opts.stack_kwargs = pytest_stack_kwargs(ns)
        except SimstackError as exc:
            raise _usage(exc.message, exc.hint) from None
    return opts


def read_stack_file(config: pytest.Config, ns: Any) -> list:
    """Services of your own from --simstack-file (relative to the invocation dir) or ini simstack_file."""
    path = ns.simstack_file
    if not path and config.getini("simstack_file"):
        path = str((config.inipath.parent if config.inipath else config.rootpath) / config.getini("simstack_file"))
    if not path:
        return []
    from .stackfile import load
    try:
        return load(path)
    except SimstackError as exc:
        raise _usage(exc.message, exc.hint or "see the README: Your own service in the stack") from None


def read_redirects(config: pytest.Config, ns: Any, enabled: bool) -> list:
    from .redirect import parse_redirects
    specs = [(line, "ini simstack_redirect") for line in config.getini("simstack_redirect")]
    specs += [(spec, "--simstack-redirect") for spec in getattr(ns, "simstack_redirect", None) or ()]
    try:
        redirects = parse_redirects(specs)
    except SimstackError as exc:
        raise _usage(exc.message, exc.hint) from None
    if ns.simstack_redirect and not enabled:
        raise _usage(f"--simstack-redirect {ns.simstack_redirect[0]!r} needs a stack to redirect to",
                     "add --simstack=local (or docker, auto), or --simstack-attach")
    return redirects


def load_scenario_faults(name: str, where: str) -> list[dict]:
    """A scenario's ``faults``. Its ``after_open`` faults need a connection to be open first, which
    only the scenario runner knows; a test adds them itself (``faults`` fixture), so say so."""
    try:
        from .scenarios import load_scenario
        scenario = load_scenario(name)
    except SimstackError as exc:
        raise _usage(f"{where}: {exc.message}", exc.hint or "see `simstack scenario ls`") from None
    if scenario.after_open:
        kinds = ", ".join(f["kind"] for f in scenario.after_open)
        warnings.warn(pytest.PytestConfigWarning(
            f"{where}: scenario {scenario.name!r} also has after_open faults ({kinds}), which only "
            "`simstack scenario run` applies; add them with the `faults` fixture once your connection is open"))
    return list(scenario.faults)


# ------------------------------------------------------------------ the session's stack

class SimstackSession:
    """What the ``simstack`` fixture gives a test: the endpoints, a token, and the fault API.

    ``faults`` is the stack's :class:`~simstack.stack.FaultControl` (session-wide changes; prefer
    the ``faults`` fixture or the ``simstack_faults`` marker, which undo themselves)."""

    def __init__(self, opts: Options, role: str):
        self.options = opts
        self.role = role                   # "stack" (started here), "attached", or "controller" (xdist, no stack)
        self.stack = None
        self.endpoints: Endpoints | None = None
        self.faults = None
        self.token: str | None = None
        self.env: dict[str, str] = {}
        self.note: str | None = None
        self._scenario_ids: list[str] = []
        self._saved_env: dict[str, str | None] = {}
        self._saved_attrs: list[tuple[Any, str, Any]] = []
        self._old_sigterm = None
        self.redirection = None            # simstack.redirect.Redirection while hosts are redirected
        self.nonce = uuid.uuid4().hex[:12]   # this session's traffic, told apart from earlier sessions' on a shared stack

    @property
    def mode(self) -> str:
        if self.role == "attached":
            return "attached"
        return self.stack.mode if self.stack is not None else "-"

    @property
    def profile(self) -> str:
        return self.stack.profile if self.stack is not None else self.options.profile

    @property
    def scenario(self) -> str | None:
        return self.options.scenario

    def mint_token(self, email: str = DEFAULT_EMAIL) -> str:
        return self.stack.token(email)

    def timeline(self, label: str | None = None) -> list[dict]:
        """This session's records (of one test with ``label``)."""
        return self.faults.timeline(label=label, session=self.nonce)[0]

    def mark(self, label: str | None) -> None:
        self.faults.mark(label, session=self.nonce if label else None)

    # -- lifecycle
    def start(self, config: pytest.Config) -> None:
        opts = self.options
        scenario = load_scenario_faults(opts.scenario, "--simstack-scenario") if opts.scenario else []
        if self.role == "controller":
            return
        self._trap_sigterm()
        try:
            if self.role == "attached":
                self._attach()
            else:
                self._start_stack()
            if scenario and (self.role == "stack" or not _is_xdist_worker()):   # a shared stack gets it once
                self._scenario_ids = [f.id for f in self.faults.apply(scenario)]
            self.token = self._first_token()
            if opts.redirects:
                from .redirect import Redirection
                self.redirection = Redirection.start(opts.redirects, self.endpoints)
            self._export_env()
            self._apply_overrides(config)
        except BaseException:
            self.stop()
            raise

    def _first_token(self) -> str:
        try:
            return self.mint_token()
        except SimstackError as exc:
            raise _usage(f"no token for the session: {exc.message}", exc.hint or "`simstack status`") from None

    def _start_stack(self) -> None:
        from .stack import Stack
        try:
            extra = dict(self.options.stack_kwargs)   # recording / replay
            self.stack = Stack(mode=self.options.mode, profile=self.options.profile,
                               own=self.options.own + extra.pop("own", []), **extra)
            self.note = self.stack.mode_note
            self.stack.start()
        except SimstackError as exc:
            raise _usage(f"could not start a {self.options.mode} stack: {exc.message}",
                         exc.hint or "see `simstack logs`") from None
        self.endpoints, self.faults = self.stack.endpoints, self.stack.faults

    def _attach(self) -> None:
        from .stack import Stack
        wanted = self.options.attach or None
        try:
            self.stack = Stack.attach(wanted)
        except SimstackError as exc:
            hint = exc.hint or "start one with `simstack up --detach`"
            if wanted and ("/" in wanted or wanted.endswith(".py") or os.path.exists(wanted)):
                hint = (f"{wanted!r} looks like a test path, not a stack id: write --simstack-attach=ID, "
                        "or put --simstack-attach after the test paths")
            elif "pick one with --id" in hint:
                hint = "pick one with --simstack-attach=ID (ids: `simstack status`)"
            raise _usage(f"--simstack-attach: {exc.message}", hint) from None
        self.endpoints, self.faults = self.stack.endpoints, self.stack.faults

    def _export_env(self) -> None:
        env = self.endpoints.env(self.token)
        for var in ("NO_PROXY", "no_proxy"):
            have = [h for h in os.environ.get(var, "").split(",") if h.strip()]
            redirected = [r.host for r in self.options.redirects] if self.redirection else []
            env[var] = ",".join(have + [h for h in (*LOOPBACK_HOSTS, *redirected) if h not in have])
        if self.redirection is not None:
            env.update(self.redirection.env)
        for name, template in self.options.env:
            env[name] = self.endpoints.render(template, self.token)
        for name, value in env.items():
            self._saved_env.setdefault(name, os.environ.get(name))
            os.environ[name] = value
        self.env = env

    def _apply_overrides(self, config: pytest.Config) -> None:
        for o in self.options.overrides:
            owner = _import_for_override(o, config)
            for depth, name in enumerate(o.path):
                child = _child(owner, name, o, depth)
                if depth < len(o.path) - 1:
                    owner = child
            attr, value = o.path[-1], self.endpoints.render(o.template, self.token)
            try:
                if isinstance(owner, MutableMapping):
                    self._saved_attrs.append((owner, attr, owner[attr]))
                    owner[attr] = value
                else:
                    self._saved_attrs.append((owner, attr, getattr(owner, attr)))
                    setattr(owner, attr, value)
            except (AttributeError, TypeError) as exc:
                raise _usage(f"--simstack-override {o.spec!r}: cannot set {o.module}:{'.'.join(o.path)} ({exc})",
                             "point the override at a plain attribute, dict key or class attribute") from None

    def stop(self) -> None:
        for owner, attr, old in reversed(self._saved_attrs):
            try:
                if isinstance(owner, MutableMapping):
                    owner[attr] = old
                else:
                    setattr(owner, attr, old)
            except (AttributeError, TypeError):
                pass
        self._saved_attrs.clear()
        for name, old in self._saved_env.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old
        self._saved_env.clear()
        if self.role == "attached" and self.faults is not None:
            for fid in self._scenario_ids:
                self.remove(fid)
            try:
                self.mark(None)
            except SimstackError:
                pass
        self._scenario_ids = []
        redirection, self.redirection = self.redirection, None
        if redirection is not None:
            redirection.stop()
        self.faults = None
        stack, self.stack = self.stack, None
        if stack is not None:
            stack.stop()   # an attached stack keeps running
            recorded = self.options.stack_kwargs.get("cassette")
            if hasattr(recorded, "finish"):   # --simstack-record: what was written, once nothing writes any more
                sys.stderr.write(f"simstack: {recorded.finish()}\n")
        self._restore_sigterm()

    def _trap_sigterm(self) -> None:
        """SIGTERM ends the session like Ctrl-C, so the stack is stopped (pytest itself dies on it)."""
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            self._old_sigterm = signal.SIG_DFL
            signal.signal(signal.SIGTERM, _sigterm_to_interrupt)

    def _restore_sigterm(self) -> None:
        if self._old_sigterm is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._old_sigterm)
            self._old_sigterm = None

    # -- per test
    def apply(self, faults: list) -> list[str]:
        return [f.id for f in self.faults.apply(faults)]

    def remove(self, fault_id: str) -> None:
        try:
            self.faults.remove(fault_id)
        except SimstackError:
            pass   # already gone (e.g. the test reset the stack)


def _sigterm_to_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def _is_xdist_worker() -> bool:
    return "PYTEST_XDIST_WORKER" in os.environ


def _is_xdist_controller(ns: Any) -> bool:
    if _is_xdist_worker():
        return False
    n = getattr(ns, "numprocesses", None)
    return bool(n) or getattr(ns, "dist", "no") != "no" or bool(getattr(ns, "tx", None))


def _child(owner: Any, name: str, o: Override, depth: int) -> Any:
    """``owner.name`` (or ``owner[name]`` for a dict); it must exist, so a typo is an error, not a new attribute."""
    if isinstance(owner, MutableMapping):
        if name in owner:
            return owner[name]
        known = [str(k) for k in owner]
    elif hasattr(owner, name):
        return getattr(owner, name)
    else:
        known = [k for k in dir(owner) if not k.startswith("_")]
    where = f"{o.module}:{'.'.join(o.path[:depth + 1])}"
    raise _usage(f"--simstack-override {o.spec!r}: {where} does not exist",
                 f"names defined there: {', '.join(sorted(known)[:30]) or 'none'}")


def _import_for_override(o: Override, config: pytest.Config):
    """Import the override's module; a suite's own modules are found from its rootdir too."""
    extra = [str(p) for p in (config.rootpath, config.invocation_params.dir) if str(p) not in sys.path]
    try:
        try:
            return importlib.import_module(o.module)
        except ModuleNotFoundError as exc:
            if not extra or (exc.name and not o.module.startswith(exc.name)):
                raise
            sys.path[:0] = extra
            return importlib.import_module(o.module)
    except ImportError as exc:
        raise _usage(f"--simstack-override {o.spec!r}: cannot import module {o.module!r} ({exc})",
                     f"give a module importable from {config.rootpath} (or set `pythonpath` in the ini file)") from None
    except Exception as exc:
        raise _usage(f"--simstack-override {o.spec!r}: importing {o.module!r} raised "
                     f"{exc.__class__.__name__}: {exc}", "fix the module, or override another one") from None


_SESSION = pytest.StashKey[SimstackSession]()


def _begin(config: pytest.Config, ns: Any) -> None:
    if _SESSION in config.stash:
        return
    opts = read_options(config, ns)
    if not opts.enabled:
        return
    role = "attached" if opts.attach is not None else ("controller" if _is_xdist_controller(ns) else "stack")
    session = SimstackSession(opts, role)
    try:
        session.start(config)   # stops whatever it started before re-raising
    except KeyboardInterrupt:   # Ctrl-C or SIGTERM during start-up: one line, pytest's "interrupted" code
        sys.stderr.write("simstack: interrupted while starting the stack; everything it started is stopped\n")
        sys.stdout.flush()
        sys.stderr.flush()
        # Everything started is stopped and no session ran, so leave now. Not SystemExit: on Python 3.11 a
        # KeyboardInterrupt raised inside exec() (dataclasses and namedtuple use it while modules import)
        # marks the process, and the interpreter then ends itself with SIGINT (-2) whatever the exit code.
        os._exit(int(pytest.ExitCode.INTERRUPTED))
    config.stash[_SESSION] = session
    _record_timeline(config, session, ns)


@pytest.hookimpl
def pytest_load_initial_conftests(early_config: pytest.Config, parser, args) -> None:
    """Start as early as possible: before the suite's conftest.py files are imported."""
    ns = early_config.known_args_namespace
    if getattr(ns, "help", False) or getattr(ns, "version", False):
        return
    _begin(early_config, ns)


def pytest_configure(config: pytest.Config) -> None:
    for line in ("simstack_faults(*faults): apply simstack faults for this test (fault kinds or "
                 "{kind, target, params, trigger} mappings); removed after it",
                 "simstack_scenario(name): apply a simstack scenario's faults for this test; removed after it"):
        config.addinivalue_line("markers", line)
    if not config.option.help:
        _begin(config, config.option)   # no-op when already started early


def pytest_unconfigure(config: pytest.Config) -> None:
    session = config.stash.get(_SESSION, None)
    if session is not None:
        del config.stash[_SESSION]
        session.stop()


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    s = config.stash.get(_SESSION, None)
    if s is None:
        return None
    if s.role == "controller":
        return ["simstack: one stack per xdist worker"
                + (f", scenario {s.scenario}" if s.scenario else "")]
    lines = [f"simstack: {s.mode} stack, profile {s.profile}" + (f", scenario {s.scenario}" if s.scenario else "")
             + f": api {s.endpoints.api_url}  ws {s.endpoints.ws_url}  auth {s.endpoints.auth_url}"]
    if s.redirection is not None:
        lines.append("simstack: redirected (TLS by a throwaway CA): " + ", ".join(s.redirection.describe()))
    if s.note:
        lines.append(f"simstack: {s.note}")
    return lines


# ------------------------------------------------------------------ fixtures and markers

def _active(config: pytest.Config) -> SimstackSession | None:
    s = config.stash.get(_SESSION, None)
    return s if s is not None and s.faults is not None else None


@pytest.fixture(scope="session")
def simstack(pytestconfig: pytest.Config) -> SimstackSession:
    """The session's stack: ``.endpoints``, ``.token``, ``.faults``, ``.env``, ``.mint_token()``."""
    s = _active(pytestconfig)
    if s is None:
        pytest.skip("needs a simstack stack: run with --simstack=local (or --simstack-attach)")
    return s


class TestFaults:
    """Faults for one test: ``add(kind, target=None, trigger=None, **params)``, ``apply([...])``, ``list()``.
    Whatever was applied through it is removed after the test."""

    __test__ = False   # not a test class

    def __init__(self, session: SimstackSession):
        self._session = session
        self.applied: list[str] = []

    def add(self, kind: str, target: str | None = None, trigger: Any = None, **params: Any):
        fault = self._session.faults.add(kind, target, trigger, **params)
        self.applied.append(fault.id)
        return fault

    def apply(self, faults: list):
        applied = self._session.faults.apply(faults)
        self.applied += [f.id for f in applied]
        return applied

    def list(self) -> list[dict]:
        return self._session.faults.list()

    def remove(self, fault_id: str) -> None:
        self._session.remove(fault_id)
        if fault_id in self.applied:
            self.applied.remove(fault_id)

    def undo(self) -> None:
        for fid in reversed(self.applied):
            self._session.remove(fid)
        self.applied.clear()


@pytest.fixture
def faults(simstack: SimstackSession):
    """Apply faults for this test; they are removed after it (a run-wide scenario stays)."""
    tf = TestFaults(simstack)
    try:
        yield tf
    finally:
        tf.undo()


_MARKER_FAULTS = pytest.StashKey[list]()


def _marker_faults(item: pytest.Item) -> list:
    out: list = []
    for mark in item.iter_markers("simstack_faults"):
        for i, f in enumerate(mark.args):
            if isinstance(f, str):
                out.append({"kind": f})
            elif isinstance(f, dict) or hasattr(f, "kind"):
                out.append(f)
            else:
                raise _usage(f"{item.nodeid}: simstack_faults argument {i} is {f!r}",
                             "give fault kinds ('race_on_accept') or mappings ({'kind': ..., 'params': {...}})")
    for mark in item.iter_markers("simstack_scenario"):
        if len(mark.args) != 1 or not isinstance(mark.args[0], str):
            raise _usage(f"{item.nodeid}: simstack_scenario needs one scenario name, got {mark.args!r}",
                         "e.g. @pytest.mark.simstack_scenario('repro-1011')")
        out += load_scenario_faults(mark.args[0], f"{item.nodeid}: simstack_scenario")
    return out


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item):
    s = _active(item.config)
    if s is not None:
        s.mark(item.nodeid)
        wanted = _marker_faults(item)
        if wanted:
            item.stash[_MARKER_FAULTS] = s.apply(wanted)
    elif any(item.iter_markers("simstack_faults")) or any(item.iter_markers("simstack_scenario")):
        pytest.skip("simstack markers need a stack: run with --simstack=local (or --simstack-attach)")
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem):
    try:
        return (yield)
    finally:
        s = _active(item.config)
        for fid in reversed(item.stash.get(_MARKER_FAULTS, [])):
            if s is not None:
                s.remove(fid)


# ------------------------------------------------------------------ evidence of real traffic

def summarize(records: list[dict]) -> dict:
    """Per test: requests, connections, agent events sent, WebSocket close codes, faults fired."""
    ws = [r for r in records if r["kind"] == "ws"]
    accepted = [r for r in ws if r.get("status") == 101]
    return {
        "http": sum(1 for r in records if r["kind"] == "http"),
        "ws": len(ws),
        "events": sum(1 for r in ws for t in r.get("frames_out") or () if t in AGENT_EVENTS),
        "ws_accepted": len(accepted),
        "ws_silent": sum(1 for r in accepted if not r.get("frames_out")),
        "ws_refused": sum(1 for r in ws if r.get("status") not in (None, 101)),
        "closes": [r["close_code"] for r in ws if r.get("close_code") is not None],
        "faults": sorted({f for r in records for f in r.get("faults") or ()}),
    }


NO_TRAFFIC = "passed without touching the stack"


def missing_traffic(t: dict) -> str | None:
    """Why a passed test did not really exercise the stack, or None."""
    if t["ws_accepted"] and t["ws_silent"] == t["ws_accepted"]:
        closes = ", ".join(map(str, t["closes"])) or "none yet"
        return (f"passed although none of its {t['ws_accepted']} WebSocket connection(s) got a single frame "
                f"from the server (close codes: {closes}): did it fall back to canned data?")
    answered = t["http"] + t["ws_refused"] + (t["ws_accepted"] - t["ws_silent"])
    if not answered:
        return f"{NO_TRAFFIC}: no HTTP request or WebSocket connection reached it"
    return None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    traffic = None
    s = _active(item.config)
    if s is not None and call.when == "call":
        try:
            traffic = summarize(s.timeline(label=item.nodeid))
        except SimstackError as exc:
            traffic = {"error": exc.message}
        item.user_properties.append((TRAFFIC_PROPERTY, json.dumps(traffic)))
    report = yield
    if traffic and s.options.require_traffic and report.passed and "error" not in traffic:
        why = missing_traffic(traffic)
        if why and why.startswith(NO_TRAFFIC) and s.options.may_skip_traffic(item.nodeid):
            traffic["no_traffic_ok"] = True   # allowed by --simstack-no-traffic-ok: its own outcome
            _set_traffic(report.user_properties, traffic)
        elif why:
            report.outcome = "failed"
            report.longrepr = f"simstack --simstack-require-traffic: {item.nodeid} {why}"
    return report


def _set_traffic(props: list, traffic: dict) -> None:
    for i, (name, _) in enumerate(props):
        if name == TRAFFIC_PROPERTY:
            props[i] = (TRAFFIC_PROPERTY, json.dumps(traffic))


SETTLE_S = 2.0   # at session end, how long to wait for connections still closing to record their close code


def _settled_records(s: SimstackSession) -> list[dict]:
    """This session's records once no accepted WebSocket is still closing (or SETTLE_S passed)."""
    deadline = time.monotonic() + SETTLE_S
    while True:
        records = s.timeline()
        open_ws = [r for r in records if r["kind"] == "ws" and r.get("status") == 101 and r.get("close_code") is None]
        if not open_ws or time.monotonic() > deadline:
            return records
        time.sleep(0.05)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """Re-read each test's traffic at the end, so connections that were still closing when their test
    ended count with their final close code (the summary and reports show these final figures)."""
    s = _active(session.config)
    tr = session.config.pluginmanager.get_plugin("terminalreporter")
    if s is None or tr is None:
        return
    try:
        records = _settled_records(s)
    except SimstackError:
        return   # the per-test figures stay
    by_label: dict[str, list[dict]] = {}
    for r in records:
        by_label.setdefault(r.get("label"), []).append(r)
    for reports in tr.stats.values():
        for rep in reports:
            t = _traffic_of(rep) if getattr(rep, "when", None) == "call" else None
            if t is not None and "error" not in t:
                final = summarize(by_label.get(rep.nodeid, []))
                if t.get("no_traffic_ok"):
                    final["no_traffic_ok"] = True
                _set_traffic(rep.user_properties, final)


def _traffic_of(report) -> dict | None:
    for name, value in getattr(report, "user_properties", ()):
        if name == TRAFFIC_PROPERTY:
            return json.loads(value)
    return None


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    rows = []
    for reports in terminalreporter.stats.values():
        for rep in reports:
            if getattr(rep, "when", None) == "call" and (t := _traffic_of(rep)) is not None:
                rows.append((rep.nodeid, rep.outcome, t))
    if not rows:
        return
    tr = terminalreporter
    line = lambda text: tr.line(fit(text, indent=8))   # noqa: E731  (100 columns; the test id is never cut)
    tr.section("simstack traffic")
    s = config.stash.get(_SESSION, None)
    if s is not None and s.endpoints is not None:
        line(f"{s.mode} stack, profile {s.profile}" + (f", scenario {s.scenario}" if s.scenario else ""))
    elif s is not None:
        line("one stack per xdist worker" + (f", scenario {s.scenario}" if s.scenario else ""))
    line(f"{'http':>5} {'ws':>4} {'events':>6}  {'ws closes':<14} {'faults fired':<28} {'outcome':<7} test")
    untouched = 0
    for nodeid, outcome, t in sorted(rows):
        if t.get("no_traffic_ok") and outcome == "passed":
            outcome, untouched = "no I/O", untouched + 1
        if "error" in t:
            line(f"{'?':>5} {'?':>4} {'?':>6}  {'':<14} {'':<28} {outcome:<7} {nodeid} ({t['error']})")
            continue
        closes = ",".join(f"{c}x{n}" if n > 1 else str(c) for c, n in Counter(t["closes"]).items()) or "-"
        fired = ",".join(t["faults"]) or "-"
        line(f"{t['http']:>5} {t['ws']:>4} {t['events']:>6}  {closes:<14} {fired:<28} {outcome:<7} {nodeid}")
    if untouched:
        line(f"no I/O: {untouched} test(s) {NO_TRAFFIC}, allowed by --simstack-no-traffic-ok / "
             "simstack_no_traffic_ok")


# ------------------------------------------------------------------ the HTML timeline (simstack.pytest_report)

def _check_report_option(opts: Options) -> None:
    """--simstack-report is refused before anything runs when it cannot be honoured."""
    from .report import check_path
    if not opts.enabled:
        raise _usage(f"--simstack-report {opts.report!r} needs a stack", "add --simstack=local (or --simstack-attach)")
    try:
        check_path(opts.report, "--simstack-report")
    except SimstackError as exc:
        raise _usage(exc.message, exc.hint) from None


def _record_timeline(config: pytest.Config, session: SimstackSession, ns: Any) -> None:
    """Read the timeline after every test when a report or pytest-html extras want it."""
    html_extras = bool(getattr(ns, "htmlpath", None)) and config.pluginmanager.hasplugin("html")
    if not (session.options.report or (html_extras and session.faults is not None)):
        return
    from pathlib import Path
    from .pytest_report import ReportPlugin
    path = Path(session.options.report).expanduser().resolve() if session.options.report else None
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    config.pluginmanager.register(ReportPlugin(session, path, html_extras, worker), "simstack-report")
