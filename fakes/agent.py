"""The five agent events and their canned content.

Clients score answers on words such as metrics, analysis, insights, patterns,
performance, cost, efficiency and optimization, so the text reads like a real
analysis. Every event carries the fields of every client generation (CONTRACT §4).
"""
from __future__ import annotations

import uuid
from datetime import datetime, timezone

from simstack.shared.constants import AGENT_EVENTS

KNOWN_AGENTS = ("supervisor_agent", "unified_data_agent", "optimization_agent")
DEFAULT_AGENT = "supervisor_agent"
EVENTS = AGENT_EVENTS

TOOLS = {
    "supervisor_agent": "workload_analyzer",
    "unified_data_agent": "data_query_engine",
    "optimization_agent": "cost_optimizer",
}

TOOL_RESULT = (
    "Analysis of the last 30 days of usage metrics complete: 1,284 requests examined, "
    "p95 latency 840 ms, three recurring cost patterns found, and insights on model selection "
    "and cache hit rate extracted."
)

FINAL_RESPONSE = (
    "Findings: the analysis of your workload metrics shows that 38% of spend goes to requests that a "
    "smaller model answers with equal quality, and the cache hit rate is 22%, well below the 60% the "
    "traffic patterns allow. Recommendations: 1. Route classification and extraction requests to the "
    "smaller model to cut cost by about 31% with no loss in performance. 2. Enable response caching for "
    "repeated prompts to raise efficiency and lower p95 latency by roughly 300 ms. 3. Batch the nightly "
    "data insights jobs to reduce per-request overhead. 4. Review the optimization report weekly and "
    "track cost per successful request as the key performance indicator."
)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def new_run(agent: str, thread_id: str | None, user_id: str, request: str) -> dict:
    return {"run_id": f"run_{uuid.uuid4().hex[:12]}", "thread_id": thread_id or f"thread_{uuid.uuid4().hex[:12]}",
            "agent_name": agent, "user_id": user_id, "request": request}


def event(kind: str, run: dict) -> dict:
    """One agent event for ``run`` (from :func:`new_run`)."""
    agent, tool = run["agent_name"], TOOLS[run["agent_name"]]
    payload: dict = {"run_id": run["run_id"], "agent_name": agent}
    top: dict = {}
    if kind == "agent_started":
        payload.update(message=f"{agent} started", user_request=run["request"])
    elif kind == "agent_thinking":
        payload.update(thought="Reviewing usage metrics, cost breakdown and performance patterns for the request",
                       reasoning="Collect metrics first, then look for cost and efficiency patterns")
    elif kind == "tool_executing":
        params = {"query": run["request"], "window_days": 30}
        payload.update(tool_name=tool, parameters=params)
        top["tool"] = tool
    elif kind == "tool_completed":
        payload.update(tool_name=tool, result=TOOL_RESULT, results={"summary": TOOL_RESULT, "requests": 1284,
                                                                     "p95_latency_ms": 840, "patterns": 3})
        top.update(tool=tool, result=TOOL_RESULT)
    elif kind == "agent_completed":
        payload.update(final_response=FINAL_RESPONSE, status="completed",
                       result={"response": FINAL_RESPONSE})
        top["response"] = FINAL_RESPONSE
    else:
        raise ValueError(f"unknown agent event {kind!r}")
    return {"type": kind, "timestamp": now_iso(), "run_id": run["run_id"], "thread_id": run["thread_id"],
            "agent_name": agent, "agent": agent, "user_id": run["user_id"], **top,
            "payload": payload, "data": dict(payload)}
