"""The plugin's options and ini settings, read and checked before anything starts; --simstack-env and
--simstack-override templates."""
from __future__ import annotations

import fnmatch
import importlib
import re
import string
import sys
import warnings
from collections.abc import MutableMapping
from dataclasses import dataclass, field, fields
from typing import Any

import pytest

from ..endpoints import Endpoints
from ..shared.errors import SimstackError
from ..shared.constants import MODES, PROFILES


PLUGIN_MODES = (*MODES, "off")
TEMPLATE_KEYS = tuple(f.name for f in fields(Endpoints)) + ("token",)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")


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
                help="a stack file (simstack.yaml) with services of your own and redirect: lines for the stack the plugin starts")
    parser.addini("simstack_file", "a stack file like --simstack-file (relative to the ini file)", default="")
    g.addoption("--simstack-report", metavar="PATH", dest="simstack_report",
                help="write an HTML timeline of the session here: one entry per test, one lane per connection")
    from ..recording import add_pytest_options
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
    stack_file = read_stack_file(config, ns) if opts.enabled else None
    opts.own = stack_file.services if stack_file else []
    opts.redirects = read_redirects(config, ns, opts.enabled, stack_file.redirects if stack_file else [])
    if opts.mode != "off" and opts.attach is None:
        from ..recording import pytest_stack_kwargs
        try:
            opts.stack_kwargs = pytest_stack_kwargs(ns)
        except SimstackError as exc:
            raise _usage(exc.message, exc.hint) from None
    return opts


def read_stack_file(config: pytest.Config, ns: Any):
    """The StackFile (services of your own, redirects) from --simstack-file (relative to the invocation
    dir) or ini simstack_file; None without one."""
    path = ns.simstack_file
    if not path and config.getini("simstack_file"):
        path = str((config.inipath.parent if config.inipath else config.rootpath) / config.getini("simstack_file"))
    if not path:
        return None
    from ..stackfile import read
    try:
        return read(path)
    except SimstackError as exc:
        raise _usage(exc.message, exc.hint or "see the README: Your own service in the stack") from None


def read_redirects(config: pytest.Config, ns: Any, enabled: bool, file_specs: list = ()) -> list:
    from ..redirect import parse_redirects
    specs = [(line, "ini simstack_redirect") for line in config.getini("simstack_redirect")]
    specs += list(file_specs)                        # the stack file's redirect: field
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
        from ..scenarios import load_scenario
        scenario = load_scenario(name)
    except SimstackError as exc:
        raise _usage(f"{where}: {exc.message}", exc.hint or "see `simstack scenario ls`") from None
    if scenario.after_open:
        kinds = ", ".join(f["kind"] for f in scenario.after_open)
        warnings.warn(pytest.PytestConfigWarning(
            f"{where}: scenario {scenario.name!r} also has after_open faults ({kinds}), which only "
            "`simstack scenario run` applies; add them with the `faults` fixture once your connection is open"))
    return list(scenario.faults)


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


def _check_report_option(opts: Options) -> None:
    """--simstack-report is refused before anything runs when it cannot be honoured."""
    from ..report import check_path
    if not opts.enabled:
        raise _usage(f"--simstack-report {opts.report!r} needs a stack", "add --simstack=local (or --simstack-attach)")
    try:
        check_path(opts.report, "--simstack-report")
    except SimstackError as exc:
        raise _usage(exc.message, exc.hint) from None
