"""Docker mode: the stand-ins and Toxiproxy as containers on a private network, run with Testcontainers.

One stack is one Docker network with three containers: ``api`` and ``auth`` (the stand-ins image,
reachable on the network by those aliases) and Toxiproxy, whose API and proxy listeners are the only
ports published, on 127.0.0.1. Every container and network carries the labels below, so a stack whose
owner died can be found and removed by :func:`reap_orphans`.

The images come from ``simstack images build`` (names in :mod:`simstack.images`); nothing is ever pulled.
"""
from __future__ import annotations

import logging
import os
import re
import socket
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING


from .. import images
from ..shared.errors import NoDockerEngine, PortInUse, StartError
from ..services import PROXIES, STANDINS, TOXIPROXY_API_PORT, TOXIPROXY_PORT_OPTION, port_option, toxiproxy_env
from ..state import pid_alive, process_start
from ..wait import NotReady, UntilAnswers
from .base import Launched, LaunchSpec
from .local import check_free

if TYPE_CHECKING:  # docker and testcontainers are imported on first use: the CLI starts faster without them
    import docker
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.network import Network

LABEL_STACK = "simstack.stack"
LABEL_OWNER_PID = "simstack.owner_pid"
LABEL_OWNER_HOST = "simstack.owner_host"
LABEL_OWNER_START = "simstack.owner_start"  # owner's start time, so a reused pid is not taken for the owner
LOOPBACK = "127.0.0.1"
READY_TIMEOUT = 20.0
POLL_INTERVAL = 0.02
TOXIPROXY = "toxiproxy"

log = logging.getLogger(__name__)


def _configure_testcontainers() -> None:
    """Settings these machines need, applied unless the user set them in the environment.

    A ``/.dockerenv`` file makes Testcontainers believe it runs inside a container and talk to
    172.17.0.1; simstack always reaches the engine's published ports on loopback. The reaper image
    (testcontainers/ryuk) cannot be pulled without a registry, so it is off: labels do its job.
    """
    from testcontainers.core.config import ConnectionMode
    from testcontainers.core.config import testcontainers_config as tc

    if not os.environ.get("TESTCONTAINERS_CONNECTION_MODE"):
        tc.connection_mode_override = ConnectionMode.docker_host
    if not (os.environ.get("TC_HOST") or os.environ.get("TESTCONTAINERS_HOST_OVERRIDE")):
        tc.tc_host_override = LOOPBACK
    if "TESTCONTAINERS_RYUK_DISABLED" not in os.environ:
        tc.ryuk_disabled = True
    # It logs "Pulling image" at INFO on every start, though it never pulls an image that exists.
    logging.getLogger("testcontainers.core.container").setLevel(logging.WARNING)


def docker_client(timeout: float = 10.0) -> "docker.DockerClient":
    """A client for the engine, or :class:`NoDockerEngine` when none answers."""
    import docker

    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except docker.errors.DockerException as exc:
        raise NoDockerEngine(_first_line(exc)) from None
    return client


def engine_problem() -> str | None:
    """Why docker mode cannot run here (no engine, images missing), or None when it can."""
    try:
        client = docker_client(timeout=3)
    except NoDockerEngine as exc:
        return f"{exc.message} (start a Docker engine; `make engine` in a checkout)"
    try:
        problems = image_problems(client)
    finally:
        client.close()
    return f"{'; '.join(problems)}: {images.BUILD_HINT}" if problems else None


def image_problems(client: "docker.DockerClient") -> list[str]:
    """What is wrong with the images a stack needs: missing, or stand-ins built from other sources."""
    import docker

    problems = []
    for name in (images.standins_image(), images.toxiproxy_image()):
        try:
            labels = client.images.get(name).labels or {}
        except docker.errors.ImageNotFound:
            problems.append(f"image {name} is missing")
            continue
        built_from = labels.get(images.SOURCES_LABEL)
        if built_from and built_from != images.sources_hash():  # unlabelled images are the user's: not checked
            problems.append(f"image {name} is stale (the stand-ins or simstack/shared changed since it was built)")
    return problems


