"""The labels every docker-mode container and network carries, and the removal of those whose owner died."""
from __future__ import annotations

import logging
import socket

from ...shared.errors import NoDockerEngine
from ...state import owner_alive
from .engine import _first_line, docker_client

log = logging.getLogger(__name__)

LABEL_STACK = "simstack.stack"
LABEL_OWNER_PID = "simstack.owner_pid"
LABEL_OWNER_HOST = "simstack.owner_host"
LABEL_OWNER_START = "simstack.owner_start"  # owner's start time, so a reused pid is not taken for the owner


def _owner_alive(labels: dict[str, str]) -> bool:
    return owner_alive(f"{labels.get(LABEL_OWNER_PID, '')} {labels.get(LABEL_OWNER_START, '')}")


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
