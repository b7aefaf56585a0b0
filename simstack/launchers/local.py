"""Local mode: the stand-ins and the real Toxiproxy as processes on 127.0.0.1.

The stand-ins get pre-bound sockets (uvicorn ``--fd``), so there is no window
in which another process can take their port. Every child gets
PR_SET_PDEATHSIG, so they die with the process that started them, even when
that process is SIGKILLed; and a mark in its environment that its own children
inherit (:mod:`lineage`), so what they start is found and ended too.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


from .. import lineage, resources
from ..shared.errors import PortInUse, SimstackError, StartError
from ..services import PROXIES, STANDINS, TOXIPROXY_PORT_OPTION, port_option, toxiproxy_env
from ..shared.constants import ENV_BYPASS_KEY, ENV_CLI_BYPASS_KEY, ENV_JWT_SECRET
from ..state import owner_mark, private_tempdir
from ..wait import NotReady, UntilAnswers
from .base import LaunchSpec, Launched

ROOT = Path(__file__).resolve().parents[2]
_PR_SET_PDEATHSIG = 1
SECRET_ENV = (ENV_BYPASS_KEY, ENV_JWT_SECRET, ENV_CLI_BYPASS_KEY)
_RUN_BY_HAND = "the log above says why; `python -m simstack.fakes.serve simstack.fakes.api:app --port 8000` runs a stand-in by hand"


def _die_with(parent: int):
    """preexec_fn: SIGTERM this child when ``parent`` dies, and exit at once if it already has (a parent
    SIGKILLed between fork and prctl would otherwise leave the child running for good)."""
    def preexec() -> None:
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        except OSError:
            pass
        if os.getppid() != parent:
            os._exit(1)
    return preexec


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    """Every child runs in its own session (start_new_session), so its group is its pid."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


GET_TOXIPROXY = (f"run `simstack install-toxiproxy` (builds it with Go >= 1.23 into {resources.bin_dir()}; "
                 "`make toxiproxy` in a checkout), put toxiproxy-server v2.12.0 on PATH, or set SIMSTACK_TOXIPROXY_BIN")


def find_toxiproxy() -> str:
    """$SIMSTACK_TOXIPROXY_BIN, else where `simstack install-toxiproxy` puts it (a checkout's bin/), else PATH."""
    explicit = os.environ.get("SIMSTACK_TOXIPROXY_BIN")
    if explicit:
        if os.access(explicit, os.X_OK):
            return explicit
        raise StartError(f"SIMSTACK_TOXIPROXY_BIN={explicit!r} is not an executable file",
                         "point it at toxiproxy-server v2.12.0, or unset it to use "
                         f"{resources.bin_dir()} or PATH (`simstack install-toxiproxy`; `make toxiproxy` in a checkout)")
    for c in (str(resources.bin_dir() / "toxiproxy-server"), shutil.which("toxiproxy-server")):
        if c and os.access(c, os.X_OK):
            return c
    raise StartError("the Toxiproxy server binary (toxiproxy-server v2.12.0) was not found", GET_TOXIPROXY)


def bind(port: int, option: str, host: str = "127.0.0.1") -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((host, port))
    except OSError:
        s.close()
        raise PortInUse(host, port, option) from None
    return s


def check_free(port: int, option: str) -> None:
    if port:
        bind(port, option).close()


class _Exited(Exception):
    pass