def check_own_image(client: "docker.DockerClient", svc) -> None:
    """An image of yours must be in the local engine: simstack never pulls."""
    import docker
    try:
        client.images.get(svc.image)
    except docker.errors.ImageNotFound:
        raise StartError(f"the image {svc.image} (--{svc.name}-image) is not in the local Docker engine",
                         f"simstack never pulls: build it there (`docker build -t {svc.image} .`) or load it "
                         "(`docker load -i FILE.tar`)") from None


def _owner_alive(labels: dict[str, str]) -> bool:
    try:
        pid = int(labels.get(LABEL_OWNER_PID, ""))
    except ValueError:
        return True  # not ours to judge
    if not pid_alive(pid):   # gone, or a zombie
        return False
    started = labels.get(LABEL_OWNER_START, "")
    return not started or process_start(pid) in ("", started)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "explanation", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class DockerLauncher:
    """Runs a stack as containers. Use one instance per stack."""

    mode = "docker"

    def __init__(self) -> None:
        self._network: Network | None = None
        self._containers: dict[str, DockerContainer] = {}  # "api" | "auth" | "toxiproxy"
        self._host_ports: dict[int, int] = {}              # Toxiproxy container port -> host port
        self._client: docker.DockerClient | None = None    # kept for alive(): one call per poll

    # --- Launcher protocol ---------------------------------------------------------------------

    def start(self, spec: LaunchSpec) -> Launched:
        _configure_testcontainers()
        client = docker_client()
        try:
            for svc in spec.own.values():
                check_own_image(client, svc)
            problems = image_problems(client)
            if problems:
                raise StartError("; ".join(problems),
                                 f"{images.BUILD_HINT} to build simstack's images offline, or use --mode local")
            self._clear_stale(client, spec.stack_id)
        except BaseException:
            client.close()
            raise
        self._client = client
        try:
            check_free(spec.toxiproxy_port, TOXIPROXY_PORT_OPTION)
            for p in PROXIES:
                check_free(spec.ports.get(p.name, 0), port_option(p.name))
            self._start(spec)
            url = f"http://{LOOPBACK}:{self._host_ports[TOXIPROXY_API_PORT]}"
            self._wait_ready(url, spec)
        except BaseException:
            self.stop()
            raise
        return Launched(
            toxiproxy_url=url,
            upstreams={s.name: f"{s.name}:{s.container_port}" for s in STANDINS},
        )

    def proxy_listen(self, proxy: str, wanted_port: int) -> str:
        # The host port was chosen when the container was created (see _toxiproxy_ports).
        return f"0.0.0.0:{_proxy_spec(proxy).container_port}"

    def host_port(self, proxy: str, listen: str) -> int:
        container_port = int(listen.rsplit(":", 1)[1])
        try:
            return self._host_ports[container_port]
        except KeyError:
            raise StartError(f"proxy {proxy!r} listens on container port {container_port}, "
                             "which the Toxiproxy container does not publish",
                             "listen on the port simstack.services.PROXIES gives it") from None

    def alive(self) -> dict[str, bool]:
        """Which containers still run (one engine call: the Stack polls this while it waits)."""
        if not self._containers:
            return {}
        import docker

        ids = {c._container.id: name for name, c in self._containers.items() if c._container is not None}
        try:
            listed = self._client.api.containers(all=True, filters={"id": list(ids)})
        except (AttributeError, docker.errors.DockerException):  # stopped meanwhile, or engine gone
            return {name: False for name in self._containers}
        running = {c["Id"] for c in listed if c["State"] == "running"}
        return {name: cid in running for cid, name in ids.items()}

    def logs(self, service: str) -> str:
        container = self._containers.get(service)
        if container is None or container._container is None:
            return ""
        try:
            return container.get_wrapped_container().logs().decode(errors="replace")
        except Exception as exc:  # removed meanwhile, engine gone: logs are diagnostics only
            return f"(logs of {service} unavailable: {_first_line(exc)})"

    def stop(self) -> None:
        containers, self._containers = list(self._containers.values()), {}
        network, self._network = self._network, None
        if containers:
            with ThreadPoolExecutor(len(containers)) as pool:
                list(pool.map(_remove_container, containers))
        if network is not None and network._network is not None:
            try:
                network.remove()
            except Exception as exc:
                log.warning("could not remove network %s: %s", network.name, _first_line(exc))
            network._docker.client.close()
        client, self._client = self._client, None
        if client is not None:
            client.close()

    # --- internals -----------------------------------------------------------------------------

    def _labels(self, stack_id: str) -> dict[str, str]:
        pid = os.getpid()
        return {LABEL_STACK: stack_id, LABEL_OWNER_PID: str(pid), LABEL_OWNER_HOST: socket.gethostname(),
                LABEL_OWNER_START: process_start(pid)}

    def _clear_stale(self, client: "docker.DockerClient", stack_id: str) -> None:
        """Refuse a stack id a live stack uses; remove what a dead owner left under it."""
        found = client.containers.list(all=True, filters={"label": f"{LABEL_STACK}={stack_id}"})
        alive = [c for c in found if _owner_alive(c.labels)]
        if alive:
            pid = alive[0].labels.get(LABEL_OWNER_PID)
            raise StartError(f"a docker-mode stack {stack_id!r} is already running (owner pid {pid})",
                             "stop it with `simstack down`, or start this one under another id")
        if found:
            reap_orphans()

    def _start(self, spec: LaunchSpec) -> None:
        from testcontainers.core.container import DockerContainer
        from testcontainers.core.network import Network

        labels = self._labels(spec.stack_id)
        prefix = f"simstack-{spec.stack_id}"
        network = Network(docker_network_kw={"labels": labels})
        network.name = f"{prefix}-{network.name[:8]}"  # readable in `docker network ls`, still unique
        self._network = network.create()

        for service in STANDINS:
            if service.name in spec.own:   # a service of yours: its image, and the gateway in front of it
                from ..own import docker_containers
                self._containers.update(docker_containers(spec.own[service.name], service, spec.env, network,
                                                          labels, prefix))
                continue
            self._containers[service.name] = (
                DockerContainer(images.standins_image(), env=dict(spec.env), network=network,
                                network_aliases=[service.name])
                .with_name(f"{prefix}-{service.name}")
                .with_command(service.command(service.container_port, host="0.0.0.0"))
                .with_kwargs(labels=labels, entrypoint=["python3"]))
        toxiproxy = (DockerContainer(images.toxiproxy_image(), env=toxiproxy_env(), network=network,
                                     network_aliases=[TOXIPROXY])
                     .with_name(f"{prefix}-{TOXIPROXY}")
                     .with_kwargs(labels=labels))
        toxiproxy.ports.update(_toxiproxy_ports(spec))  # type: ignore[arg-type]  # docker-py takes (ip, port)
        self._containers[TOXIPROXY] = toxiproxy

        # Containers start independently; starting them together saves ~2/3 of the wall time.
        with ThreadPoolExecutor(len(self._containers)) as pool:
            futures = {name: pool.submit(c.start) for name, c in self._containers.items()}
        for name, future in futures.items():
            exc = future.exception()
            if exc is not None:
                raise _start_error(name, exc, spec) from None

        published = toxiproxy.get_wrapped_container()
        published.reload()
        for key, bindings in (published.attrs["NetworkSettings"]["Ports"] or {}).items():
            if bindings:
                self._host_ports[int(key.split("/")[0])] = int(bindings[0]["HostPort"])

    def _wait_ready(self, url: str, spec: LaunchSpec) -> None:
        """Poll until Toxiproxy's API answers and the stand-ins still run."""
        try:
            UntilAnswers(READY_TIMEOUT, interval=POLL_INTERVAL).wait({TOXIPROXY: f"{url}/version"})
        except NotReady:
            raise StartError(f"Toxiproxy's API at {url} did not answer within {READY_TIMEOUT:.0f}s",
                             f"its log:\n{self.logs(TOXIPROXY)[-2000:]}") from None
        for service in STANDINS:
            container = self._containers[service.name].get_wrapped_container()
            container.reload()
            if container.status not in ("running", "created"):
                raise StartError(f"the {service.name} stand-in exited at start ({container.status})",
                                 f"its log:\n{self.logs(service.name)[-2000:]}")
            if service.name in spec.own:
                from ..own import wait_healthy_container
                wait_healthy_container(spec.own[service.name], self._containers[service.name],
                                       lambda name=service.name: self.logs(name), spec.startup_timeout)


