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

from typing import Any

import pytest

from .options import _usage, load_scenario_faults, pytest_addoption
from .session import SimstackSession, _SESSION, _active, _begin
from .traffic import pytest_runtest_makereport, pytest_sessionfinish, pytest_terminal_summary

# pytest registers the hooks it finds in this module: those defined beside their job are collected here.
__all__ = ["pytest_addoption", "pytest_runtest_makereport", "pytest_sessionfinish", "pytest_terminal_summary"]


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


