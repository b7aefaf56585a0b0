"""Docker mode's checks: an engine that answers, and the images a stack needs (never pulled)."""
from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from ... import images
from ...shared.errors import NoDockerEngine, StartError

if TYPE_CHECKING:  # docker and testcontainers are imported on first use: the CLI starts faster without them
    import docker

LOOPBACK = "127.0.0.1"


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


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "explanation", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
