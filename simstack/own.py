"""Your own service in the stack, in place of a stand-in, behind the gateway (:mod:`fakes.gateway`).

    suite -> Toxiproxy listener (network faults) -> gateway (protocol faults) -> your service
                                                                                  |
    your service -> Toxiproxy listener `dep:NAME` (network faults) -> its dependency NAME

A service is either a command simstack runs (``--api-cmd 'uvicorn myapp:app --port {port}'``,
local mode) or one already running (``--api-url http://127.0.0.1:9000``). It declares what it
calls (``--api-dep redis=127.0.0.1:6379``); simstack puts a Toxiproxy listener in front of each
dependency and hands the service the listener's address through environment templates
(``--api-env REDIS_URL=redis://{dep.redis}``), so ``fault add latency --target dep:redis`` slows
the service's link to it. A dependency may also be the other service of the stack (``--api-dep
auth=auth``): its listener then leads to that service's own upstream (its stand-in, or the gateway
in front of yours), not through the suite's ``auth`` proxy, so each link has its own faults.

In docker mode an image is handed ``toxiproxy:PORT`` (Toxiproxy's container, on the stack's
network); a dependency on this machine (``127.0.0.1``, ``localhost``) is dialled from there as
``host.docker.internal`` (the engine's host gateway), so it must listen on an address containers
reach. Each dependency is checked from the stack's network before the image starts.
"""
from __future__ import annotations

import os
import re
import socket
import string
import subprocess
import sys
from dataclasses import dataclass, field
from types import SimpleNamespace

import httpx

from .shared.errors import ConfigError, StartError
from .services import GATEWAY_PROTOCOLS
from .shared.faults import DEP_PREFIX
from .wait import NotReady, UntilAnswers

SERVICES = ("api", "auth")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_ADDRESS = re.compile(r"^[A-Za-z0-9.\-]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$")
GATEWAY_APP = "simstack.fakes.gateway:from_env"
HOST_ALIAS = "host.docker.internal"   # this machine, as containers reach it (the engine's host gateway)
_THIS_HOST = re.compile(r"^(127\.[0-9.]+|localhost|0\.0\.0\.0|\[::1?\])$")


