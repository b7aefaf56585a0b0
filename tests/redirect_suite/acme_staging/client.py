"""The team's helpers: an API session (requests) and an e2e login, building URLs themselves."""
import os

import requests

from . import endpoints

E2E_HEADERS = {"X-E2E-Test": "true", "X-Test-Type": "E2E", "X-Test-Environment": "staging"}


class StagingApi(requests.Session):
    def __init__(self, base: str = endpoints.API_BASE):
        super().__init__()
        self.base = base
        self.headers.update(E2E_HEADERS)

    def get_json(self, path: str) -> dict:
        r = self.get(f"{self.base}{path}", timeout=10)
        r.raise_for_status()
        return r.json()


def e2e_login(email: str = "e2e-ci@acme-example.invalid") -> str:
    """A JWT from staging's e2e login (the bypass key comes from CI's secrets)."""
    r = requests.post(endpoints.TEST_AUTH_URL, timeout=10,
                      headers={"X-E2E-Bypass-Key": os.environ.get("E2E_BYPASS_KEY", "acme-ci-bypass")},
                      json={"email": email, "name": "Acme CI", "permissions": ["read", "write"]})
    r.raise_for_status()
    return r.json()["access_token"]
