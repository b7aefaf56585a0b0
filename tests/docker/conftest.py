"""Docker-mode tests need a running engine and the images from `make images`; skipped otherwise."""
from __future__ import annotations

import pytest

from simstack.launchers.docker import engine_problem

_PROBLEM = engine_problem()


def pytest_collection_modifyitems(config, items):
    if _PROBLEM is None:
        return
    skip = pytest.mark.skip(reason=f"docker mode unavailable: {_PROBLEM}")
    for item in items:
        if item.get_closest_marker("docker"):
            item.add_marker(skip)
