"""Figure: what the gateway (the fault layer in front of a service of yours) costs, local mode.

One upstream (``bench/upstream.py``, a plain Starlette app under uvicorn, started here and given to
the stack with ``--api-url``) is measured three ways, taking turns at the finest grain the
measurement allows: ``direct`` to the upstream, ``toxiproxy`` through a Toxiproxy listener straight
to it (created for this figure), and ``gateway`` through the stack's api listener (Toxiproxy, then
the gateway, then the upstream) - the path a suite takes.

- HTTP GET /health: requests/s on 8 keep-alive connections in short alternating blocks; p50/p99 of
  sequential requests on one keep-alive connection per path, request by request.
- WebSocket: round trips (a text frame out, its echo back) on one open connection per path,
  alternating frame by frame; p50.

Targets (issue 11): the gateway adds at most 0.5 ms p50 per HTTP request and per WebSocket round trip
over Toxiproxy alone, and its HTTP throughput is at least 0.7x Toxiproxy's alone.
"""
from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import time

from websockets.asyncio.client import connect

from simstack.launchers.local import bind
from simstack.own import OwnService, wait_healthy
from simstack.stack import Stack
from simstack.toxiproxy import Toxiproxy

from ..harness import ROOT, entry, figure
from ..load import http_alternating, http_load
from ..stats import latency_ms, summary

SIDES = ("direct", "toxiproxy", "gateway")
HTTP_CONCURRENCY = 8
ADDED_P50_TARGET_MS = 0.5
RPS_RATIO_TARGET = 0.7


def _start_upstream() -> tuple[subprocess.Popen, str]:
    with bind(0, "") as s:
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "bench.upstream:app", "--port", str(port),
                             "--log-level", "warning", "--no-access-log", "--ws", "websockets-sansio"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(OwnService("api", url=url), url, 15, proc)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc, url


async def _http_round(targets: dict, ctx) -> dict:
    done, errors = {s: 0 for s in SIDES}, {s: 0 for s in SIDES}
    spent = {s: 0.0 for s in SIDES}
    for k in range(ctx.n(6, 1)):
        for side in (SIDES if k % 2 == 0 else SIDES[::-1]):
            r = await http_load(targets[side], concurrency=HTTP_CONCURRENCY, max_seconds=ctx.n(0.4, 0.2))
            done[side] += len(r.latencies)
            spent[side] += r.elapsed_s
            errors[side] += r.errors
    seq = dict(zip(SIDES, await http_alternating([targets[s] for s in SIDES], rounds=ctx.n(800, 30))))
    return {s: {"rps": done[s] / spent[s], "errors": errors[s], "seq": latency_ms(seq[s])} for s in SIDES}


async def _ws_round(ws_urls: dict, n: int) -> dict:
    conns = {s: await connect(ws_urls[s], proxy=None, ping_interval=None, compression=None) for s in SIDES}
    try:
        rtts = {s: [] for s in SIDES}
        for i in range(n + 20):                 # the first 20 warm up
            for side in (SIDES if i % 2 == 0 else SIDES[::-1]):
                t0 = time.perf_counter()
                await conns[side].send('{"type":"ping"}')
                await conns[side].recv()
                if i >= 20:
                    rtts[side].append(time.perf_counter() - t0)
    finally:
        for c in conns.values():
            await c.close()
    return {s: latency_ms(rtts[s]) for s in SIDES}


def _side(rounds: list[dict], get, side: str) -> dict:
    return summary([get(r[side]) for r in rounds], 3)


@figure("gateway", "gateway in front of a service of yours: HTTP req/s, p50/p99, WebSocket round trip p50",
        ("gateway_http_rps", "gateway_http_p50_ms", "gateway_http_p99_ms", "gateway_ws_rtt_p50_ms"))
