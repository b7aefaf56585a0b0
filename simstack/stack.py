"""``Stack``: the way in for code, the CLI and the pytest plugin.

    with Stack(mode="local", profile="fast") as stack:
        stack.faults.add("race_on_accept")
        ... point a client at stack.endpoints.ws_url ...

A stack is Toxiproxy in front of the api and auth stand-ins. A launcher (local
processes or Docker containers) starts the parts; the Stack wires the proxies,
waits until every endpoint answers through them, and drives faults.
"""
from __future__ import annotations

import atexit
import secrets
import signal
import threading
import time
import uuid
from typing import Any, Iterable

import httpx

from .endpoints import Endpoints
from .fault_control import FaultControl
from .services import PROXIES
from .shared.constants import (ADMIN_HEADER, ADMIN_PREFIX, DEFAULT_EMAIL, DEV_JWT_SECRET, ENV_ADMIN_KEY,
                               ENV_AUTH_POLICY, ENV_BYPASS_KEY, ENV_JWT_SECRET, ENV_PROFILE, ENV_STACK_ID,
                               INTERNAL_HEADER, MODES, PROFILES)
from .shared.errors import ConfigError, SimstackError, StartError
from .toxiproxy import Toxiproxy
from .wait import NotReady, UntilAnswers


def launcher_class(mode: str):
    """The launcher of ``local`` or ``docker`` mode."""
    if mode == "local":
        from .launchers.local import LocalLauncher
        return LocalLauncher
    if mode == "docker":
        from .launchers.docker import DockerLauncher
        return DockerLauncher
    raise ConfigError(f"unknown mode {mode!r}", f"use one of {', '.join(MODES)}")


def _launcher(mode: str):
    return launcher_class(mode)()


def resolve_mode(mode: str) -> tuple[str, str | None]:
    """``auto`` is docker when an engine answers and the images exist, else local; says why."""
    if mode != "auto":
        return mode, None
    try:
        from .launchers.docker import engine_problem
        problem = engine_problem()
    except ImportError as exc:
        problem = f"docker support not importable ({exc})"
    if problem is None:
        return "docker", None
    return "local", f"--mode auto: using local mode because {problem}"