@dataclass(frozen=True)
class OwnService:
    """A service of yours in place of the ``name`` stand-in (``api`` or ``auth``)."""
    name: str
    url: str | None = None            # a service already running
    cmd: str | None = None            # a command simstack runs; {port} and {dep.NAME} filled in
    health: str = "/health"
    deps: dict = field(default_factory=dict)   # dependency name -> host:port it really lives at
    env: dict = field(default_factory=dict)    # VAR -> template ({port}, {dep.NAME})
    image: str | None = None          # an image in the local engine (docker mode; never pulled)
    port: int = 8000                  # the port the image's service listens on ({port} for an image)
    cwd: str | None = None            # where the command runs (None: the current directory); a stack file's: its own

    def __post_init__(self) -> None:
        opt = f"--{self.name}"
        if self.name not in SERVICES:
            raise ConfigError(f"no service named {self.name!r} can be replaced", f"use one of {', '.join(SERVICES)}")
        if sum(x is not None for x in (self.url, self.cmd, self.image)) != 1:
            raise ConfigError(f"{self.name}: give exactly one of {opt}-url, {opt}-cmd and {opt}-image",
                              f"{opt}-url http://127.0.0.1:9000 (already running), "
                              f"{opt}-cmd 'uvicorn myapp:app --port {{port}}' (simstack runs it) or "
                              f"{opt}-image myorg/backend:fix (docker mode)")
        if self.url is not None and (self.deps or self.env):
            raise ConfigError(f"{opt}-dep/{opt}-env with {opt}-url: a service already running cannot be handed "
                              "the addresses of its dependencies' listeners",
                              f"let simstack run it with {opt}-cmd, so its environment carries them")
        if not 0 < self.port < 65536:
            raise ConfigError(f"{opt}-image-port {self.port!r} is not a port", "e.g. 8000")
        if self.url is not None:
            u = httpx.URL(self.url)
            if u.scheme not in ("http", "https") or not u.host or u.path not in ("", "/"):
                raise ConfigError(f"{opt}-url {self.url!r} is not an http(s)://host:port URL without a path",
                                  "e.g. http://127.0.0.1:9000")
        if not self.health.startswith("/"):
            raise ConfigError(f"{opt}-health {self.health!r} is not a path", "e.g. /health")
        for dep, address in self.deps.items():
            if not _NAME.match(dep):
                raise ConfigError(f"{opt}-dep: {dep!r} is not a dependency name",
                                  "lower-case letters, digits and _, starting with a letter, e.g. redis")
            if address not in SERVICES and not _ADDRESS.match(address):
                raise ConfigError(f"{opt}-dep {dep}={address!r}: not a host:port nor a service of the stack",
                                  f"e.g. redis=127.0.0.1:6379, or auth=auth ({' or '.join(SERVICES)})")
        fake = {d: "127.0.0.1:1" for d in self.deps}
        for var, template in self.env.items():
            self.render(template, 1, fake, f"{opt}-env {var}")
        if self.cmd is not None:
            self.render(self.cmd, 1, fake, f"{opt}-cmd")

    def render(self, template: str, port: int, deps: dict, where: str = "template") -> str:
        """Fill ``{port}`` and ``{dep.NAME}``; a name that is neither is a usage error."""
        for _text, fieldname, _spec, _conv in string.Formatter().parse(template):
            if fieldname is None:
                continue
            head, _, dep = fieldname.partition(".")
            if fieldname == "port":
                continue
            if head != "dep" or not dep:
                raise ConfigError(f"{where}: {{{fieldname}}} is not a template name",
                                  "templates are {port} and {dep.NAME}; write literal braces as {{ and }}")
            if dep not in deps:
                declared = ", ".join(sorted(deps)) or "none"
                raise ConfigError(f"{where}: {{{fieldname}}} names no dependency of {self.name} "
                                  f"(declared: {declared})",
                                  f"declare it with --{self.name}-dep {dep}=HOST:PORT")
        return template.format(port=port, dep=SimpleNamespace(**deps))


def declared(services) -> dict[str, tuple[OwnService, str]]:
    """Each dependency name once, with the first service declaring it and its address (both services
    may declare one; :func:`mode_for` refused one name at two addresses): one listener per name."""
    out: dict[str, tuple[OwnService, str]] = {}
    for svc in services:
        for dep, address in svc.deps.items():
            out.setdefault(dep, (svc, address))
    return out


def dep_listeners(toxiproxy_url: str, services, upstream, check, listen_host: str,
                  handed_host: str | None = None) -> dict[str, str]:
    """Check that every dependency given as host:port accepts connections (``check``), then create its
    listener ``dep:NAME`` towards ``upstream(address)``. Returns name -> the address services are handed
    (the listener's, or ``handed_host`` with its port: docker mode's ``toxiproxy``)."""
    from .toxiproxy import Toxiproxy
    found = declared(services)
    for dep, (svc, address) in found.items():
        if address not in SERVICES:      # a service of the stack is simstack's to start and wait for
            check(svc, dep, address)
    toxi = Toxiproxy(toxiproxy_url)
    try:
        out = {}
        for dep, (_svc, address) in found.items():
            listen = toxi.create_proxy(f"{DEP_PREFIX}{dep}", f"{listen_host}:0", upstream(address))["listen"]
            out[dep] = f"{handed_host}:{listen.rpartition(':')[2]}" if handed_host else listen
        return out
    finally:
        toxi.close()


def on_this_host(address: str) -> bool:
    return bool(_THIS_HOST.match(address.rpartition(":")[0]))


