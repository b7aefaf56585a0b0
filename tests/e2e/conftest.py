"""simstack's own staging-style e2e suite (CONTRACT.md), run against a deployment.

Target, in order:
- a simstack stack, when the plugin is on (``--simstack=local|docker|auto`` or ``--simstack-attach``);
  the plugin exports SIMSTACK_API_URL/WS_URL/AUTH_URL before collection;
- a real deployment, when STAGING_API_URL, STAGING_WS_URL and STAGING_AUTH_URL are set
  (the auth bypass key comes from E2E_BYPASS_KEY);
- nothing: every test here is skipped, so the plain unit run (`make test`) does not need a stack.

The suite reads only these URLs: it is written like a team's staging suite, not against simstack's API.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

HERE = Path(__file__).resolve().parent
STAGING_VARS = ("STAGING_API_URL", "STAGING_WS_URL", "STAGING_AUTH_URL")


@dataclass(frozen=True)
class Target:
    name: str
    api_url: str
    ws_url: str
    auth_url: str


def _target(config: pytest.Config) -> Target | None:
    if config.getoption("simstack", "off") != "off" or config.getoption("simstack_attach", False):
        e = os.environ
        return Target("simstack", e["SIMSTACK_API_URL"], e["SIMSTACK_WS_URL"], e["SIMSTACK_AUTH_URL"])
    if all(os.environ.get(v) for v in STAGING_VARS):
        return Target("staging", *(os.environ[v].rstrip("/") for v in STAGING_VARS))
    return None


def pytest_report_header(config: pytest.Config) -> str:
    t = _target(config)
    return f"e2e target: {t.name} ({t.api_url})" if t else "e2e target: none (tests/e2e skipped)"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _target(config) is not None:
        return
    skip = pytest.mark.skip(reason="e2e suite: no target; run with --simstack=local, or set "
                                   + ", ".join(STAGING_VARS) + " (`make e2e` runs it both ways)")
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def target(pytestconfig) -> Target:
    t = _target(pytestconfig)
    assert t is not None
    return t


@pytest.fixture
def http(target):
    with httpx.Client(base_url=target.api_url, timeout=10.0, follow_redirects=False) as client:
        yield client


@pytest.fixture(scope="session")
def token(target) -> str:
    """A test user's JWT from the auth service's e2e endpoint, as the staging suites get it."""
    r = httpx.post(f"{target.auth_url}/auth/e2e/test-auth", timeout=10.0,
                   headers={"X-E2E-Bypass-Key": os.environ.get("E2E_BYPASS_KEY", "simstack-e2e")},
                   json={"email": "e2e-user@staging.netra.test", "name": "E2E Test User",
                         "permissions": ["read", "write"]})
    assert r.status_code == 200, f"test-auth answered {r.status_code}: {r.text[:200]}"
    return r.json()["access_token"]