class Stack:
    def __init__(self, mode: str = "local", profile: str = "staging", ports: dict[str, int] | None = None,
                 toxiproxy_port: int = 0, auth_policy: str = "lenient", jwt_secret: str | None = None,
                 bypass_key: str | None = None, startup_timeout: float = 30.0, own: Iterable = (),
                 cassette=None):
        """``jwt_secret``: the HS256 secret the stand-ins sign and verify with. Unset, strict mode gets a
        random one per stack (so nobody can forge a token it accepts) and lenient mode the public
        ``simstack-dev-secret``."""
        if mode not in MODES:
            raise ConfigError(f"mode {mode!r} is not a mode", f"use one of {', '.join(MODES)}")
        if profile not in PROFILES:
            raise ConfigError(f"profile {profile!r} is not a profile", f"use one of {', '.join(PROFILES)}")
        if auth_policy not in ("lenient", "strict"):
            raise ConfigError(f"auth policy {auth_policy!r} is unknown", "use lenient or strict")
        unknown = set(ports or {}) - {p.name for p in PROXIES if not p.control}
        if unknown:
            raise ConfigError(f"no endpoint named {', '.join(sorted(unknown))}", "ports are for api, ws and auth")
        self.own = {s.name: s for s in own}   # services of yours replacing stand-ins (simstack.own)
        self.cassette = cassette              # simstack.recording: Record/ReplayOptions, for the gateways
        from .own import mode_for
        needed = mode_for(self.own.values(), mode)
        self.mode, self.mode_note = (needed, None) if needed else resolve_mode(mode)
        self.profile = profile
        self.ports = dict(ports or {})
        self.toxiproxy_port = toxiproxy_port
        if jwt_secret is None:
            jwt_secret = secrets.token_urlsafe(32) if auth_policy == "strict" else DEV_JWT_SECRET
        self.auth_policy, self.jwt_secret, self.bypass_key = auth_policy, jwt_secret, bypass_key
        self.startup_timeout = startup_timeout
        self.id = uuid.uuid4().hex[:10]
        self.endpoints: Endpoints | None = None
        self.launcher = None
        self.faults: FaultControl | None = None
        self.startup_s: float | None = None
        self.upstreams: dict[str, str] = {}   # service -> host:port as Toxiproxy reaches it (bypasses faults)
        self.record: dict = {}                # an attached stack's record (simstack.state); {} if started here

    @property
    def attached(self) -> bool:
        """A handle on a stack another process runs (its ``stop()`` leaves it running)."""
        return bool(self.record)

    @classmethod
    def attach(cls, stack_id: str | None = None) -> "Stack":
        """A handle on a running stack started elsewhere (``simstack up --detach``, another session):
        the only one, or the one with ``stack_id``. Same endpoints, faults, token() and timeline as a
        stack started here; its ``stop()`` leaves the stack running."""
        from . import state
        rec = state.find_record(stack_id)
        stack = cls(mode=rec["mode"] if rec["mode"] in MODES else "local", profile=rec["profile"],
                    auth_policy=rec.get("auth_policy", "lenient"), jwt_secret="", bypass_key=rec.get("bypass_key"))
        stack.id, stack.mode = rec["id"], rec["mode"]
        stack.jwt_secret = None   # the stand-ins know it; nothing on this side needs it
        stack.startup_s, stack.record = rec.get("startup_s"), rec
        stack.endpoints = Endpoints.from_dict(rec["endpoints"])
        stack.faults = FaultControl(stack.endpoints)
        return stack

    # -------------------------------------------------------------- lifecycle
    def start(self) -> "Stack":
        t0 = time.perf_counter()
        from . import state
        state.reap()   # what killed runs left (their temporary directories, stale records)
        admin_key = secrets.token_hex(16)
        env = {ENV_PROFILE: self.profile, ENV_ADMIN_KEY: admin_key, ENV_JWT_SECRET: self.jwt_secret,
               ENV_AUTH_POLICY: self.auth_policy, ENV_STACK_ID: self.id}
        if self.bypass_key:
            env[ENV_BYPASS_KEY] = self.bypass_key
        if self.cassette is not None:
            env.update(self.cassette.env())
        from .launchers.base import LaunchSpec
        atexit.register(self.stop)
        signals = _StartSignals()
        try:
            signals.install()
            self.launcher = _launcher(self.mode)
            launched = self.launcher.start(LaunchSpec(self.id, env, self.ports, self.toxiproxy_port, self.own,
                                                      self.startup_timeout))
            self.upstreams = launched.upstreams
            urls = self._create_proxies(Toxiproxy(launched.toxiproxy_url), launched)
            self.endpoints = Endpoints(
                api_url=urls["api"], ws_url=urls["ws"].replace("http://", "ws://") + "/ws", auth_url=urls["auth"],
                toxiproxy_url=launched.toxiproxy_url, api_control_url=urls["api_control"],
                auth_control_url=urls["auth_control"], admin_key=admin_key)
            self.faults = FaultControl(self.endpoints)
            self._wait_ready()
            self.faults.publish_urls()
            signals.check()
        except BaseException:
            self.stop()
            raise
        finally:
            signals.restore()
        self.startup_s = time.perf_counter() - t0
        return self

    def _create_proxies(self, toxi: Toxiproxy, launched) -> dict[str, str]:
        urls = {}
        try:
            for p in PROXIES:
                listen = self.launcher.proxy_listen(p.name, self.ports.get(p.name, 0))
                created = toxi.create_proxy(p.name, listen, launched.upstreams[p.upstream])
                urls[p.name] = f"http://127.0.0.1:{self.launcher.host_port(p.name, created['listen'])}"
        finally:
            toxi.close()
        return urls

    def _wait_ready(self) -> None:
        """Every endpoint answers through its own proxy."""
        e = self.endpoints
        pending = {"api": e.api_url, "ws": e.ws_url.replace("ws://", "http://")[:-3], "auth": e.auth_url,
                   "api_control": e.api_control_url, "auth_control": e.auth_control_url}

        def processes_alive() -> None:
            dead = [n for n, ok in getattr(self.launcher, "alive", lambda: {})().items() if not ok]
            if dead:
                raise StartError(f"the {dead[0]} process exited during start-up; its log ends: "
                                 f"{self.launcher.logs(dead[0]).strip()[-600:]}",
                                 "the log above says why (start-up logs are removed with the failed stack)")

        try:
            UntilAnswers(self.startup_timeout, headers={ADMIN_HEADER: e.admin_key}).wait(
                {name: f"{url}{ADMIN_PREFIX}/ping" for name, url in pending.items()}, check=lambda _last: processes_alive())
        except NotReady as exc:
            raise StartError(f"endpoints not ready after {self.startup_timeout:.0f} s: {exc}",
                             "is the machine overloaded? raise startup_timeout, or run `simstack up` to watch it start"
                             ) from None

    def stop(self) -> None:
        """Stop what this process started; an attached stack keeps running (only the handle closes)."""
        launcher, self.launcher = self.launcher, None
        if self.faults is not None:
            self.faults.close()
        if launcher is not None:
            launcher.stop()
        atexit.unregister(self.stop)

    def __enter__(self) -> "Stack":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -------------------------------------------------------------- conveniences
    def token(self, email: str = DEFAULT_EMAIL) -> str:
        return mint_token(self.endpoints, email, self.bypass_key)

    def timeline(self, label: str | None = None) -> list[dict]:
        """What each request and connection went through (optionally only those of ``label``)."""
        return self.faults.timeline(label=label)[0]


