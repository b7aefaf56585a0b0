"""CONTRACT §2: the backend HTTP API answers without auth, in JSON, with no redirects."""
from __future__ import annotations

import json

import httpx
import pytest

from standin_client import http, is_iso_utc

# What the stand-ins answer does not depend on how they run: checked once, against local processes.
pytestmark = pytest.mark.mode_independent

INFO_PATHS = ["/api/agents", "/api/agents/list", "/api/discovery/agents", "/api/agents/config",
              "/api/configuration", "/api/settings", "/api/agents/status", "/api/agents/active",
              "/api/execution/status", "/api/jobs", "/api/tasks", "/api/metrics", "/api/metrics/agents",
              "/api/metrics/pipeline", "/api/stats", "/api/health/metrics", "/api/performance",
              "/api/messages", "/api/threads", "/api/conversations", "/api/chat", "/api/chat/messages"]

ERROR_PROBES = [
    ("POST", "/api/agents/nonexistent/execute", {"message": "hello"}),
    ("POST", "/api/agents/execute", {"invalid": True}),
    ("POST", "/api/agents/execute", "not json at all"),
    ("GET", "/api/pipeline/not-a-real-pipeline", None),
    ("PUT", "/api/agents/execute", {"agent_type": "supervisor_agent", "message": "hi"}),
    ("GET", "/api/nonexistent", None),
    ("GET", "/api/messages/not-a-real-message", None),
    ("POST", "/api/messages", {"content": ""}),
    ("POST", "/api/messages", ["not", "an", "object"]),
    ("GET", "/etc/passwd", None),
]


@pytest.fixture
def api(stack):
    with http(stack.endpoints.api_url) as client:
        yield client


def _json_ok(r) -> dict:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    return r.json()


def test_health_has_exactly_the_staging_shape(api):
    body = _json_ok(api.get("/health"))
    assert set(body) == {"status", "service", "version", "timestamp"}
    assert body["status"] == "healthy"
    assert body["service"] == "netra-ai-platform"
    assert body["version"] == "1.0.0"
    assert isinstance(body["timestamp"], float)


def test_api_health_reports_checks_uptime_and_staging_environment(api):
    body = _json_ok(api.get("/api/health"))
    assert {"status", "timestamp", "uptime_seconds", "checks", "version", "environment"} <= set(body)
    assert body["status"] == "healthy"
    assert is_iso_utc(body["timestamp"])
    assert isinstance(body["uptime_seconds"], (int, float)) and body["uptime_seconds"] >= 0
    assert isinstance(body["checks"], dict) and body["checks"]
    assert body["version"]
    assert body["environment"] == "staging"


def test_discovery_lists_backend_auth_and_frontend_with_urls(api):
    body = _json_ok(api.get("/api/discovery/services"))
    assert {"services", "timestamp", "available"} <= set(body)
    for name in ("backend", "auth", "frontend"):
        service = body["services"][name]
        assert isinstance(service, dict)
        assert any(k.endswith("url") and isinstance(v, str) and v.startswith("http")
                   for k, v in service.items()), service


def test_discovery_points_at_the_stacks_own_endpoints(stack):
    body = httpx.get(stack.endpoints.api_url + "/api/discovery/services", trust_env=False).json()["services"]
    assert body["backend"]["url"] == stack.endpoints.api_url
    assert body["backend"]["websocket_url"] == stack.endpoints.ws_url
    assert body["auth"]["url"] == stack.endpoints.auth_url


def test_mcp_config_is_a_non_empty_dict(api):
    body = _json_ok(api.get("/api/mcp/config"))
    assert isinstance(body, dict) and body
    assert {"mcp_enabled", "servers", "tools"} <= set(body)


def test_mcp_servers_lists_connected_netra_mcp(api):
    body = _json_ok(api.get("/api/mcp/servers"))
    assert body["success"] is True
    assert isinstance(body["data"], list) and body["data"]
    assert all(isinstance(s, dict) and {"name", "status"} <= set(s) for s in body["data"])
    assert {"name": "netra-mcp", "status": "connected"}.items() <= body["data"][0].items()


@pytest.mark.parametrize("path", ["/health", "/api/health", "/api/discovery/services", "/api/mcp/config",
                                  "/api/mcp/servers"])
def test_required_routes_answer_200_without_auth_and_without_redirect(api, path):
    r = api.get(path)
    assert r.status_code == 200
    assert "authorization" not in {k.lower() for k in r.request.headers}
    json.loads(r.content)


@pytest.mark.parametrize("path", ["/health/", "/api/health/", "/api/agents/", "/api/mcp/servers/"])
def test_trailing_slash_is_not_redirected(api, path):
    r = api.get(path)
    assert not r.is_redirect and "location" not in r.headers, f"{path} -> {r.status_code} {r.headers}"
    assert r.status_code in (200, 404)
    assert isinstance(r.json(), dict)


@pytest.mark.parametrize("path", INFO_PATHS)
def test_information_probe_gives_200_json_or_404_json(api, path):
    r = api.get(path)
    assert r.status_code in (200, 404), f"{path}: {r.status_code}"
    body = r.json()
    assert isinstance(body, (dict, list))
    if r.status_code == 404:
        assert {"detail", "error_code"} <= set(body)


@pytest.mark.parametrize("method,path,body", ERROR_PROBES,
                         ids=[f"{m} {p} {'json' if not isinstance(b, str) else 'raw'}" for m, p, b in ERROR_PROBES])
def test_error_probe_gives_4xx_with_json_detail_and_error_code(api, method, path, body):
    kw = {"content": body} if isinstance(body, str) else ({"json": body} if body is not None else {})
    r = api.request(method, path, **kw)
    assert 400 <= r.status_code < 500, f"{method} {path}: {r.status_code} {r.text}"
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()
    assert err["detail"] and isinstance(err["error_code"], str) and err["error_code"]


def test_wrong_method_on_a_known_route_is_405_json(api):
    r = api.delete("/health")
    assert r.status_code == 405
    assert r.json()["error_code"]


def test_the_websocket_listener_serves_the_same_http_api(stack):
    """The ws proxy has the api as upstream: the same host:port serves HTTP and /ws."""
    with http(stack.endpoints.ws_url.replace("ws://", "http://").removesuffix("/ws")) as client:
        assert _json_ok(client.get("/health"))["service"] == "netra-ai-platform"