def mode_for(services, mode: str) -> str | None:
    """The mode services of your own need (None: any); ConfigError when ``mode`` cannot run them or
    they contradict each other (one dependency name at two addresses)."""
    images = [s for s in services if s.image is not None]
    processes = [s for s in services if s.image is None]
    if images and processes:
        raise ConfigError("services of your own mix an image with a command or URL",
                          "an image runs in docker mode, a command or URL in local mode: use one kind")
    if processes and mode == "docker":
        raise ConfigError("a service of your own given by --api-url/--api-cmd (or --auth-…) runs in local mode only",
                          "use --mode local (or auto), or give it as an image (--api-image) for docker mode")
    declared: dict[str, str] = {}
    for svc in services:
        for dep, address in svc.deps.items():
            if declared.setdefault(dep, address) != address:
                raise ConfigError(f"dependency {dep} is declared at {declared[dep]} and at {address}",
                                  "give the two dependencies different names")
    if images and mode == "local":
        raise ConfigError(f"--{images[0].name}-image {images[0].image} runs in docker mode", "use --mode docker (or auto)")
    return "docker" if images else "local" if processes else None


def _pairs(values: list[str] | None, option: str) -> dict[str, str]:
    out = {}
    for item in values or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{option} {item!r} is not NAME=VALUE", f"e.g. {option} redis=127.0.0.1:6379")
        out[key] = value
    return out


def add_options(parser, file_help: str = "and redirect: lines served like --redirect") -> None:
    """Options for services of your own (``simstack up``, ``simstack scenario run``)."""
    parser.add_argument("-f", "--file", dest="stack_file", metavar="FILE",
                        help="a stack file (simstack.yaml) naming services of your own, their dependencies and env, "
                             + file_help)
    for name in SERVICES:
        g = parser.add_argument_group(f"your own {name} service (replaces the {name} stand-in)")
        g.add_argument(f"--{name}-url", help="a service already running, e.g. http://127.0.0.1:9000")
        g.add_argument(f"--{name}-cmd", help="a command simstack runs, e.g. 'uvicorn myapp:app --port {port}'")
        g.add_argument(f"--{name}-image", help="an image in the local engine (docker mode; never pulled)")
        g.add_argument(f"--{name}-image-port", type=int, default=8000,
                       help="the port the image's service listens on (default 8000)")
        g.add_argument(f"--{name}-health", default="/health", help="its health path (default /health)")
        g.add_argument(f"--{name}-dep", action="append", metavar="NAME=HOST:PORT|SERVICE",
                       help="a dependency it calls, at HOST:PORT or a service of this stack (e.g. auth=auth); "
                            "reached through Toxiproxy (fault target dep:NAME)")
        g.add_argument(f"--{name}-env", action="append", metavar="VAR=TEMPLATE",
                       help="environment for the command, e.g. REDIS_URL=redis://{dep.redis}")


def from_args(args) -> list[OwnService]:
    out = []
    if getattr(args, "stack_file", None):
        from .stackfile import load
        out = load(args.stack_file)
    for name in SERVICES:
        url, cmd = getattr(args, f"{name}_url", None), getattr(args, f"{name}_cmd", None)
        image = getattr(args, f"{name}_image", None)
        deps, env = getattr(args, f"{name}_dep", None), getattr(args, f"{name}_env", None)
        if url is None and cmd is None and image is None:
            if deps or env:
                raise ConfigError(f"--{name}-dep/--{name}-env without --{name}-cmd, --{name}-image or --{name}-url",
                                  f"they describe a service of your own: add --{name}-cmd or --{name}-image")
            continue
        if any(s.name == name for s in out):
            raise ConfigError(f"the {name} service is described twice: in {args.stack_file} and by --{name}-url/--{name}-cmd",
                              "keep one of them")
        out.append(OwnService(name, url=url, cmd=cmd, image=image, port=getattr(args, f"{name}_image_port", 8000),
                              health=getattr(args, f"{name}_health", "/health"),
                              deps=_pairs(deps, f"--{name}-dep"), env=_pairs(env, f"--{name}-env")))
    return out