class _StartSignals:
    """While a stack starts (main thread only), SIGINT, and SIGTERM left at its default, raise
    KeyboardInterrupt so the start stops what it started. A signal handled where Python ignores
    exceptions, such as logging's at-fork callback inside ``subprocess.Popen``, is remembered and
    raised by ``check()``: without it, a Ctrl-C landing there was lost and the start went on."""

    def __init__(self):
        self.received: int | None = None
        self._saved: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            old = signal.getsignal(sig)
            if old is signal.SIG_IGN or old is None or (sig == signal.SIGINT and old is signal.SIG_DFL):
                continue   # ignored, not ours to change
            self._saved[sig] = old
            signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        self.received = signum
        old = self._saved.get(signum)
        if callable(old) and old is not signal.default_int_handler:
            old(signum, frame)   # the caller's own handler (e.g. the CLI's or the plugin's) has its say first
        raise KeyboardInterrupt(f"signal {signum} during start-up")

    def check(self) -> None:
        if self.received is not None:
            raise KeyboardInterrupt(f"signal {self.received} during start-up")

    def restore(self) -> None:
        saved, self._saved = self._saved, {}
        for sig, old in saved.items():
            signal.signal(sig, old)


def mint_token(endpoints: Endpoints, email: str = DEFAULT_EMAIL, bypass_key: str | None = None) -> str:
    """A token from the auth service's /auth/e2e/test-auth (via the control proxy, so faults can't block
    it). The service is the auth stand-in, or your own auth service in its place: errors say "the auth
    service" and an answer without a token string is reported, not trusted."""
    url = f"{endpoints.auth_control_url}/auth/e2e/test-auth"
    try:
        r = httpx.post(url, trust_env=False, timeout=10,
                       headers={"X-E2E-Bypass-Key": bypass_key or "simstack-e2e", INTERNAL_HEADER: "token"},
                       json={"email": email, "name": "E2E Test User", "permissions": ["read", "write"]})
    except httpx.HTTPError as exc:
        raise SimstackError(f"the auth service did not answer POST {url}: {exc or exc.__class__.__name__}",
                            "is the stack still running? `simstack status`") from None
    if r.status_code == 401:
        raise SimstackError(f"the auth service refused the bypass key for a token: {r.text.strip()[:200]}",
                            "the stack was started with --bypass-key; give the same key (SIMSTACK_BYPASS_KEY)")
    if r.status_code != 200:
        raise SimstackError(f"the auth service answered HTTP {r.status_code} for a token: {r.text.strip()[:200]}",
                            "is a fault active on auth? `simstack fault ls`")
    try:
        token = r.json().get("access_token")
    except (ValueError, AttributeError):
        token = None
    if not isinstance(token, str) or not token:
        raise SimstackError(f"the auth service answered POST {url} without an access_token string: "
                            f"{r.text.strip()[:200]!r}",
                            "your auth service must answer /auth/e2e/test-auth as CONTRACT.md describes "
                            "({\"access_token\": ...})")
    return token