def _proxy_spec(proxy: str):
    for p in PROXIES:
        if p.name == proxy:
            return p
    raise StartError(f"unknown proxy {proxy!r}", f"known: {', '.join(p.name for p in PROXIES)}")


def _toxiproxy_ports(spec: LaunchSpec) -> dict[str, tuple[str, int | None]]:
    """Toxiproxy's API and every proxy listener, on loopback only; None lets the engine pick."""
    ports = {f"{TOXIPROXY_API_PORT}/tcp": (LOOPBACK, spec.toxiproxy_port or None)}
    for p in PROXIES:
        ports[f"{p.container_port}/tcp"] = (LOOPBACK, spec.ports.get(p.name) or None)
    return ports


def _start_error(name: str, exc: BaseException, spec: LaunchSpec) -> StartError:
    text = _first_line(exc)
    busy = re.search(r"(?:bind for|listen tcp4?) [\d.]*:(\d+).*(?:already allocated|address already in use)", text)
    if busy:
        port = int(busy.group(1))
        option = next((port_option(p) for p, v in spec.ports.items() if v == port), TOXIPROXY_PORT_OPTION)
        return PortInUse(LOOPBACK, port, option)
    if "Conflict" in text and "already in use" in text:
        return StartError(f"could not create the {name} container: {text}",
                          "a container of the same stack id exists; `simstack down` removes it")
    return StartError(f"could not start the {name} container: {text}",
                      "check the engine with `docker/engine.sh status`, or use --mode local")


