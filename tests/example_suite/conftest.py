"""Probe staging when the suite is imported; skip everything when /health is not 200."""
import httpx
import pytest

import staging_config


def _staging_healthy() -> bool:
    try:
        return httpx.get(staging_config.STAGING.health_url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


STAGING_UP = _staging_healthy()


def pytest_collection_modifyitems(items):
    if not STAGING_UP:
        for item in items:
            item.add_marker(pytest.mark.skip(reason=f"staging is down: {staging_config.STAGING.health_url} is not 200"))
