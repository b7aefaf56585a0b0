"""Docker mode: the stand-ins and Toxiproxy as containers on a private network, run with Testcontainers.

One stack is one Docker network with three containers: ``api`` and ``auth`` (the stand-ins image,
reachable on the network by those aliases) and Toxiproxy, whose API and proxy listeners are the only
ports published, on 127.0.0.1. Every container and network carries the labels below, so a stack whose
owner died can be found and removed by :func:`reap_orphans`.

The images come from ``simstack images build`` (names in :mod:`simstack.images`); nothing is ever pulled.
"""
from .engine import LOOPBACK, check_own_image, docker_client, engine_problem, image_problems
from .launcher import DockerLauncher
from .reaping import LABEL_OWNER_HOST, LABEL_OWNER_PID, LABEL_OWNER_START, LABEL_STACK, reap_orphans

__all__ = ["DockerLauncher", "LABEL_OWNER_HOST", "LABEL_OWNER_PID", "LABEL_OWNER_START", "LABEL_STACK", "LOOPBACK",
           "check_own_image", "docker_client", "engine_problem", "image_problems", "reap_orphans"]
