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
from ..load import proc_status
from ..stats import latency_ms, summary
from .traffic import HTTP_CONCURRENCY, http_round

SIDES = ("direct", "toxiproxy", "gateway")
ADDED_P50_TARGET_MS = 0.5
RPS_RATIO_TARGET = 0.7


# The upstream's own server stays what every figure so far was measured with (h11 on asyncio's loop),
# named because uvicorn picks httptools and uvloop by default once they are installed (simstack's
# gateway needs them): the baselines must not move when simstack's dependencies do.
UPSTREAM_SERVER = ("--http", "h11", "--loop", "asyncio", "--ws", "websockets-sansio")


def _start_upstream() -> tuple[subprocess.Popen, str]:
    with bind(0, "") as s:
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "bench.upstream:app", "--port", str(port),
                             "--log-level", "warning", "--no-access-log", *UPSTREAM_SERVER],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(OwnService("api", url=url), url, 15, proc)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc, url


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
                http = asyncio.run(http_round(http_targets, ctx, SIDES))
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
    http_p50, http_p99 = per_side(lambda s: s["seq"]["p50_ms"]), per_side(lambda s: s["seq"]["p99_ms"])
    ws_p50 = per_side(lambda s: s["ws"]["p50_ms"])
    rps_ratio = statistics.median(r["gateway"]["rps"] / r["toxiproxy"]["rps"] for r in rounds)
    http_added = statistics.median(added(lambda s: s["seq"]["p50_ms"]))
    ws_added = statistics.median(added(lambda s: s["ws"]["p50_ms"]))
    errors = {s: sum(r[s]["errors"] for r in rounds) for s in SIDES}

    def figure(what: str, unit: str, sides: dict, **extra) -> dict:
        return entry(what, unit, sides["gateway"], baseline="Toxiproxy alone",
                     baseline_median=sides["toxiproxy"]["median"], per_side=sides, **extra)

    p50_target = f"gateway adds <= {ADDED_P50_TARGET_MS} ms"
    return {
        "gateway_http_rps": figure(
            f"HTTP GET /health req/s through Toxiproxy + gateway, {HTTP_CONCURRENCY} connections", "req/s", rps,
            ratio=round(rps_ratio, 3), target=f"ratio >= {RPS_RATIO_TARGET}", met=rps_ratio >= RPS_RATIO_TARGET,
            errors=errors),
        "gateway_http_p50_ms": figure(
            "HTTP GET /health p50 through Toxiproxy + gateway, sequential", "ms", http_p50,
            target=p50_target, met=http_added <= ADDED_P50_TARGET_MS, added_ms=round(http_added, 3)),
        "gateway_http_p99_ms": figure(
            "HTTP GET /health p99 through Toxiproxy + gateway, sequential", "ms", http_p99),
        "gateway_ws_rtt_p50_ms": figure(
            "WebSocket round trip p50 through Toxiproxy + gateway (frame out, echo back)", "ms", ws_p50,
            target=p50_target, met=ws_added <= ADDED_P50_TARGET_MS, added_ms=round(ws_added, 3)),
    }


# ------------------------------------------------------------------ capacity and memory

CAPACITY_STEPS = (1000, 2000)
QUICK_CAPACITY_STEPS = (10, 20)
IN_FLIGHT = 100
CAPACITY_TARGET = 2000
MEMORY_AT = 1000


async def _hold(url: str, n: int, gateway_pid: int | None) -> dict:
    """``n`` connections through the gateway at once (<= IN_FLIGHT handshakes in flight); each makes a
    round trip once all are open. Errors are counted; the gateway's memory is read while all are open."""
    gate, all_open, release = asyncio.Semaphore(IN_FLIGHT), asyncio.Event(), asyncio.Event()
    opened, errors, memory = [0], [], {}

    async def one() -> None:
        ws = None
        try:
            async with gate:
                ws = await connect(url, proxy=None, ping_interval=None, open_timeout=30, close_timeout=10)
            opened[0] += 1
            if opened[0] == n:
                all_open.set()
            await asyncio.wait_for(all_open.wait(), 60)
            await ws.send('{"type":"ping"}')
            await asyncio.wait_for(ws.recv(), 30)
            await asyncio.wait_for(release.wait(), 60)
        except Exception as exc:   # every failure is a counted error, not a crash of the figure
            errors.append(f"{exc.__class__.__name__}: {exc}"[:120])
            if not all_open.is_set() and opened[0] + len(errors) >= n:
                all_open.set()
        finally:
            if ws is not None:
                await ws.close()

    tasks = [asyncio.create_task(one()) for _ in range(n)]
    t0 = time.perf_counter()
    await asyncio.wait_for(all_open.wait(), 90)
    await asyncio.sleep(0.5)                       # the round trips of the last connections
    if gateway_pid is not None:
        memory = proc_status(gateway_pid)
    release.set()
    await asyncio.gather(*tasks)
    return {"n": n, "errors": len(errors), "first_errors": errors[:3], "open_s": round(time.perf_counter() - t0, 2),
            "memory_mb": memory}


@figure("gateway_capacity", "gateway: concurrent WebSocket connections with zero errors, memory at 1,000",
        ("gateway_ws_clients", "gateway_memory_1000_mb"))
def gateway_capacity(ctx) -> dict:
    proc, upstream = _start_upstream()
    steps = []
    try:
        with Stack(mode="local", profile="fast", own=[OwnService("api", url=upstream)]) as stack:
            pid = stack.launcher.procs["api-gateway"].pid
            for n in ctx.n(CAPACITY_STEPS, QUICK_CAPACITY_STEPS):
                steps.append(asyncio.run(_hold(stack.endpoints.ws_url, n, pid)))
                ctx.log(f"   {n} connections: {steps[-1]['errors']} errors, open in {steps[-1]['open_s']} s, "
                        f"gateway {steps[-1]['memory_mb']}")
                if steps[-1]["errors"]:
                    break
    finally:
        proc.terminate()
        proc.wait(5)
    passed = [s["n"] for s in steps if not s["errors"]]
    best = max(passed, default=0)
    at_memory = next((s for s in steps if s["n"] == ctx.n(MEMORY_AT, QUICK_CAPACITY_STEPS[0])), None)
    out = {"gateway_ws_clients": entry(
        "concurrent WebSocket connections through Toxiproxy + gateway, each a round trip, zero errors", "clients",
        summary([best]), target=f">= {CAPACITY_TARGET} clients", met=best >= CAPACITY_TARGET, steps=steps)}
    if at_memory and at_memory["memory_mb"]:
        out["gateway_memory_1000_mb"] = entry(
            f"gateway memory (VmHWM) holding {at_memory['n']} WebSocket connections", "MB",
            summary([at_memory["memory_mb"]["VmHWM"]], 1), rss_mb=at_memory["memory_mb"].get("VmRSS"))
    return out
