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

``simstack images build`` (= ``make images`` in a checkout) runs the shipped build script with what it
needs from here: ``python -m simstack.images`` prints the resolved names as shell assignments,
``python -m simstack.images requirements`` the stand-ins' dependencies, and
``python -m simstack.images stage DIR`` copies the files the stand-ins run into DIR.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from simstack import resources
from simstack.services import API, STANDINS
from simstack.shared.errors import SimstackError

ENV_BASE = "SIMSTACK_BASE_IMAGE"
ENV_STANDINS = "SIMSTACK_STANDINS_IMAGE"
ENV_TOXIPROXY = "SIMSTACK_TOXIPROXY_IMAGE"

DEFAULT_BASE = "simstack/python-base:3.11"
TOXIPROXY_VERSION = "2.12.0"
DEFAULT_TOXIPROXY = f"ghcr.io/shopify/toxiproxy:{TOXIPROXY_VERSION}"

INPUTS_LABEL = "simstack.inputs"    # hash of what an image was built from; absent on foreign images
SOURCES_LABEL = "simstack.sources"  # sources_hash() of the files a stand-ins image holds
STANDINS_ROOT = "/opt/simstack"   # where the stand-ins image keeps their files and their deps
BUILD_HINT = "run `simstack images build` (`make images` in a checkout)"
HOST_ONLY = {"docker", "testcontainers"}  # the launcher's libraries, not the stand-ins'


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


def standins_sources() -> list[tuple[str, Path]]:
    """Every file the stand-ins run, as (path inside the image's app dir, file here).

    That is ``simstack/__init__.py``, the shared vocabulary (``simstack/shared/``) and the stand-ins
    (``simstack.fakes``, the repository's ``fakes/``): nothing of the client side, so editing the CLI or
    the plugin leaves the image current.
    """
    fakes = importlib.util.find_spec("simstack.fakes")
    assert fakes is not None and fakes.submodule_search_locations
    trees = ((resources.PACKAGE / "shared", "simstack/shared"),
             (Path(next(iter(fakes.submodule_search_locations))), "simstack/fakes"))
    files = [("simstack/__init__.py", resources.PACKAGE / "__init__.py")]
    for top, arc in trees:
        files += [(f"{arc}/{path.relative_to(top).as_posix()}", path) for path in sorted(top.rglob("*.py"))
                  if "__pycache__" not in path.parts]
    return sorted(files)


def sources_hash() -> str:
    """Hash of :func:`standins_sources`: the stand-ins image's staleness check."""
    digest = hashlib.sha256()
    for arc, path in standins_sources():
        digest.update(arc.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:32]


def stage(target: Path) -> None:
    """Copy :func:`standins_sources` into ``target`` (the image's app dir)."""
    for arc, path in standins_sources():
        (target / arc).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target / arc)


def standins_requirements() -> str:
    """The stand-ins' requirement lines (simstack's dependencies minus the docker libraries), a ``---``
    line, then constraints pinning every distribution installed here, so the image runs what was tested."""
    lines = []
    for req in metadata.requires("simstack") or []:
        name = re.split(r"[\s<>=!~\[;]", req, maxsplit=1)[0].lower()
        if "extra ==" not in req and name not in HOST_ONLY:
            lines.append(req)
    pins = {d.metadata["Name"].lower(): d.version for d in metadata.distributions()}
    pins.pop("simstack", None)
    return "\n".join([*lines, "---", *(f"{name}=={pins[name]}" for name in sorted(pins))])


def build(quiet: bool = False) -> None:
    """Build the images with the shipped ``build-images.sh`` (from a checkout or an installed package)."""
    script = resources.shipped("docker") / "build-images.sh"
    if not shutil.which("docker"):
        raise SimstackError("building the images needs the docker command and an engine; none is on PATH",
                            "install Docker (or use --mode local, which needs no engine)")
    env = {**os.environ, "PYTHON": sys.executable, "SIMSTACK_BUILD_DIR": str(resources.build_dir())}
    proc = subprocess.run(["bash", str(script)], env=env, stdout=subprocess.DEVNULL if quiet else None)
    if proc.returncode:
        raise SimstackError(f"the image build failed (exit {proc.returncode}; its output above says why)",
                            f"fix that and run `simstack images build` again; scratch space: {resources.build_dir()}")
def _shell() -> str:
    values = {
        "BASE_IMAGE": base_image(),
        "DEFAULT_BASE_IMAGE": DEFAULT_BASE,
        "STANDINS_IMAGE": standins_image(),
        "TOXIPROXY_IMAGE": toxiproxy_image(),
        "INPUTS_LABEL": INPUTS_LABEL,
        "SOURCES_LABEL": SOURCES_LABEL,
        "SOURCES_HASH": sources_hash(),
        "TOXIPROXY_SERVER": _toxiproxy_server(),
        "TOXIPROXY_VERSION": TOXIPROXY_VERSION,
        "STANDINS_ROOT": STANDINS_ROOT,
        # The image's default command: the api stand-in, as the launcher would run it.
        "STANDINS_CMD": json.dumps(API.command(API.container_port, host="0.0.0.0")),
        "STANDINS_PORTS": " ".join(str(s.container_port) for s in STANDINS),
    }
    return "\n".join(f"{key}={shlex.quote(value)}" for key, value in values.items())


def _toxiproxy_server() -> str:
    from simstack.launchers.local import find_toxiproxy
    try:
        return find_toxiproxy()
    except SimstackError:
        return ""   # the build script says how to get it


if __name__ == "__main__":
    command = sys.argv[1:2]
    if command == ["stage"]:
        stage(Path(sys.argv[2]))
    elif command == ["requirements"]:
        sys.stdout.write(standins_requirements() + "\n")
    else:
        sys.stdout.write(_shell() + "\n")
