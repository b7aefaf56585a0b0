"""The Docker images docker mode runs: one table, read by ``docker/build-images.sh`` and the launcher.

Every name can be overridden by an environment variable, so a user with registry access can run the
official images instead of the ones ``make images`` builds offline:

================================  ==============================================  =========================
variable                          default                                         what
================================  ==============================================  =========================
``SIMSTACK_BASE_IMAGE``           ``simstack/python-base:3.11``                   Python 3.11 runtime; set
                                                                                  ``python:3.11-slim`` to
                                                                                  build on the official one
``SIMSTACK_STANDINS_IMAGE``       ``simstack/standins:<simstack version>``        runs ``simstack.fakes.api``
                                                                                  and ``.auth``
``SIMSTACK_TOXIPROXY_IMAGE``      ``ghcr.io/shopify/toxiproxy:2.12.0``            the real Toxiproxy
================================  ==============================================  =========================

An image that exists without the ``simstack.inputs`` label (pulled, or built by someone else) is
used as it is and never overwritten by ``make images``.

Run ``python -m simstack.images`` to print the resolved names as shell assignments.
"""
from __future__ import annotations

import hashlib
import json
import os
import shlex
import sys
from importlib import metadata
from pathlib import Path

from simstack.services import API, STANDINS

ENV_BASE = "SIMSTACK_BASE_IMAGE"
ENV_STANDINS = "SIMSTACK_STANDINS_IMAGE"
ENV_TOXIPROXY = "SIMSTACK_TOXIPROXY_IMAGE"

DEFAULT_BASE = "simstack/python-base:3.11"
TOXIPROXY_VERSION = "2.12.0"
DEFAULT_TOXIPROXY = f"ghcr.io/shopify/toxiproxy:{TOXIPROXY_VERSION}"

INPUTS_LABEL = "simstack.inputs"    # hash of what an image was built from; absent on foreign images
SOURCES_LABEL = "simstack.sources"  # sources_hash() of the simstack/ and fakes/ a stand-ins image holds
STANDINS_ROOT = "/opt/simstack"   # where the stand-ins image keeps simstack/, fakes/ and their deps


def _version() -> str:
    try:
        return metadata.version("simstack")
    except metadata.PackageNotFoundError:
        return "dev"


def base_image() -> str:
    return os.environ.get(ENV_BASE) or DEFAULT_BASE


def standins_image() -> str:
    return os.environ.get(ENV_STANDINS) or f"simstack/standins:{_version()}"


def toxiproxy_image() -> str:
    return os.environ.get(ENV_TOXIPROXY) or DEFAULT_TOXIPROXY


def sources_hash(root: Path = Path(__file__).resolve().parent.parent) -> str:
    """Hash of the ``simstack/`` and ``fakes/`` files the stand-ins image copies (its staleness check)."""
    digest = hashlib.sha256()
    for package in ("simstack", "fakes"):
        for path in sorted((root / package).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:32]


def _shell() -> str:
    values = {
        "BASE_IMAGE": base_image(),
        "DEFAULT_BASE_IMAGE": DEFAULT_BASE,
        "STANDINS_IMAGE": standins_image(),
        "TOXIPROXY_IMAGE": toxiproxy_image(),
        "INPUTS_LABEL": INPUTS_LABEL,
        "SOURCES_LABEL": SOURCES_LABEL,
        "SOURCES_HASH": sources_hash(),
        "STANDINS_ROOT": STANDINS_ROOT,
        # The image's default command: the api stand-in, as the launcher would run it.
        "STANDINS_CMD": json.dumps(API.command(API.container_port, host="0.0.0.0")),
        "STANDINS_PORTS": " ".join(str(s.container_port) for s in STANDINS),
    }
    return "\n".join(f"{key}={shlex.quote(value)}" for key, value in values.items())


if __name__ == "__main__":
    sys.stdout.write(_shell() + "\n")