def to_argv(args) -> list[str]:
    """The options again, for the detached `simstack up`."""
    argv = ["--file", os.path.abspath(args.stack_file)] if getattr(args, "stack_file", None) else []
    for name in SERVICES:
        for opt in ("url", "cmd", "health", "image", "image_port"):
            value = getattr(args, f"{name}_{opt}", None)
            if value is not None:
                argv += [f"--{name}-{opt.replace('_', '-')}", str(value)]
        for opt in ("dep", "env"):
            for value in getattr(args, f"{name}_{opt}", None) or ():
                argv += [f"--{name}-{opt}", value]
    return argv


# ------------------------------------------------------------------ starting them (local mode)

def _tail(text: str, n: int = 600) -> str:
    text = text.strip()
    return ("..." + text[-n:]) if len(text) > n else (text or "(empty)")


def exit_error(svc: OwnService, code: int | None, when: str, log) -> StartError:
    """Your command or image exited: its code, when, the end of its log, and how to run it by hand."""
    what = "command" if svc.image is None else f"image {svc.image}"
    return StartError(f"your {svc.name} {what} exited with code {code} {when}; its log ends: {_tail(log())}",
                      f"run it by hand to see why: {svc.cmd or f'docker run --rm {svc.image}'}")


def wait_healthy(svc: OwnService, base_url: str, timeout: float, proc: subprocess.Popen | None = None,
                 log=lambda: "") -> None:
    """Poll the health URL until it answers below 500; say why not (last error, log tail) otherwise."""
    url = f"{base_url.rstrip('/')}{svc.health}"

    def exited(last: dict[str, str]) -> None:
        if proc is not None and proc.poll() is not None:
            raise exit_error(svc, proc.returncode, f"before {url} answered (last error: {last['health']})", log)

    try:
        UntilAnswers(timeout, interval=0.05, request_timeout=2.0,
                     ready=lambda r: r.status_code < 500).wait({"health": url}, check=exited)
    except NotReady as exc:
        last = exc.last["health"]
        if proc is None:
            raise StartError(f"your {svc.name} service at {svc.url} did not answer {url} within "
                             f"{timeout:.0f} s (last error: {last})",
                             f"start it first, or fix --{svc.name}-url / --{svc.name}-health") from None
        raise StartError(f"your {svc.name} {'command' if svc.image is None else 'image'} never became "
                         f"healthy at {url} within {timeout:.0f} s "
                         f"(last error: {last}); its log ends: {_tail(log())}",
                         f"check that it listens on {{port}} and serves {svc.health}, "
                         f"or set --{svc.name}-health") from None


def gateway_argv(fd: int | None = None, port: int = 8000) -> list[str]:
    """The gateway as uvicorn serves it (after ``python3``): on an inherited socket (local mode, see
    fakes/serve.py), or on 0.0.0.0:``port`` (in a container)."""
    bind = ["-m", "simstack.fakes.serve", GATEWAY_APP, "--fd", str(fd)] if fd is not None else \
        ["-m", "uvicorn", GATEWAY_APP, "--host", "0.0.0.0", "--port", str(port)]
    return [*bind, "--factory", "--log-level", "warning", "--no-access-log", "--no-server-header",
            "--no-date-header", *GATEWAY_PROTOCOLS, "--ws-ping-interval", "20", "--ws-ping-timeout", "20",
            "--timeout-graceful-shutdown", "1"]


def gateway_env(svc: OwnService, upstream_url: str) -> dict[str, str]:
    from simstack.fakes.gateway import ENV_TARGETS, ENV_UPSTREAM
    return {ENV_UPSTREAM: upstream_url, ENV_TARGETS: "api,ws" if svc.name == "api" else "auth"}


def command_argv(svc: OwnService, port: int, deps: dict) -> list[str]:
    """``sh -c`` the command; a simple one is exec'd, so it is the child that dies with simstack."""
    cmd = svc.render(svc.cmd, port, deps, f"--{svc.name}-cmd")
    first = cmd.split(maxsplit=1)[0] if cmd.strip() else ""
    simple = "=" not in first and not any(c in cmd for c in ";&|\n()`$<>")
    return ["/bin/sh", "-c", f"exec {cmd}" if simple else cmd]


