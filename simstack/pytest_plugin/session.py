"""The session's stack: started (or attached to) before the suite is imported, stopped at the end;
the environment and overrides it exports."""
from __future__ import annotations

import os
import signal
import sys
import threading
import uuid
from collections.abc import MutableMapping
from typing import Any

import pytest

from ..endpoints import Endpoints
from ..shared.errors import SimstackError
from ..shared.constants import DEFAULT_EMAIL, LOOPBACK_HOSTS
from .options import Options, _child, _import_for_override, _usage, load_scenario_faults, read_options


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
                from ..redirect import Redirection
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
        from ..stack import Stack
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
        from ..stack import Stack
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


def _active(config: pytest.Config) -> SimstackSession | None:
    s = config.stash.get(_SESSION, None)
    return s if s is not None and s.faults is not None else None


def _record_timeline(config: pytest.Config, session: SimstackSession, ns: Any) -> None:
    """Read the timeline after every test when a report or pytest-html extras want it."""
    html_extras = bool(getattr(ns, "htmlpath", None)) and config.pluginmanager.hasplugin("html")
    if not (session.options.report or (html_extras and session.faults is not None)):
        return
    from pathlib import Path
    from ..pytest_report import ReportPlugin
    path = Path(session.options.report).expanduser().resolve() if session.options.report else None
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    config.pluginmanager.register(ReportPlugin(session, path, html_extras, worker), "simstack-report")
