"""The tests' own backend (tests/upstream_app.py) as an image, and what a docker-mode stack left on
the engine: shared by the gateway tests (docker mode), the image tests and the CLI's docker test.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from simstack import images
from simstack.launchers.docker import LABEL_STACK, docker_client

TESTS = Path(__file__).resolve().parent
# With $EXIT_AT_ONCE set the container exits at once with that code, saying so: a backend that dies at start.
ENTRYPOINT = ('if [ -n "$EXIT_AT_ONCE" ]; then echo "exiting at once with code $EXIT_AT_ONCE"; exit "$EXIT_AT_ONCE"; fi; '
              "exec python3 -m uvicorn upstream_app:app --app-dir /app --host 0.0.0.0 --port 8000 --log-level warning")


@contextlib.contextmanager
def upstream_image() -> Iterator[str]:
    """The backend on top of the stand-ins image (its Python, Starlette and uvicorn), built offline
    under a tag of its own; removed afterwards."""
    tag = f"simstack-test/upstream:{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="upstream-image-") as ctx:
        shutil.copy(TESTS / "upstream_app.py", Path(ctx) / "upstream_app.py")
        (Path(ctx) / "Dockerfile").write_text(f"FROM {images.standins_image()}\nCOPY upstream_app.py /app/\n"
                                              f"ENTRYPOINT {json.dumps(['/bin/sh', '-c', ENTRYPOINT])}\n")
        subprocess.run(["docker", "build", "-q", "--network=none", "-t", tag, ctx], check=True, capture_output=True,
                       env={**os.environ, "DOCKER_BUILDKIT": "0"}, timeout=120)
    try:
        yield tag
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, timeout=60)


def labelled(stack_id: str) -> tuple[list[str], list[str]]:
    """The names of the containers and networks on the engine that carry ``stack_id``'s label: what
    that stack owns, whatever other runs share the engine."""
    client = docker_client()
    try:
        by_stack = {"label": f"{LABEL_STACK}={stack_id}"}
        return (sorted(c.name for c in client.containers.list(all=True, filters=by_stack)),
                sorted(n.name for n in client.networks.list(filters=by_stack)))
    finally:
        client.close()
