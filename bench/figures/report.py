"""Figure 6: the HTML report of a run with 1,000 WebSocket connections: time to build it, and its size.

The records are made the way the api stand-in makes them (``Timeline``/``Record`` from
``simstack.fakes.control``, lifecycle states from ``lifecycle.Connection``, frames from the agent's
real events), for 100 tests of 10 connections each: nine in ten complete an agent run (3 welcome
frames, start_agent, 5 events, client close 1000), one in ten meets the race (1011 before any frame,
the server's NotRegistered), plus one /health request per test. Baseline: ``json.dumps`` of the same
records (what reading the raw timeline costs), in the same run.
"""
from __future__ import annotations

import json
import random
import time

from simstack import report
from simstack.fakes import agent
from simstack.fakes.control import Timeline
from simstack.fakes.lifecycle import Connection

from ..harness import entry, figure
from ..stats import summary

TARGET_S, TARGET_BYTES = 1.0, 2_000_000


def synthetic_records(connections: int = 1000, per_test: int = 10, seed: int = 7) -> tuple[list[dict], list[str]]:
    """(records, test ids) of a run with ``connections`` WebSocket connections, as the stand-in records them."""
    rnd = random.Random(seed)
    tl = Timeline(maxlen=connections * 2)
    tests = []
    t = 1_700_000_000.0
    for i in range(connections):
        if i % per_test == 0:
            tests.append(f"tests/test_agents.py::test_agent_run[{i // per_test}]")
            tl.label = tests[-1]
            h = tl.open("http", method="GET", path="/health")
            h.started, h.status, h.duration_ms = t, 200, round(rnd.uniform(0.3, 2.5), 2)
        rec = tl.open("ws", method="GET", path="/ws")
        rec.started = t = t + rnd.uniform(0.001, 0.02)
        user = f"e2e-{i:012x}"
        conn = Connection(user)
        rec.user_id, rec.connection_id, rec.status = user, conn.id, 101
        conn.history = [("authenticated", 0.1), ("accepted", 0.3)]
        if i % 10 == 9:   # the race: 1011 before any frame
            conn.history.append(("closed", 0.7))
            rec.close_code, rec.close_reason, rec.closed_by = 1011, "Internal error", "server"
            rec.error = f"NotRegistered: connection {conn.id} is not registered"
            rec.faults.append("race_on_accept-5f2a1c")
        else:
            conn.history += [("registered", 0.4), ("ready", 200.9)]
            run = agent.new_run(agent.DEFAULT_AGENT, None, user, "Analyze my AI costs and suggest optimizations")
            frames = [(200.5, "out", {"type": "handshake_validation", "connection_id": conn.id, "status": "validated",
                                      "timestamp": agent.now_iso()}),
                      (200.7, "out", {"type": "ping", "timestamp": agent.now_iso()}),
                      (200.9, "out", {"type": "system_message", "timestamp": agent.now_iso(),
                                      "data": {"event": "connection_established", "connection_id": conn.id,
                                               "user_id": user, "connection_ready": True}}),
                      (201.5, "in", {"type": "start_agent", "payload": {"user_request": "Analyze my AI costs"}})]
            frames += [(202.0 + 300 * k, "out", agent.event(kind, run)) for k, kind in enumerate(agent.EVENTS)]
            for at, direction, msg in frames:
                rec.frame(direction, msg["type"], json.dumps(msg))
                rec.frames[-1] = (at, *rec.frames[-1][1:])
            conn.history.append(("closed", 1405.0))
            rec.close_code, rec.closed_by = 1000, "client"
        rec.states = list(conn.history)
    return tl.since(0), tests


@figure("report", "HTML report of 1,000 connections: build time and size", ("report_1000_s", "report_1000_bytes"))
def report_figure(ctx) -> dict:
    records, tests = synthetic_records(ctx.n(1000, 50))
    reps = ctx.n(7, 1)
    build, raw, size = [], [], 0
    for _ in range(reps):
        t0 = time.perf_counter()
        html = report.render(report.by_label(records, order=tests), "bench", layout="rows")
        build.append(time.perf_counter() - t0)
        size = len(html.encode())
        t0 = time.perf_counter()
        raw_size = len(json.dumps(records).encode())
        raw.append(time.perf_counter() - t0)
    built, base = summary(build, 4), summary(raw, 4)
    ratio = round(built["median"] / base["median"], 2) if base["median"] else None
    ctx.log(f"   report of {len(records)} records: {built['median']} s, {size:,} bytes (raw JSON {raw_size:,})")
    return {
        "report_1000_s": entry("HTML report of 1,000 connections: build time", "s", built,
                               baseline="json.dumps of the same records", baseline_median=base["median"],
                               ratio=ratio, target=f"< {TARGET_S} s", met=built["median"] < TARGET_S),
        "report_1000_bytes": entry("HTML report of 1,000 connections: size", "bytes",
                                   summary([size], 0), headline=f"{size / 1e6:.2f} MB (raw records {raw_size / 1e6:.2f} MB)",
                                   target=f"< {TARGET_BYTES / 1e6:.0f} MB", met=size < TARGET_BYTES,
                                   raw_records_bytes=raw_size),
    }
