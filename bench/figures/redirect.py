"""Figure 6: what redirecting staging hostnames costs, local mode, fast profile.

- Start-up: ``Redirection.start`` for two hosts (the throwaway CA, one certificate per host, the
  front's listeners and thread, trust, the resolver), alternating with plain ``Stack.start()`` runs;
  the baseline is the stack's own start, the ratio (stack + redirect) / stack.
- Per HTTP request and per WebSocket connection, three ways to the same stack, taking turns operation
  by operation: **plain** (the stack's own ``api``/``ws`` Toxiproxy listener, no TLS, no front),
  **front** (``http://`` / ``ws://`` to the redirected name: resolver + front, no TLS) and **tls**
  (``https://`` / ``wss://`` to the redirected name: what a suite with hard-coded URLs pays). One
  client SSL context is reused, as a client session would; its creation is not counted.
  HTTP: GET /health on a new connection each time (what ``httpx.get``/``requests.get`` do) and on one
  keep-alive connection; WebSocket: connect -> the server's first frame (handshake and upgrade).
"""
from __future__ import annotations

import asyncio
import os
import ssl
import statistics
import time

from websockets.asyncio.client import connect

from simstack.client import staging_headers
from simstack.redirect import Redirection, parse_redirects
from simstack.stack import Stack

from ..harness import entry, figure
from ..load import _exchange, host_port
from ..stats import ratio, summary

API, AUTH = "api.staging.bench.invalid", "auth.staging.bench.invalid"
SIDES = ("plain", "front", "tls")


def _redirects():
    return parse_redirects([(f"{API}=api", "bench"), (f"{AUTH}=auth", "bench")])


def _start_round() -> tuple[float, float]:
    t0 = time.perf_counter()
    stack = Stack(mode="local", profile="fast").start()
    t1 = time.perf_counter()
    try:
        red = Redirection.start(_redirects(), stack.endpoints)
        t2 = time.perf_counter()
        red.stop()
    finally:
        stack.stop()
    return t1 - t0, t2 - t1


def _targets(stack: Stack) -> dict:
    api, ws = host_port(stack.endpoints.api_url), stack.endpoints.ws_url
    return {"http": {"plain": (*api, None), "front": (API, 80, None), "tls": (API, 443, "ssl")},
            "ws": {"plain": ws, "front": f"ws://{API}/ws", "tls": f"wss://{API}/ws"}}


def _request(host: str) -> bytes:
    return f"GET /health HTTP/1.1\r\nHost: {host}\r\nUser-Agent: simstack-bench\r\n\r\n".encode()


async def _http_new_conn(target, tls: ssl.SSLContext) -> float:
    host, port, use_tls = target
    t0 = time.perf_counter()
    reader, writer = await asyncio.open_connection(host, port, ssl=tls if use_tls else None)
    try:
        if await _exchange(reader, writer, _request(host)) != 200:
            raise RuntimeError(f"GET /health via {host}:{port} was not 200")
        return time.perf_counter() - t0
    finally:
        writer.close()


async def _http_round(targets: dict, tls: ssl.SSLContext, n: int) -> dict:
    new = {s: [] for s in SIDES}
    for i in range(n):
        for side in (SIDES if i % 2 == 0 else SIDES[::-1]):
            new[side].append(await _http_new_conn(targets[side], tls))
    conns = {}
    for side in SIDES:
        host, port, use_tls = targets[side]
        conns[side] = (*await asyncio.open_connection(host, port, ssl=tls if use_tls else None), _request(host))
    kept = {s: [] for s in SIDES}
    try:
        for i in range(n):
            for side in (SIDES if i % 2 == 0 else SIDES[::-1]):
                reader, writer, request = conns[side]
                t0 = time.perf_counter()
                await _exchange(reader, writer, request)
                kept[side].append(time.perf_counter() - t0)
    finally:
        for _, writer, _ in conns.values():
            writer.close()
    return {s: {"new_ms": statistics.median(new[s]) * 1000, "kept_ms": statistics.median(kept[s]) * 1000}
            for s in SIDES}


