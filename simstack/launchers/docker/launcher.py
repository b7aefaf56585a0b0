"""The docker-mode launcher: one network and the containers of one stack (see the package docstring)."""
from __future__ import annotations

import logging
import os
import socket
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from ... import images
from ...shared.errors import StartError
from ...services import PROXIES, STANDINS, TOXIPROXY_API_PORT, TOXIPROXY_PORT_OPTION, port_option, toxiproxy_env
from ...state import process_start
from ...wait import NotReady, UntilAnswers
from ..base import Launched, LaunchSpec
from ..local import check_free
from .engine import LOOPBACK, _configure_testcontainers, _first_line, check_own_image, docker_client, image_problems
from .ports import _proxy_spec, _start_error, _toxiproxy_ports
from .reaping import LABEL_OWNER_HOST, LABEL_OWNER_PID, LABEL_OWNER_START, LABEL_STACK, _owner_alive, reap_orphans

if TYPE_CHECKING:  # docker and testcontainers are imported on first use: the CLI starts faster without them
    import docker
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.network import Network

READY_TIMEOUT = 20.0
POLL_INTERVAL = 0.02
TOXIPROXY = "toxiproxy"

log = logging.getLogger(__name__)


class DockerLauncher:
    """Runs a stack as containers. Use one instance per stack."""

    mode = "docker"

    def __init__(self) -> None:
        self._network: Network | None = None
        self._containers: dict[str, DockerContainer] = {}  # "api" | "auth" | "toxiproxy"
        self._host_ports: dict[int, int] = {}              # Toxiproxy container port -> host port
        self._client: docker.DockerClient | None = None    # kept for alive(): one call per poll
        self.attached_to: str | None = None                # the id of a stack another process runs

    @classmethod
    def attach(cls, record: dict) -> "DockerLauncher":
        """The launcher of a running stack that another process started (its record): for its logs."""
        launcher = cls()
        launcher.attached_to = record["id"]
        return launcher

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
        """A container's log; "" before it exists, or an error for a missing one of an attached stack."""
        if self.attached_to:
            return _attached_logs(self.attached_to, service)
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

        from ...own import gateway_container, host_gateway, image_container
        extra = host_gateway(spec.own.values())   # dependencies on this machine: Toxiproxy dials, gateways check
        for service in STANDINS:
            svc = spec.own.get(service.name)
            if svc is not None:   # a service of yours: the gateway in front of it, and its image unless it
                self._containers[f"{svc.name}-gateway"] = gateway_container(      # waits for its listeners
                    svc, service, spec.env, network, labels, prefix, extra)
                if not svc.deps:
                    self._containers[svc.name] = image_container(svc, network, labels, prefix, {})
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
                     .with_kwargs(labels=labels, **extra))
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
        self._start_with_dependencies(url, spec)
        for service in STANDINS:
            if service.name in spec.own:   # your image: its exit is reported as yours, with its code
                from ...own import wait_healthy_container
                wait_healthy_container(spec.own[service.name], self._containers[service.name],
                                       lambda name=service.name: self.logs(name), spec.startup_timeout)
                continue
            container = self._containers[service.name].get_wrapped_container()
            container.reload()
            if container.status not in ("running", "created"):
                raise StartError(f"the {service.name} stand-in exited at start ({container.status})",
                                 f"its log:\n{self.logs(service.name)[-2000:]}")

    def _start_with_dependencies(self, url: str, spec: LaunchSpec) -> None:
        """Images that declare dependencies start once their listeners exist, so their environment
        can name them (``toxiproxy:PORT``) and a service that dials them at start-up finds them."""
        late = [svc for svc in spec.own.values() if svc.deps]
        if not late:
            return
        from ...own import check_reachable_from, dep_listeners, docker_upstream, image_container
        stack = {s.name: f"{s.name}:{s.container_port}" for s in STANDINS}
        listeners = dep_listeners(url, spec.own.values(), lambda a: docker_upstream(a, stack),
                                  check_reachable_from(self._containers), "0.0.0.0", TOXIPROXY)
        labels, prefix = self._labels(spec.stack_id), f"simstack-{spec.stack_id}"
        for svc in late:
            container = image_container(svc, self._network, labels, prefix, {d: listeners[d] for d in svc.deps})
            self._containers[svc.name] = container   # before start: stop() removes it whatever happens
            try:
                container.start()
            except Exception as exc:
                raise _start_error(svc.name, exc, spec) from None


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


def _attached_logs(stack_id: str, service: str) -> str:
    """The log of ``api``, ``auth`` or ``toxiproxy`` of a running docker-mode stack, by container name."""
    import docker

    client = docker_client()
    try:
        return client.containers.get(f"simstack-{stack_id}-{service}").logs().decode(errors="replace")
    except docker.errors.NotFound:
        raise StartError(f"no {service} container for stack {stack_id}", "is it running? `simstack status`") from None
    finally:
        client.close()
