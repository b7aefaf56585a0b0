"""Figure 5: fault switch latency, from a FaultControl call returning to the fault being in effect
for a new connection (and back, after ``reset``).

Right after the call returns, new connections are opened back to back until one shows the fault's
signature; the latency is when that probe started, counted from the return. A fault in force when the
call returns scores the ~0 it takes to start the first probe. ``api_call_ms`` is how long the call
itself took. Kinds: one protocol fault (applied by the stand-in) and two network faults (Toxiproxy).
"""
from __future__ import annotations

import asyncio
import time

from simstack.shared.faults import KINDS as FAULT_KINDS
from simstack.stack import Stack

from ..harness import entry, figure
from ..load import http_once
from ..stats import summary

PROBE_BOUND_S = 2.0
KINDS = {
    # fault kind on the api endpoint: (params, does this probe result show the fault?)
    "cold_start": ({}, lambda r: r == 503),                          # protocol: the stand-in answers 503
    "proxy_down": ({}, lambda r: r == "refused"),                    # network: Toxiproxy stops listening
    "reset": ({"after_ms": 0}, lambda r: r in ("reset", "closed")),  # network: reset_peer toxic
}


def _until(target: str, visible, t_from: float) -> tuple[float | None, int]:
    """(seconds from t_from to the start of the first probe where visible(result), probes used)."""
    probes = 0
    while time.perf_counter() - t_from < PROBE_BOUND_S:
        t = time.perf_counter()
        probes += 1
        if visible(asyncio.run(http_once(target, timeout_s=1.0))):
            return t - t_from, probes
    return None, probes


@figure("fault_switch", "fault switch latency: API call returned -> in effect for a new connection",
        tuple(f"fault_switch_{k}_ms" for k in KINDS))
def fault_switch(ctx) -> dict:
    reps = ctx.n(20, 2)
    out = {}
    with Stack(mode="local", profile="fast") as stack:
        target = stack.endpoints.api_url
        for kind, (params, visible) in KINDS.items():
            on, off, calls, removes, first_hit, missed = [], [], [], [], 0, 0
            for _ in range(reps):
                t0 = time.perf_counter()
                fault = stack.faults.add(kind, target="api", **params)
                t_ret = time.perf_counter()
                calls.append(t_ret - t0)
                took, probes = _until(target, visible, t_ret)
                if took is None:
                    missed += 1
                else:
                    on.append(took)
                    first_hit += probes == 1
                t0 = time.perf_counter()
                stack.faults.remove(fault.id)
                t_ret = time.perf_counter()
                removes.append(t_ret - t0)
                took, _ = _until(target, lambda r: r == 200, t_ret)
                if took is not None:
                    off.append(took)
            ms = lambda xs: summary([x * 1000 for x in xs], 3)   # noqa: E731
            out[f"fault_switch_{kind}_ms"] = entry(
                f"{kind} on api: call returned -> new connection sees it", "ms", ms(on),
                headline=(f"{ms(on)['median']} ms; add {ms(calls)['median']:.1f} ms, remove {ms(removes)['median']:.1f} ms; "
                          f"1st conn. {first_hit}/{reps}"),
                target="in effect when the call returns", met=missed == 0 and first_hit == reps,
                first_probe_affected=f"{first_hit}/{reps}", never_seen=missed, api_call_ms=ms(calls),
                remove_call_ms=ms(removes), removed_to_healthy_ms=ms(off), layer=FAULT_KINDS[kind].layer)
            ctx.log(f"   {kind}: {out[f'fault_switch_{kind}_ms']['median']} ms after the call "
                    f"(call {ms(calls)['median']} ms), first probe {first_hit}/{reps}")
    return out
