"""Figure: what recording costs, and how fast a replay answers (issue 12), local mode.

- Recording: one upstream (``bench/upstream.py``) behind two stacks, one forwarding through the
  gateway, one forwarding and recording a cassette; HTTP GET /health p50 of sequential requests,
  alternating request by request. Target: recording adds at most 1 ms p50 per HTTP request.
- Replay: a cassette of the api stand-in's GET /health, served by a replay stack (Toxiproxy, gateway,
  cassette player) against a stand-in stack (Toxiproxy, stand-in), both fast profile, taking turns:
  req/s on 8 keep-alive connections and sequential p50. The replay runs with ``--replay-speed 0``
  (no recorded latency waited for: the recorded latency is the stand-in's own answer time plus the
  recording hop, which speed 1.0 adds on purpose). Target: at least as fast as the stand-ins.
"""
from __future__ import annotations

import asyncio
import shutil
import statistics
import tempfile

import httpx

from simstack.own import OwnService
from simstack.recording import RecordOptions, replaying
from simstack.stack import Stack

from ..harness import entry, figure
from ..stats import summary
from .gateway import _start_upstream
from .traffic import HTTP_CONCURRENCY, http_round

RECORD_ADDED_TARGET_MS = 1.0


def _record_round(ctx, upstream: str, tmp: str) -> list[dict]:
    rounds = []
    with Stack(mode="local", profile="fast", own=[OwnService("api", url=upstream)]) as plain, \
            Stack(mode="local", profile="fast", own=[OwnService("api", url=upstream)],
                  cassette=RecordOptions.prepare(f"{tmp}/record-bench")) as recording:
        targets = {"forwarding": plain.endpoints.api_url, "recording": recording.endpoints.api_url}
        for i in range(ctx.n(5, 1)):
            r = asyncio.run(http_round(targets, ctx, ("forwarding", "recording")))
            rounds.append(r)
            ctx.log("   round %d: http p50 %.3f / %.3f ms (forwarding / recording)" % (
                i, r["forwarding"]["seq"]["p50_ms"], r["recording"]["seq"]["p50_ms"]))
    return rounds


def _replay_round(ctx, tmp: str) -> list[dict]:
    out = f"{tmp}/replay-bench"
    rounds = []
    with Stack(mode="local", profile="fast") as standins:
        e = standins.endpoints
        with Stack(mode="local", profile="fast", own=[OwnService("api", url=e.api_url)],
                   cassette=RecordOptions.prepare(out)) as rec:
            httpx.get(f"{rec.endpoints.api_url}/health", trust_env=False).raise_for_status()
        with Stack(mode="local", profile="fast", **replaying(out, speed=0)) as replay:
            targets = {"stand-ins": e.api_url, "replay": replay.endpoints.api_url}
            for i in range(ctx.n(5, 1)):
                r = asyncio.run(http_round(targets, ctx, ("stand-ins", "replay")))
                rounds.append(r)
                ctx.log("   round %d: rps %.0f / %.0f; http p50 %.3f / %.3f ms (stand-ins / replay)" % (
                    i, r["stand-ins"]["rps"], r["replay"]["rps"], r["stand-ins"]["seq"]["p50_ms"],
                    r["replay"]["seq"]["p50_ms"]))
    return rounds


@figure("cassette", "record and replay: what recording adds per HTTP request; replay vs the stand-ins",
        ("record_http_added_p50_ms", "replay_http_rps", "replay_http_p50_ms"))
def cassette(ctx) -> dict:
    tmp = tempfile.mkdtemp(prefix="simstack-bench-cassette-")
    proc, upstream = _start_upstream()
    try:
        rec = _record_round(ctx, upstream, tmp)
    finally:
        proc.terminate()
        proc.wait(5)
    try:
        rep = _replay_round(ctx, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    added = [r["recording"]["seq"]["p50_ms"] - r["forwarding"]["seq"]["p50_ms"] for r in rec]
    added_median = statistics.median(added)
    rps_ratio = statistics.median(r["replay"]["rps"] / r["stand-ins"]["rps"] for r in rep)
    p50_ratio = statistics.median(r["replay"]["seq"]["p50_ms"] / r["stand-ins"]["seq"]["p50_ms"] for r in rep)
    return {
        "record_http_added_p50_ms": entry(
            "HTTP GET /health p50 added by recording (Toxiproxy + gateway + recorder vs Toxiproxy + gateway)", "ms",
            summary(added, 3), baseline="forwarding without recording",
            baseline_median=summary([r["forwarding"]["seq"]["p50_ms"] for r in rec], 3)["median"],
            target=f"<= {RECORD_ADDED_TARGET_MS} ms", met=added_median <= RECORD_ADDED_TARGET_MS,
            recording_p50=summary([r["recording"]["seq"]["p50_ms"] for r in rec], 3)),
        "replay_http_rps": entry(
            f"HTTP GET /health req/s from a replay (--replay-speed 0), {HTTP_CONCURRENCY} connections", "req/s",
            summary([r["replay"]["rps"] for r in rep], 1), baseline="the api stand-in",
            baseline_median=summary([r["stand-ins"]["rps"] for r in rep], 1)["median"], ratio=round(rps_ratio, 3),
            target="ratio >= 1.0", met=rps_ratio >= 1.0),
        "replay_http_p50_ms": entry(
            "HTTP GET /health p50 from a replay (--replay-speed 0), sequential", "ms",
            summary([r["replay"]["seq"]["p50_ms"] for r in rep], 3), baseline="the api stand-in",
            baseline_median=summary([r["stand-ins"]["seq"]["p50_ms"] for r in rep], 3)["median"],
            ratio=round(p50_ratio, 3), target="ratio <= 1.0", met=p50_ratio <= 1.0),
    }
