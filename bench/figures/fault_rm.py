"""Figure 7: removing a latency fault that holds data for a client that already left.

Toxiproxy's API blocks 5 s per stuck direction when such a toxic is deleted (upstream issue #558).
Each round adds 3 s of downstream latency on the ws listener, lets a client's upgrade time out
(1 s) so the held answer has nobody to go to, then removes the fault. Measured: ``stack.faults.remove``
(what `simstack fault rm` runs; it releases the toxic before deleting it), against a plain DELETE of
the same toxic (what it did before), taking turns round by round on one stack. Under ``--quick`` only
the fixed path runs (the baseline costs ~10 s a round).
"""
from __future__ import annotations

import asyncio
import time

from simstack.client import observe_ws
from simstack.stack import Stack
from simstack.toxiproxy import Toxiproxy

from ..harness import entry, figure
from ..stats import summary

LATENCY_MS = 3000


def _held(stack, fault_id: str, token: str) -> None:
    stack.faults.add("latency", target="ws", latency_ms=LATENCY_MS, direction="downstream", id=fault_id)
    asyncio.run(observe_ws(stack.endpoints.ws_url, token, action="listen", timeout_s=1))


@figure("fault_rm", "removing a latency fault holding data for a client that left (Toxiproxy #558)",
        ("fault_rm_held_latency_s",))
def fault_rm(ctx) -> dict:
    rounds = ctx.n(3, 1)
    fixed, plain = [], []
    with Stack(mode="local", profile="fast") as stack:
        token = stack.token()
        toxi = Toxiproxy(stack.endpoints.toxiproxy_url)
        try:
            for i in range(rounds):
                _held(stack, f"fixed{i}", token)
                t0 = time.perf_counter()
                stack.faults.remove(f"fixed{i}")
                fixed.append(time.perf_counter() - t0)
                if ctx.quick:
                    continue
                _held(stack, f"plain{i}", token)
                t0 = time.perf_counter()
                toxi._call("DELETE", f"/proxies/ws/toxics/latency:plain{i}")
                plain.append(time.perf_counter() - t0)
        finally:
            toxi.close()
    s, b = summary(fixed, 3), summary(plain, 3)
    ctx.log(f"   fault rm: {s['median']} s (plain DELETE: {b['median']} s)")
    return {"fault_rm_held_latency_s": entry(
        "fault rm of a latency fault holding data for a client that left", "s", s,
        baseline="plain DELETE (before the fix)" if plain else None, baseline_median=b["median"],
        ratio=round(s["median"] / b["median"], 4) if plain and b["median"] else None,
        target="no multi-second block (< 1 s)", met=s["median"] < 1.0, plain=b, latency_ms=LATENCY_MS)}
