"""Where the files simstack ships beside its code are, in a checkout and in an installed package.

The repository keeps them in its own folders (``scenarios/``, ``docker/``, ``scripts/``); the wheel
carries the same files under ``simstack/_data/`` (``package-dir`` in pyproject.toml), so an installed
simstack needs no checkout for its scenarios, its images or Toxiproxy.
"""
from __future__ import annotations

import os
import sysconfig
from pathlib import Path

SCENARIOS_ENV = "SIMSTACK_SCENARIOS"   # directories of a user's own scenarios, os.pathsep-separated
PACKAGE = Path(__file__).resolve().parent
_INSTALLED_DATA = PACKAGE / "_data"
# The repository this code runs from (an editable install or the tests), or None when installed.
CHECKOUT: Path | None = None if _INSTALLED_DATA.is_dir() else PACKAGE.parent


def shipped(folder: str) -> Path:
    """A shipped folder: ``scenarios``, ``docker`` or ``scripts``."""
    return PACKAGE.parent / folder if CHECKOUT else _INSTALLED_DATA / folder


def scenario_dirs(extra: list[Path] | tuple[Path, ...] = ()) -> list[Path]:
    """The shipped scenarios, then ``$SIMSTACK_SCENARIOS``'s directories, then ``extra`` (``--scenarios``)."""
    from_env = [Path(d) for d in os.environ.get(SCENARIOS_ENV, "").split(os.pathsep) if d]
    return [shipped("scenarios"), *from_env, *extra]


def bin_dir() -> Path:
    """Where ``simstack install-toxiproxy`` puts the binaries: the checkout's ``bin/``, else beside ``simstack``."""
    return CHECKOUT / "bin" if CHECKOUT else Path(sysconfig.get_path("scripts"))


def build_dir() -> Path:
    """Scratch space of the image build: ``$SIMSTACK_BUILD_DIR``, the checkout's ``docker/.build``, or a cache dir."""
    explicit = os.environ.get("SIMSTACK_BUILD_DIR")
    if explicit:
        return Path(explicit)
    if CHECKOUT:
        return CHECKOUT / "docker" / ".build"
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "simstack" / "build"
