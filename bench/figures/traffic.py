"""Figure 3: what the Toxiproxy path costs, local mode.

Everything is measured straight to the api stand-in (``Stack.upstreams``) and through its Toxiproxy
listener, taking turns at the finest grain the measurement allows, because the client shares the
cores with the stack (and, on a shared machine, with whatever else runs): HTTP throughput in short
alternating blocks, sequential HTTP requests and WebSocket agent runs one by one, alternating. Each
round yields one proxy/direct ratio; a figure's ratio is the median of its rounds' ratios.

- HTTP: GET /health with a raw asyncio client. Requests/s on 8 keep-alive connections; p50/p99 of
  sequential requests on one keep-alive connection (latency without queueing).
- WebSocket: sequential agent runs, connect -> agent_completed (handshake, start_agent, the three
  welcome frames and five events), fast profile; and the same with the staging profile (the one
  suites run), concurrent runs, where the proxy's fixed cost meets realistic timings.
"""
from __future__ import annotations

import asyncio
import statistics

from simstack.stack import Stack

from ..harness import entry, figure
from ..load import agent_run, http_alternating, http_load
from ..stats import latency_ms, percentile, summary

WS_P50_TARGET = 1.15
HTTP_CONCURRENCY = 8
SIDES = ("direct", "proxy")


def _targets(stack: Stack) -> dict:
    return {"http": {"direct": stack.upstreams["api"], "proxy": stack.endpoints.api_url},
            "ws": {"direct": f"ws://{stack.upstreams['api']}/ws", "proxy": stack.endpoints.ws_url}}


async def http_round(targets: dict, ctx, sides: tuple[str, ...] = SIDES) -> dict:
    """Throughput in short alternating blocks, then sequential latency request by request, per side."""
    done = {s: 0 for s in sides}
    spent = {s: 0.0 for s in sides}
    loaded = {s: [] for s in sides}
    errors = {s: 0 for s in sides}
    for k in range(ctx.n(6, 1)):
        for side in (sides if k % 2 == 0 else sides[::-1]):
            r = await http_load(targets[side], concurrency=HTTP_CONCURRENCY, max_seconds=ctx.n(0.4, 0.2))
            done[side] += len(r.latencies)
            spent[side] += r.elapsed_s
            loaded[side] += r.latencies
            errors[side] += r.errors
    seq = dict(zip(sides, await http_alternating([targets[s] for s in sides], rounds=ctx.n(800, 30))))
    return {s: {"rps": done[s] / spent[s], "errors": errors[s], "loaded": latency_ms(loaded[s]),
                "seq": latency_ms(seq[s])} for s in sides}


async def _ws_round(targets: dict, token: str, n: int) -> dict:
    for side in SIDES:                      # warm-up: first connections pay for caches
        await agent_run(targets[side], token)
    runs = {s: [] for s in SIDES}
    for i in range(n):
        for side in (SIDES if i % 2 == 0 else SIDES[::-1]):
            runs[side].append(await agent_run(targets[side], token))
    return {s: {"ws": latency_ms([r.seconds for r in runs[s] if r.ok]),
                "ws_errors": sum(not r.ok for r in runs[s])} for s in SIDES}


async def _ws_concurrent_round(targets: dict, token: str, n: int) -> dict:
    """``n`` runs per side at once (staging timings are mostly waiting, so they hardly interfere)."""
    sides = [s for s in SIDES for _ in range(n)]
    runs = await asyncio.gather(*(agent_run(targets[s], token, timeout_s=15) for s in sides))
    out = {s: [r.seconds for r, side in zip(runs, sides) if side == s and r.ok] for s in SIDES}
    return {s: {"p50_ms": percentile(out[s], 50) * 1000, "errors": n - len(out[s])} for s in SIDES}


def _pair(rounds: list[dict], get, title: str, unit: str, **details) -> dict:
    proxy = [get(r["proxy"]) for r in rounds]
    direct = [get(r["direct"]) for r in rounds]
    ratios = [p / d for p, d in zip(proxy, direct) if d]
    return entry(title, unit, summary(proxy, 3), baseline="direct to the stand-in",
                 baseline_median=summary(direct, 3)["median"],
                 ratio=round(statistics.median(ratios), 3) if ratios else None,
                 ratios_per_round=[round(r, 3) for r in ratios], direct=summary(direct, 3), **details)


@figure("traffic", "proxy path vs direct: HTTP req/s and latency, WebSocket agent-run latency",
        ("http_rps", "http_p50_ms", "http_p99_ms", "ws_run_p50_ms", "ws_run_p99_ms", "ws_run_p50_ms_staging"))
def traffic(ctx) -> dict:
    rounds = []
    with Stack(mode="local", profile="fast") as stack:
        token, targets = stack.token(), _targets(stack)
        for i in range(ctx.n(5, 1)):
            http = asyncio.run(http_round(targets["http"], ctx))
            ws = asyncio.run(_ws_round(targets["ws"], token, ctx.n(300, 5)))
            rounds.append({s: {**http[s], **ws[s]} for s in SIDES})
            r = rounds[-1]
            ctx.log(f"   round {i}: rps {r['direct']['rps']:.0f} direct / {r['proxy']['rps']:.0f} proxy; "
                    f"ws p50 {r['direct']['ws']['p50_ms']:.2f} / {r['proxy']['ws']['p50_ms']:.2f} ms")
    total = lambda key: {s: sum(r[s][key] for r in rounds) for s in SIDES}   # noqa: E731
    out = {
        "http_rps": _pair(rounds, lambda s: s["rps"], f"HTTP GET /health requests/s, {HTTP_CONCURRENCY} "
                          "connections", "req/s", errors=total("errors"),
                          loaded_p99_ms={s: summary([r[s]["loaded"]["p99_ms"] for r in rounds], 3) for s in SIDES}),
        "http_p50_ms": _pair(rounds, lambda s: s["seq"]["p50_ms"], "HTTP GET /health p50, sequential", "ms",
                             samples_per_round=rounds[0]["proxy"]["seq"]["samples"]),
        "http_p99_ms": _pair(rounds, lambda s: s["seq"]["p99_ms"], "HTTP GET /health p99, sequential", "ms"),
        "ws_run_p50_ms": _pair(rounds, lambda s: s["ws"]["p50_ms"], "WebSocket agent run p50, fast profile "
                               "(connect -> agent_completed)", "ms", errors=total("ws_errors"),
                               samples_per_round=rounds[0]["proxy"]["ws"]["samples"]),
        "ws_run_p99_ms": _pair(rounds, lambda s: s["ws"]["p99_ms"], "WebSocket agent run p99, fast profile", "ms"),
    }
    e = out["ws_run_p50_ms"]
    e.update(target=f"ratio <= {WS_P50_TARGET}", met=e["ratio"] is not None and e["ratio"] <= WS_P50_TARGET)

    staging = []
    with Stack(mode="local", profile="staging") as stack:
        token, targets = stack.token(), _targets(stack)
        for _ in range(ctx.n(3, 1)):
            staging.append(asyncio.run(_ws_concurrent_round(targets["ws"], token, ctx.n(20, 2))))
    out["ws_run_p50_ms_staging"] = _pair(
        staging, lambda s: s["p50_ms"], "WebSocket agent run p50, staging profile (concurrent runs)", "ms",
        errors={s: sum(r[s]["errors"] for r in staging) for s in SIDES},
        runs_per_side_per_round=ctx.n(20, 2))
    ctx.log(f"   staging-profile ws p50 ratio {out['ws_run_p50_ms_staging']['ratio']}")
    return out
