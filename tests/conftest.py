"""Shared fixtures: real stacks on real sockets, one per mode and profile per session.

Integration tests take ``stack`` (fast profile) and run once per mode: local, and docker unless
the test is marked ``mode_independent`` (what the stand-ins answer does not depend on how they run:
the contract is checked once). Every test marked ``docker`` is skipped, saying why, when docker mode
cannot run here (no engine, or images missing: `make images`); that is the one skip mechanism.
Each test starts from healthy defaults: faults are reset before and after it.
"""
from __future__ import annotations

import os

import httpcore._sync.http11  # noqa: F401  (see below)
import pytest

from simstack.stack import Stack

# httpx imports its HTTP/1.1 machinery on the first request. pytester unloads every module first
# imported during a test that uses it, so a first request made inside such a test (in-process) left
# two copies of httpcore's exception classes: httpx stopped mapping them, and every later stack
# start failed on the normal "not listening yet" reset. Imported here, it is never unloaded.

pytest_plugins = ["pytester"]
os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost,::1")
os.environ.setdefault("no_proxy", "127.0.0.1,localhost,::1")


def pytest_generate_tests(metafunc):
    if "stack_mode" in metafunc.fixturenames:
        modes = [pytest.param("local", id="local")]
        if not metafunc.definition.get_closest_marker("mode_independent"):
            modes.append(pytest.param("docker", id="docker", marks=pytest.mark.docker))
        metafunc.parametrize("stack_mode", modes, indirect=True, scope="session")


def pytest_collection_modifyitems(config, items):
    """Skip every test marked ``docker`` when docker mode cannot run here, with the reason."""
    docker_items = [item for item in items if item.get_closest_marker("docker")]
    if not docker_items:
        return
    try:
        from simstack.launchers.docker import engine_problem
        problem = engine_problem()
    except ImportError as exc:
        problem = str(exc)
    if problem:
        skip = pytest.mark.skip(reason=f"docker mode unavailable: {problem}")
        for item in docker_items:
            item.add_marker(skip)


def pytest_sessionstart(session):
    """Remove containers and networks left by earlier runs that were killed (their owner is gone)."""
    try:
        from simstack.launchers.docker import reap_orphans
        reap_orphans()
    except Exception:   # no Docker here: nothing can have been left
        pass


def pytest_configure(config):
    config.addinivalue_line("markers", "docker: needs a Docker engine and the simstack images")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")
    config.addinivalue_line("markers", "mode_independent: runs against a local stack only (the same stand-ins "
                                       "run in docker mode)")


@pytest.fixture(scope="session")
def stack_mode(request) -> str:
    """local or docker (see pytest_generate_tests)."""
    return request.param


@pytest.fixture(scope="session")
def _stacks():
    started: dict[tuple[str, str], Stack] = {}
    yield started
    for s in started.values():
        s.stop()


def _get(_stacks, mode: str, profile: str) -> Stack:
    key = (mode, profile)
    if key not in _stacks:
        _stacks[key] = Stack(mode=mode, profile=profile).start()
    s = _stacks[key]
    s.faults.reset()
    return s


@pytest.fixture
def stack(_stacks, stack_mode):
    """A running stack (fast profile), healthy at the start of the test."""
    s = _get(_stacks, stack_mode, "fast")
    yield s
    s.faults.reset()


@pytest.fixture
def staging_stack(_stacks, stack_mode):
    """A running stack with the staging timing profile."""
    s = _get(_stacks, stack_mode, "staging")
    yield s
    s.faults.reset()


@pytest.fixture
def token(stack) -> str:
    return stack.token()


@pytest.fixture(scope="session")
def upstream_image():
    """The tests' own backend (tests/upstream_app.py) as an image, built once, offline, for docker mode."""
    from own_image import upstream_image as build
    with build() as tag:
        yield tag

# tests/example_suite is a team's suite with its own pytest.ini, run unmodified by tests/test_plugin.py.
collect_ignore = ["example_suite", "redirect_suite"]