class LocalLauncher:
    mode = "local"

    def __init__(self, log_dir: str | None = None):
        self._owns_log_dir = log_dir is None   # a temporary one goes away with the stack
        self.log_dir = Path(log_dir) if log_dir else private_tempdir()
        self.mark = f"{owner_mark()} {self.log_dir.name}"   # each process of this stack carries it
        self.procs: dict[str, subprocess.Popen] = {}
        self.attached_to: str | None = None   # the id of a stack another process runs (see attach)

    @classmethod
    def attach(cls, record: dict) -> "LocalLauncher":
        """The launcher of a running stack that another process started (its record): for its logs."""
        launcher = cls(log_dir=record["log_dir"])
        launcher.attached_to = record["id"]
        return launcher

    def _spawn(self, name: str, argv: list[str], env: dict, pass_fds=(), cwd=ROOT) -> None:
        log = open(self.log_dir / f"{name}.log", "ab")
        try:
            self.procs[name] = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**env, lineage.ENV_OWNER: self.mark},
                pass_fds=pass_fds, cwd=cwd, start_new_session=True, preexec_fn=_die_with(os.getpid()))
        finally:
            log.close()

    def start(self, spec: LaunchSpec) -> Launched:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        binary = find_toxiproxy()
        for proxy in PROXIES:
            check_free(spec.ports.get(proxy.name, 0), port_option(proxy.name))
        try:
            upstreams = {}
            # Secrets reach the children only through the stack's own environment (never argv, and
            # never one inherited from the user's shell that the stack did not choose).
            inherited = {k: v for k, v in os.environ.items() if k not in SECRET_ENV}
            env = {**inherited, **spec.env, "PYTHONDONTWRITEBYTECODE": "1"}
            for svc in STANDINS:
                if svc.name in spec.own:
                    continue
                sock = bind(0, "")
                upstreams[svc.name] = f"127.0.0.1:{sock.getsockname()[1]}"
                self._spawn(svc.name, [sys.executable, *svc.command(0, fd=sock.fileno())], env, (sock.fileno(),))
                sock.close()
            url = self._start_toxiproxy(binary, spec.toxiproxy_port, env)
            self._check_alive()
            if spec.own:
                from ..own import start_local
                upstreams.update(start_local(self, spec.own, url, env, spec.startup_timeout, upstreams))
        except BaseException:
            self.stop()
            raise
        return Launched(toxiproxy_url=url, upstreams=upstreams)

    def _start_toxiproxy(self, binary: str, wanted: int, env: dict) -> str:
        for _attempt in range(3):
            port = wanted
            if not port:
                with bind(0, "") as s:
                    port = s.getsockname()[1]
            else:
                check_free(port, TOXIPROXY_PORT_OPTION)
            self._spawn("toxiproxy", [binary, "-host", "127.0.0.1", "-port", str(port)], {**env, **toxiproxy_env()})
            url = f"http://127.0.0.1:{port}"
            try:
                UntilAnswers(10, interval=0.01, request_timeout=0.5).wait(
                    {"toxiproxy": f"{url}/version"}, check=lambda _last: self._toxiproxy_running())
                return url
            except (NotReady, _Exited):
                if wanted:
                    break
        raise StartError(f"Toxiproxy did not start; its log ends: {self.logs('toxiproxy').strip()[-400:]}",
                         "check that the port is free and the binary is toxiproxy-server v2.12.0 (`make toxiproxy`)")

    def _toxiproxy_running(self) -> None:
        if self.procs["toxiproxy"].poll() is not None:
            raise _Exited   # e.g. lost the race for a free port: another attempt picks another

    def _check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise StartError(f"the {name} process exited with code {proc.returncode}; its log ends: "
                                 f"{self.logs(name).strip()[-600:]}", _RUN_BY_HAND)

    def proxy_listen(self, proxy: str, wanted_port: int) -> str:
        return f"127.0.0.1:{wanted_port}"

    def host_port(self, proxy: str, listen: str) -> int:
        return int(listen.rsplit(":", 1)[1])

    def alive(self) -> dict[str, bool]:
        return {name: p.poll() is None for name, p in self.procs.items()}

    def logs(self, service: str) -> str:
        """A service's log; "" while it has none, or an error naming the file for an attached stack."""
        path = self.log_dir / f"{service}.log"
        if path.exists():
            return path.read_text(errors="replace")
        if self.attached_to:
            raise SimstackError(f"stack {self.attached_to} has no {service} log at {path}",
                                "is the stack still running? `simstack status`")
        return ""

    def stop(self) -> None:
        procs, self.procs = list(self.procs.values()), {}
        for p in procs:
            if p.poll() is None:
                _signal_group(p, signal.SIGTERM)   # the group: a command of yours may have children
        deadline = time.monotonic() + 3
        for p in procs:
            try:
                p.wait(timeout=max(0.05, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(p, signal.SIGKILL)
                p.wait()
        if procs:
            self._end_descendants({p.pid for p in procs}, deadline)
        if self._owns_log_dir:
            shutil.rmtree(self.log_dir, ignore_errors=True)

    def _end_descendants(self, groups: set[int], deadline: float) -> None:
        """What a child started and left behind: a process that outlived its group's leader, or one
        in a session or group of its own (``setsid``, a daemon), which no killpg above reached."""
        ours = self.mark.__eq__
        left = lineage.marked(ours)
        if left:
            lineage.end(left, ours, max(0.05, deadline - time.monotonic()),
                        termed={pid for pid in left if _group_of(pid) in groups})


def _group_of(pid: int) -> int:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return -1


def install_toxiproxy(bin_dir: Path | None = None) -> Path:
    """Build toxiproxy-server (and -cli) v2.12.0 with Go into ``bin_dir`` with the shipped script; idempotent."""
    target = bin_dir or resources.bin_dir()
    script = resources.shipped("scripts") / "install-toxiproxy.sh"
    proc = subprocess.run(["bash", str(script)], env={**os.environ, "SIMSTACK_BIN_DIR": str(target)})
    if proc.returncode:
        raise StartError(f"building Toxiproxy into {target} failed (exit {proc.returncode}; the output above says why)",
                         "install Go >= 1.23 (e.g. apt-get install golang), or put toxiproxy-server v2.12.0 on PATH")
    return target / "toxiproxy-server"
