"""Health, discovery and agent configuration over HTTP (CONTRACT §2). No auth on these calls."""
from __future__ import annotations

ERROR_PROBES = [("POST", "/api/agents/nonexistent/execute", {}), ("POST", "/api/agents/execute", {"bogus": 1}),
                ("GET", "/api/pipeline/not-a-pipeline", None), ("PUT", "/api/agents/execute", {}),
                ("GET", "/api/nonexistent", None), ("GET", "/api/messages/not-a-message", None),
                ("POST", "/api/messages", {"bad": True}), ("GET", "/etc/passwd", None)]


def test_health_reports_the_platform(http):
    r = http.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "healthy"
    assert body["service"] == "netra-ai-platform"
    assert body["version"] == "1.0.0"
    assert isinstance(body["timestamp"], float)


def test_api_health_reports_staging_checks(http):
    r = http.get("/api/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "healthy" and body["environment"] == "staging"
    assert {"timestamp", "uptime_seconds", "checks", "version"} <= set(body)
    assert isinstance(body["checks"], dict)


def test_discovery_lists_backend_auth_and_frontend(http):
    r = http.get("/api/discovery/services")
    assert r.status_code == 200
    body = r.json()
    assert {"backend", "auth", "frontend"} <= set(body["services"])
    assert all(isinstance(s, dict) and any("url" in k for k in s) for s in body["services"].values())
    assert "timestamp" in body and "available" in body


def test_agent_configuration_lists_mcp_servers(http):
    config = http.get("/api/mcp/config")
    assert config.status_code == 200
    assert isinstance(config.json(), dict) and config.json()
    servers = http.get("/api/mcp/servers")
    assert servers.status_code == 200
    body = servers.json()
    assert body["success"] is True
    assert body["data"] and all({"name", "status"} <= set(s) for s in body["data"])


def test_bad_requests_answer_4xx_json(http):
    answers = {f"{method} {path}": http.request(method, path, json=body) for method, path, body in ERROR_PROBES}
    wrong = {probe: r.status_code for probe, r in answers.items() if not 400 <= r.status_code < 500}
    assert not wrong, f"expected 4xx: {wrong}"
    for probe, r in answers.items():
        assert isinstance(r.json(), dict), f"{probe}: body is not a JSON object: {r.text[:120]}"
