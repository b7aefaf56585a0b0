"""The backend HTTP API of staging (CONTRACT §2): no auth, JSON everywhere."""
from __future__ import annotations

import time
from datetime import datetime, timezone

from fastapi import APIRouter, HTTPException, Request

from . import strictjson
from .agent import KNOWN_AGENTS, now_iso

SERVICE = "netra-ai-platform"
VERSION = "1.0.0"
STARTED = time.time()


def _info(kind: str, items: list | None = None, **extra) -> dict:
    return {"success": True, "data": items if items is not None else [], "kind": kind, "timestamp": now_iso(), **extra}


def _agents() -> list[dict]:
    return [{"name": a, "type": a, "status": "available", "description": f"{a.replace('_', ' ')} for cost, "
             "performance and data analysis"} for a in KNOWN_AGENTS]


def _info_route(kind: str, items: list | None = None, **extra):
    async def route() -> dict:
        return _info(kind, items, **extra)
    return route


def router() -> APIRouter:
    r = APIRouter()

    @r.get("/health")
    async def health() -> dict:
        return {"status": "healthy", "service": SERVICE, "version": VERSION, "timestamp": time.time()}

    @r.get("/health/ready")
    async def ready() -> dict:
        return {"status": "ready", "service": SERVICE, "timestamp": time.time()}

    @r.get("/api/health")
    async def api_health() -> dict:
        return {"status": "healthy", "timestamp": datetime.now(timezone.utc).isoformat(),
                "uptime_seconds": round(time.time() - STARTED, 3),
                "checks": {"database": "healthy", "redis": "healthy", "websocket": "healthy", "auth": "healthy"},
                "version": VERSION, "environment": "staging"}

    @r.get("/api/health/metrics")
    async def health_metrics() -> dict:
        return {"uptime_seconds": round(time.time() - STARTED, 3), "requests_total": None, "timestamp": now_iso()}

    @r.get("/api/discovery/services")
    async def discovery(request: Request) -> dict:
        urls = getattr(request.app.state, "public_urls", None) or {}
        base = urls.get("api_url") or str(request.base_url).rstrip("/")
        ws = urls.get("ws_url") or base.replace("http", "ws", 1) + "/ws"
        auth = urls.get("auth_url") or base
        return {"services": {
                    "backend": {"url": base, "api_url": f"{base}/api", "websocket_url": ws, "status": "healthy"},
                    "auth": {"url": auth, "status": "healthy"},
                    "frontend": {"url": base, "status": "healthy"}},
                "timestamp": now_iso(), "available": True}

    @r.get("/api/discovery/agents")
    async def discovery_agents() -> dict:
        return _info("agents", _agents())

    @r.get("/api/mcp/config")
    async def mcp_config() -> dict:
        return {"mcp_enabled": True, "version": VERSION,
                "servers": [{"name": "netra-mcp", "transport": "websocket", "enabled": True}],
                "tools": ["workload_analyzer", "data_query_engine", "cost_optimizer"]}

    @r.get("/api/mcp/servers")
    async def mcp_servers() -> dict:
        return {"success": True, "data": [{"name": "netra-mcp", "status": "connected", "transport": "websocket",
                                           "tools": 3}]}

    for path in ("/api/agents", "/api/agents/list"):
        r.add_api_route(path, _info_route("agents", _agents()), methods=["GET"])

    info_paths = {
        "/api/agents/config": ("agent_config", {"default_agent": "supervisor_agent", "agents": list(KNOWN_AGENTS)}),
        "/api/configuration": ("configuration", {"environment": "staging"}),
        "/api/settings": ("settings", {"environment": "staging"}),
        "/api/agents/status": ("agent_status", {"status": "idle"}),
        "/api/agents/active": ("active_agents", {}),
        "/api/execution/status": ("execution_status", {"status": "idle"}),
        "/api/jobs": ("jobs", {}), "/api/tasks": ("tasks", {}),
        "/api/metrics": ("metrics", {}), "/api/metrics/agents": ("agent_metrics", {}),
        "/api/metrics/pipeline": ("pipeline_metrics", {}), "/api/stats": ("stats", {}),
        "/api/performance": ("performance", {}),
        "/api/threads": ("threads", {}), "/api/conversations": ("conversations", {}),
        "/api/chat": ("chat", {}), "/api/chat/messages": ("chat_messages", {}),
    }
    for path, (kind, extra) in info_paths.items():
        r.add_api_route(path, _info_route(kind, **extra), methods=["GET"])

    @r.post("/api/agents/execute")
    async def execute(request: Request) -> dict:
        body = await _json(request)
        agent = body.get("agent_type") or body.get("agent") if isinstance(body, dict) else None
        message = (body.get("message") or body.get("user_request")) if isinstance(body, dict) else None
        if not isinstance(agent, str) or not agent or not isinstance(message, str) or not message.strip():
            raise HTTPException(422, detail={"message": "body needs agent_type and a non-empty message",
                                             "error_code": "INVALID_REQUEST"})
        return _run_agent(agent)

    @r.post("/api/agents/{agent}/execute")
    async def execute_named(agent: str, request: Request) -> dict:
        await _json(request)
        return _run_agent(agent)

    @r.get("/api/pipeline/{pipeline_id}")
    async def pipeline(pipeline_id: str) -> dict:
        raise HTTPException(404, detail={"message": f"pipeline {pipeline_id!r} not found", "error_code": "NOT_FOUND"})

    @r.get("/api/messages")
    async def messages() -> dict:
        return _info("messages")

    @r.get("/api/messages/{message_id}")
    async def message(message_id: str) -> dict:
        raise HTTPException(404, detail={"message": f"message {message_id!r} not found", "error_code": "NOT_FOUND"})

    @r.post("/api/messages")
    async def post_message(request: Request) -> dict:
        body = await _json(request)
        content = body.get("content") if isinstance(body, dict) else None
        if not isinstance(content, str) or not content.strip():
            raise HTTPException(422, detail={"message": "body needs a non-empty 'content' string",
                                             "error_code": "INVALID_REQUEST"})
        return {"success": True, "data": {"id": f"msg_{int(time.time() * 1000)}", "content": content}}

    return r


async def _json(request: Request):
    """The body as JSON, ``{}`` when empty; invalid JSON is answered 400 INVALID_JSON (see common.py)."""
    raw = await request.body()
    return strictjson.loads(raw) if raw else {}


def _run_agent(agent: str) -> dict:
    if agent not in KNOWN_AGENTS:
        raise HTTPException(404, detail={"message": f"Agent '{agent}' not found", "error_code": "AGENT_NOT_FOUND",
                                         "known_agents": list(KNOWN_AGENTS)})
    return {"success": True, "data": {"agent": agent, "status": "accepted",
                                      "message": "use the WebSocket at /ws to receive agent events"}}
