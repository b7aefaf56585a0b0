"""Auth: e2e test tokens, and the WebSocket refusing a connection without a valid one (CONTRACT §3, §4)."""
from __future__ import annotations

import os

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from e2e_client import open_ws


def test_e2e_login_returns_a_bearer_jwt(target):
    r = httpx.post(f"{target.auth_url}/auth/e2e/test-auth", timeout=10.0,
                   headers={"X-E2E-Bypass-Key": os.environ.get("E2E_BYPASS_KEY", "simstack-e2e")},
                   json={"email": "e2e-login@staging.netra.test", "name": "E2E Login", "permissions": ["read"]})
    assert r.status_code == 200
    body = r.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 900
    assert body["access_token"].count(".") == 2
    assert body["user"]["email"] == "e2e-login@staging.netra.test"


@pytest.mark.parametrize("token", [None, "not-a-jwt"], ids=["no token", "not a JWT"])
async def test_websocket_refuses_without_a_valid_token(target, token):
    with pytest.raises(InvalidStatus) as exc:
        async with open_ws(target.ws_url, token):
            pass
    assert exc.value.response.status_code == 403