async def _ws_round(targets: dict, tls: ssl.SSLContext, token: str, n: int) -> dict:
    out = {s: [] for s in SIDES}
    for i in range(n):
        for side in (SIDES if i % 2 == 0 else SIDES[::-1]):
            url = targets[side]
            t0 = time.perf_counter()
            async with connect(url, additional_headers=staging_headers(token), ssl=tls if url.startswith("wss") else None,
                               open_timeout=10, close_timeout=5, ping_interval=None, proxy=None) as ws:
                await ws.recv()
                out[side].append(time.perf_counter() - t0)
    return {s: {"ws_ms": statistics.median(out[s]) * 1000} for s in SIDES}


def _cost(rounds: list[dict], key: str, title: str) -> dict:
    tls = [r["tls"][key] for r in rounds]
    plain = [r["plain"][key] for r in rounds]
    front = [r["front"][key] for r in rounds]
    ratios = [t / p for t, p in zip(tls, plain) if p]
    s = summary(tls, 3)
    return entry(title, "ms", s, baseline="plain, the stack's own listener", baseline_median=summary(plain, 3)["median"],
                 ratio=round(statistics.median(ratios), 3) if ratios else None,
                 ratios_per_round=[round(r, 3) for r in ratios], front_without_tls=summary(front, 3),
                 extra_ms=round(statistics.median([t - p for t, p in zip(tls, plain)]), 3),
                 tls_alone_ms=round(statistics.median([t - f for t, f in zip(tls, front)]), 3))


@figure("redirect", "redirected staging hostnames: extra start-up, TLS cost per request and per connection",
        ("redirect_start_extra_ms", "tls_http_new_conn_ms", "tls_http_keepalive_ms", "tls_ws_connect_ms"))
def redirect(ctx) -> dict:
    starts = [_start_round() for _ in range(ctx.n(7, 1))]
    stack_s, extra_s = [s for s, _ in starts], [e for _, e in starts]
    extra = summary([e * 1000 for e in extra_s], 2)
    stack_ms = summary([s * 1000 for s in stack_s], 1)["median"]
    out = {"redirect_start_extra_ms": entry(
        "extra start-up with two redirected hosts (CA, certificates, front, resolver)", "ms", extra,
        baseline="local stack start", baseline_median=stack_ms,
        ratio=ratio(stack_ms + extra["median"], stack_ms), hosts=2)}
    ctx.log(f"   start-up: +{extra['median']} ms on a {stack_ms} ms stack start")

    rounds = []
    with Stack(mode="local", profile="fast") as stack:
        red = Redirection.start(_redirects(), stack.endpoints)
        saved = {k: os.environ.get(k) for k in red.env}
        os.environ.update(red.env)
        try:
            tls = ssl.create_default_context()   # the bundle: public roots + the throwaway CA
            token, targets = stack.token(), _targets(stack)
            for i in range(ctx.n(5, 1)):
                http = asyncio.run(_http_round(targets["http"], tls, ctx.n(300, 5)))
                ws = asyncio.run(_ws_round(targets["ws"], tls, token, ctx.n(150, 3)))
                rounds.append({s: {**http[s], **ws[s]} for s in SIDES})
                r = rounds[-1]
                ctx.log(f"   round {i}: new conn {r['plain']['new_ms']:.2f}/{r['front']['new_ms']:.2f}/"
                        f"{r['tls']['new_ms']:.2f} ms, keep-alive {r['plain']['kept_ms']:.3f}/{r['front']['kept_ms']:.3f}/"
                        f"{r['tls']['kept_ms']:.3f} ms, ws {r['plain']['ws_ms']:.2f}/{r['front']['ws_ms']:.2f}/"
                        f"{r['tls']['ws_ms']:.2f} ms (plain/front/tls)")
        finally:
            red.stop()
            for k, v in saved.items():
                os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    out["tls_http_new_conn_ms"] = _cost(rounds, "new_ms", "HTTPS GET /health p50, new connection per request")
    out["tls_http_keepalive_ms"] = _cost(rounds, "kept_ms", "HTTPS GET /health p50, keep-alive connection")
    out["tls_ws_connect_ms"] = _cost(rounds, "ws_ms", "WSS connect -> first frame p50")
    return out