def command_env(svc: OwnService, port: int, deps: dict) -> dict[str, str]:
    """A service's own environment, for a command or an image's container: ``$PORT`` and its templates
    filled in (``{port}``: the port it listens on; ``{dep.NAME}``: the listener it is handed)."""
    env = {"PORT": str(port)}
    env.update({var: svc.render(t, port, deps, f"--{svc.name}-env {var}") for var, t in svc.env.items()})
    return env


def start_local(launcher, services: dict, toxiproxy_url: str, env: dict, timeout: float,
                standins: dict[str, str]) -> dict[str, str]:
    """Start each service of yours (or check the running one), its dependency listeners and its gateway.

    ``standins``: the upstreams of the stand-ins already running. Returns service name -> the
    gateway's ``host:port``, the upstream of the service's proxies. The gateways' sockets are bound
    first, so a dependency on a service of yours (``auth=auth``) has its address before anything runs."""
    from .launchers.local import bind
    socks = {name: bind(0, "") for name in services}
    upstreams = {name: f"127.0.0.1:{s.getsockname()[1]}" for name, s in socks.items()}
    try:
        stack = {**standins, **upstreams}
        listeners = dep_listeners(toxiproxy_url, services.values(), lambda a: stack.get(a, a), check_reachable,
                                  "127.0.0.1")
        for svc in services.values():
            deps = {d: listeners[d] for d in svc.deps}
            if svc.cmd is not None:
                with bind(0, "") as s:
                    port = s.getsockname()[1]
                launcher._spawn(svc.name, command_argv(svc, port, deps), {**os.environ, **command_env(svc, port, deps)},
                                cwd=svc.cwd or os.getcwd())
                base = f"http://127.0.0.1:{port}"
                wait_healthy(svc, base, timeout, launcher.procs[svc.name], lambda name=svc.name: launcher.logs(name))
            else:
                base = svc.url.rstrip("/")
                wait_healthy(svc, base, min(timeout, 5.0))
            sock = socks[svc.name]
            launcher._spawn(f"{svc.name}-gateway", [sys.executable, *gateway_argv(sock.fileno())],
                            {**env, **gateway_env(svc, base)}, (sock.fileno(),))
    finally:
        for sock in socks.values():
            sock.close()
    return upstreams


def check_reachable(svc: OwnService, dep: str, address: str) -> None:
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=2.0).close()
    except OSError as exc:
        raise StartError(f"dependency {dep} of {svc.name} at {address} does not accept connections ({exc})",
                         f"start it first, or fix --{svc.name}-dep {dep}=HOST:PORT") from None


# ------------------------------------------------------------------ docker mode

def host_gateway(services) -> dict:
    """Container options that make this machine reachable as ``host.docker.internal``, for the
    containers that dial dependencies (Toxiproxy) or check them (the gateways), when there are any."""
    return {"extra_hosts": {HOST_ALIAS: "host-gateway"}} if declared(services) else {}


def docker_upstream(address: str, stack: dict[str, str]) -> str:
    """Where Toxiproxy's container dials a dependency: a service of the stack by its alias, this
    machine through the host gateway, anything else as given."""
    if address in stack:
        return stack[address]
    return f"{HOST_ALIAS}:{address.rpartition(':')[2]}" if on_this_host(address) else address


def gateway_container(svc: OwnService, service, stand_in_env: dict, network, labels: dict, prefix: str, extra: dict):
    """The gateway in the stand-ins image under the stand-in's alias (so the proxies need no change),
    forwarding to your image's alias ``<name>-upstream``; key ``<name>-gateway`` as in local mode."""
    from testcontainers.core.container import DockerContainer

    from . import images
    return (DockerContainer(images.standins_image(), network=network, network_aliases=[service.name],
                            env={**stand_in_env, **gateway_env(svc, f"http://{svc.name}-upstream:{svc.port}")})
            .with_name(f"{prefix}-{svc.name}-gateway")
            .with_command(gateway_argv(port=service.container_port))
            .with_kwargs(labels=labels, entrypoint=["python3"], **extra))