def gateway(ctx) -> dict:
    proc, upstream = _start_upstream()
    rounds = []
    try:
        with Stack(mode="local", profile="fast", own=[OwnService("api", url=upstream)]) as stack:
            toxi = Toxiproxy(stack.endpoints.toxiproxy_url)
            try:
                alone = toxi.create_proxy("bench_upstream", "127.0.0.1:0", upstream.removeprefix("http://"))
            finally:
                toxi.close()
            via_toxi = f"http://{alone['listen']}"
            http_targets = {"direct": upstream, "toxiproxy": via_toxi, "gateway": stack.endpoints.api_url}
            ws_targets = {"direct": upstream.replace("http", "ws") + "/ws",
                          "toxiproxy": via_toxi.replace("http", "ws") + "/ws", "gateway": stack.endpoints.ws_url}
            for i in range(ctx.n(5, 1)):
                http = asyncio.run(_http_round(http_targets, ctx))
                ws = asyncio.run(_ws_round(ws_targets, ctx.n(600, 20)))
                rounds.append({s: {**http[s], "ws": ws[s]} for s in SIDES})
                r = rounds[-1]
                ctx.log("   round %d: rps %s; http p50 %s ms; ws rtt p50 %s ms" % (
                    i, " / ".join(f"{r[s]['rps']:.0f}" for s in SIDES),
                    " / ".join(f"{r[s]['seq']['p50_ms']:.3f}" for s in SIDES),
                    " / ".join(f"{r[s]['ws']['p50_ms']:.3f}" for s in SIDES)))
    finally:
        proc.terminate()
        proc.wait(5)

    def per_side(get) -> dict:
        return {s: _side(rounds, get, s) for s in SIDES}

    def added(get) -> list[float]:
        return [get(r["gateway"]) - get(r["toxiproxy"]) for r in rounds]

    rps = per_side(lambda s: s["rps"])
    rps_ratio = statistics.median(r["gateway"]["rps"] / r["toxiproxy"]["rps"] for r in rounds)
    http_added = statistics.median(added(lambda s: s["seq"]["p50_ms"]))
    ws_added = statistics.median(added(lambda s: s["ws"]["p50_ms"]))
    errors = {s: sum(r[s]["errors"] for r in rounds) for s in SIDES}
    return {
        "gateway_http_rps": entry(
            f"HTTP GET /health req/s through Toxiproxy + gateway, {HTTP_CONCURRENCY} connections", "req/s",
            rps["gateway"], baseline="Toxiproxy alone", baseline_median=rps["toxiproxy"]["median"],
            ratio=round(rps_ratio, 3), target=f"ratio >= {RPS_RATIO_TARGET}", met=rps_ratio >= RPS_RATIO_TARGET,
            per_side=rps, errors=errors),
        "gateway_http_p50_ms": entry(
            "HTTP GET /health p50 through Toxiproxy + gateway, sequential", "ms",
            per_side(lambda s: s["seq"]["p50_ms"])["gateway"], baseline="Toxiproxy alone",
            baseline_median=per_side(lambda s: s["seq"]["p50_ms"])["toxiproxy"]["median"],
            target=f"gateway adds <= {ADDED_P50_TARGET_MS} ms", met=http_added <= ADDED_P50_TARGET_MS,
            added_ms=round(http_added, 3), per_side=per_side(lambda s: s["seq"]["p50_ms"])),
        "gateway_http_p99_ms": entry(
            "HTTP GET /health p99 through Toxiproxy + gateway, sequential", "ms",
            per_side(lambda s: s["seq"]["p99_ms"])["gateway"], baseline="Toxiproxy alone",
            baseline_median=per_side(lambda s: s["seq"]["p99_ms"])["toxiproxy"]["median"],
            per_side=per_side(lambda s: s["seq"]["p99_ms"])),
        "gateway_ws_rtt_p50_ms": entry(
            "WebSocket round trip p50 through Toxiproxy + gateway (frame out, echo back)", "ms",
            per_side(lambda s: s["ws"]["p50_ms"])["gateway"], baseline="Toxiproxy alone",
            baseline_median=per_side(lambda s: s["ws"]["p50_ms"])["toxiproxy"]["median"],
            target=f"gateway adds <= {ADDED_P50_TARGET_MS} ms", met=ws_added <= ADDED_P50_TARGET_MS,
            added_ms=round(ws_added, 3), per_side=per_side(lambda s: s["ws"]["p50_ms"])),
    }
