"""HTTP checks, with whichever client each author preferred."""
import asyncio

import aiohttp
import httpx

from acme_staging import endpoints
from acme_staging.client import StagingApi


def test_health_httpx():
    r = httpx.get(endpoints.HEALTH_URL, timeout=10)
    assert r.status_code == 200
    assert r.json()["service"] == "netra-ai-platform"


def test_api_health_requests():
    assert StagingApi().get_json("/api/health")["environment"] == "staging"


def test_discovery_aiohttp():
    async def discover():
        async with aiohttp.ClientSession() as session:
            async with session.get(endpoints.DISCOVERY_URL) as r:
                return r.status, await r.json()
    status, body = asyncio.run(discover())
    assert status == 200
    assert {"backend", "auth"} <= set(body["services"])


def test_mcp_servers_httpx_async():
    async def servers():
        async with httpx.AsyncClient(timeout=10) as client:
            return (await client.get(endpoints.MCP_SERVERS_URL)).json()
    assert all({"name", "status"} <= set(s) for s in asyncio.run(servers())["data"])


def test_auth_health():
    r = httpx.get(endpoints.AUTH_HEALTH_URL, timeout=10)
    assert r.json()["service"] == "auth-service"