def _remove_container(container: "DockerContainer") -> None:
    import docker

    try:
        if container._container is not None:
            container._container.remove(force=True)
    except docker.errors.NotFound:
        pass
    except Exception as exc:
        log.warning("could not remove container: %s", _first_line(exc))
    finally:
        container.get_docker_client().client.close()


def reap_orphans() -> list[str]:
    """Remove the containers and networks of stacks whose owner process died on this host.

    Live stacks, and stacks owned by another host sharing the engine, are left alone. Returns the
    ids of the stacks removed; without an engine there is nothing to reap and it returns [].
    """
    import docker

    try:
        client = docker_client(timeout=5)
    except NoDockerEngine:
        return []
    host_filter = {"label": [LABEL_STACK, f"{LABEL_OWNER_HOST}={socket.gethostname()}"]}
    reaped: set[str] = set()
    try:
        for container in client.containers.list(all=True, filters=host_filter):
            if not _owner_alive(container.labels):
                try:
                    container.remove(force=True)
                except docker.errors.NotFound:
                    pass
                reaped.add(container.labels[LABEL_STACK])
        for network in client.networks.list(filters=host_filter):
            if not _owner_alive(network.attrs.get("Labels") or {}):
                try:
                    network.remove()
                except docker.errors.NotFound:
                    pass
                except docker.errors.APIError as exc:  # still has endpoints: a container we did not list
                    log.warning("could not remove network %s: %s", network.name, _first_line(exc))
                    continue
                reaped.add(network.attrs["Labels"][LABEL_STACK])
    finally:
        client.close()
    return sorted(reaped)


def container_logs(stack_id: str, service: str) -> str:
    """The log of ``api``, ``auth`` or ``toxiproxy`` of a running docker-mode stack (for `simstack logs`)."""
    import docker

    client = docker_client()
    try:
        return client.containers.get(f"simstack-{stack_id}-{service}").logs().decode(errors="replace")
    except docker.errors.NotFound:
        raise StartError(f"no {service} container for stack {stack_id}", "is it running? `simstack status`") from None
    finally:
        client.close()
