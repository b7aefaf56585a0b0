"""The team's e2e suite reads its target from the environment (the simstack plugin exports it)."""
import os

import pytest


@pytest.fixture
def api_url() -> str:
    return os.environ["SIMSTACK_API_URL"]


@pytest.fixture
def ws_url() -> str:
    return os.environ["SIMSTACK_WS_URL"]


@pytest.fixture
def token() -> str:
    return os.environ["SIMSTACK_TOKEN"]