def image_container(svc: OwnService, network, labels: dict, prefix: str, deps: dict):
    """Your image (alias ``<name>-upstream``, its port published on 127.0.0.1 for the health wait),
    handed ``deps`` (name -> ``toxiproxy:PORT``); named ``<prefix>-<name>`` for `simstack logs api`."""
    from testcontainers.core.container import DockerContainer
    yours = (DockerContainer(svc.image, env=command_env(svc, svc.port, deps), network=network,
                             network_aliases=[f"{svc.name}-upstream"])
             .with_name(f"{prefix}-{svc.name}").with_kwargs(labels=labels))
    yours.ports[svc.port] = ("127.0.0.1", None)   # docker-py: container port -> (host ip, any host port)
    return yours


# Run in a gateway container (the stand-ins image has python3): can the stack's network reach HOST PORT?
# The alarm bounds name resolution too, which the connect timeout does not.
_PROBE = ("import signal, socket, sys\nsignal.alarm(5)\n"
          "try:\n    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close()\n"
          "except OSError as exc:\n    sys.exit(str(exc) or type(exc).__name__)\n")


def check_reachable_from(containers: dict):
    """A ``check`` for :func:`dep_listeners`: each dependency is tried from the declaring service's
    gateway container, on the stack's network as Toxiproxy is, with the same host gateway."""
    def check(svc: OwnService, dep: str, address: str) -> None:
        dialled = docker_upstream(address, {})
        host, _, port = dialled.rpartition(":")
        gateway = f"{svc.name}-gateway"
        try:
            code, out = containers[gateway].get_wrapped_container().exec_run(
                ["python3", "-c", _PROBE, host.strip("[]"), port])
        except Exception as exc:   # docker.errors.APIError: the gateway exited (its log says why)
            raise StartError(f"could not check dependency {dep} of {svc.name} from the {gateway} container: "
                             f"{str(exc).splitlines()[0]}", f"`simstack logs {gateway}` says why it stopped") from None
        if code == 0:
            return
        why = out.decode(errors="replace").strip().splitlines()[-1:] or ["no answer within 5 s"]
        if dialled != address:
            raise StartError(f"dependency {dep} of {svc.name} at {address} is not reachable from the stack's "
                             f"containers (they dial it as {dialled}: {why[0]})",
                             "a service on this machine must listen on an address containers reach: bind it to "
                             "0.0.0.0 (or the docker0 address) instead of loopback only, or use local mode")
        raise StartError(f"dependency {dep} of {svc.name} at {address} does not accept connections from the "
                         f"stack's containers ({why[0]})", f"start it first, or fix --{svc.name}-dep {dep}=HOST:PORT")
    return check


class _ContainerProcess:
    """What wait_healthy needs of a process (``poll``, ``returncode``), for a container."""

    def __init__(self, container):
        self.container, self.returncode = container, None

    def poll(self) -> int | None:
        self.container.reload()
        if self.container.status in ("exited", "dead"):
            self.returncode = self.container.attrs["State"]["ExitCode"]
        return self.returncode


def wait_healthy_container(svc: OwnService, container, log, timeout: float) -> None:
    """Wait on the image's published port; an image that exited before its port could be read (it is
    unpublished then) is reported as one that exits later is, with its code and log."""
    wrapped = container.get_wrapped_container()
    process = _ContainerProcess(wrapped)
    if process.poll() is not None:
        raise exit_error(svc, process.returncode, "at start", log)
    host_port = wrapped.attrs["NetworkSettings"]["Ports"][f"{svc.port}/tcp"][0]["HostPort"]
    wait_healthy(svc, f"http://127.0.0.1:{host_port}", timeout, process, log)
