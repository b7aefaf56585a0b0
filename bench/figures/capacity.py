"""Figure 4: how many concurrent WebSocket clients each complete a full agent run, and the api
stand-in's memory at 1,000 connections.

Each step opens N staging-like connections through Toxiproxy (at most 100 handshakes in flight, so
the figure is capacity, not a handshake storm) and waits until every one has its welcome frames;
then all N send start_agent at once. A client is complete when it receives the five agent events in
order with no error; a step passes when all N are complete. Connections stay open until the whole
step is over, so N is the number held concurrently. Memory is read from /proc/<pid>/status of the
api stand-in while a step holds all its connections (after every run completed), on a fresh stack
that has served only this figure's smaller steps.
"""
from __future__ import annotations

import asyncio
import collections
import json
import time

from websockets.asyncio.client import connect

from simstack.client import staging_headers
from simstack.stack import Stack

from ..harness import entry, figure, skipped
from ..load import AGENT_EVENTS, START_AGENT, WELCOME_LAST, proc_status
from ..stats import latency_ms

IN_FLIGHT = 100
STEPS = (250, 500, 1000, 1500, 2000, 3000, 4000, 5000)   # stops at the first step that fails
QUICK_STEPS = (10, 25)
MEMORY_AT = 1000
CAPACITY_TARGET = 1000
MEMORY_TARGET_MB = 300.0
PHASE_TIMEOUT_S = 60.0
BUDGET_S = 120.0   # no new step starts after this much time in the figure


class Step:
    """Counters and barriers of one step. Every client calls ``opened`` once and ``finished`` once."""

    def __init__(self, n: int):
        self.n = n
        self.handshakes = asyncio.Semaphore(IN_FLIGHT)
        self.open_count = self.done_count = 0
        self.all_open, self.all_done, self.release = asyncio.Event(), asyncio.Event(), asyncio.Event()
        self.errors: collections.Counter = collections.Counter()
        self.run_s: list[float] = []

    def opened(self) -> None:
        self.open_count += 1
        if self.open_count == self.n:
            self.all_open.set()

    def finished(self) -> None:
        self.done_count += 1
        if self.done_count == self.n:
            self.all_done.set()


async def client(url: str, token: str, step: Step) -> None:
    ws, settled, finished = None, False, False
    try:
        async with step.handshakes:
            ws = await connect(url, additional_headers=staging_headers(token), open_timeout=30,
                               close_timeout=10, ping_interval=None, proxy=None)
            while json.loads(await ws.recv()).get("type") != WELCOME_LAST:
                pass
        settled = True
        step.opened()
        await step.all_open.wait()
        t0 = time.perf_counter()
        await ws.send(START_AGENT)
        seen = []
        while not seen or seen[-1] != "agent_completed":
            frame = json.loads(await ws.recv())
            if frame.get("type") in ("error", "error_message"):
                raise RuntimeError(f"error frame: {frame.get('message')}")
            if frame.get("type") in AGENT_EVENTS:
                seen.append(frame["type"])
        if tuple(seen) != AGENT_EVENTS:
            raise RuntimeError(f"events out of order: {seen}")
        step.run_s.append(time.perf_counter() - t0)
        finished = True
        step.finished()
        await step.release.wait()   # hold the connection until the step is over
    except Exception as exc:
        step.errors[f"{exc.__class__.__name__}: {str(exc)[:100]}"] += 1
    finally:
        if not settled:
            step.opened()
        if not finished:
            step.finished()
        if ws is not None:
            try:
                await ws.close()
            except Exception:
                pass


async def run_step(url: str, token: str, n: int, pid: int) -> dict:
    step = Step(n)
    t0 = time.perf_counter()
    tasks = [asyncio.create_task(client(url, token, step)) for _ in range(n)]
    result: dict = {"clients": n}
    try:
        await asyncio.wait_for(step.all_open.wait(), PHASE_TIMEOUT_S)
        result["open_s"] = round(time.perf_counter() - t0, 3)
        result["memory_open_mb"] = proc_status(pid)
        t1 = time.perf_counter()
        await asyncio.wait_for(step.all_done.wait(), PHASE_TIMEOUT_S)
        result["runs_s"] = round(time.perf_counter() - t1, 3)
        result["memory_mb"] = proc_status(pid)
    except asyncio.TimeoutError:
        step.errors[f"step timed out after {PHASE_TIMEOUT_S:.0f} s"] += 1
    finally:
        step.release.set()
        closing = time.perf_counter()
        _, pending = await asyncio.wait(tasks, timeout=30)
        for t in pending:
            t.cancel()
        result["close_s"] = round(time.perf_counter() - closing, 3)
    complete = len(step.run_s)
    result.update(complete=complete, errors=sum(step.errors.values()), ok=complete == n and not step.errors,
                  error_kinds=dict(step.errors.most_common(5)), run_latency=latency_ms(step.run_s))
    return result


@figure("capacity", "concurrent WebSocket clients completing an agent run; api memory at 1,000",
        ("ws_capacity_clients", "api_memory_1000_mb"))
def capacity(ctx) -> dict:
    steps = ctx.n(STEPS, QUICK_STEPS)
    memory_at = steps[-1] if ctx.quick else MEMORY_AT
    results = []
    t0 = time.perf_counter()
    with Stack(mode="local", profile="fast") as stack:
        pid = stack.launcher.procs["api"].pid
        baseline_mem = proc_status(pid)
        token = stack.token()
        for n in steps:
            r = asyncio.run(run_step(stack.endpoints.ws_url, token, n, pid))
            results.append(r)
            ctx.log(f"   {n} clients: {r['complete']} complete, {r['errors']} errors, open {r.get('open_s')} s, "
                    f"runs {r.get('runs_s')} s, api {r.get('memory_mb')}")
            if not r["ok"] or time.perf_counter() - t0 > BUDGET_S:
                break
            time.sleep(0.5)   # let the sockets of this step close before the next one
    passed = [r["clients"] for r in results if r["ok"]]
    best = max(passed, default=0)
    ceiling = ("every step passed: the ceiling is above the last step tried" if results and results[-1]["ok"]
               else f"the {results[-1]['clients']}-client step failed" if results else "no step ran")
    target = ctx.n(CAPACITY_TARGET, steps[-1])
    out = {"ws_capacity_clients": entry(
        "concurrent WebSocket clients, each a complete agent run, zero errors", "clients",
        {"median": best, "min": best, "max": best, "runs": len(results)},
        target=f">= {target} clients", met=best >= target, note=ceiling, steps=results,
        in_flight_handshakes=IN_FLIGHT,
        path="through Toxiproxy (the ws listener), fast profile, local mode")}
    at = next((r for r in results if r["clients"] == memory_at and "memory_mb" in r), None)
    if at is None:
        out["api_memory_1000_mb"] = skipped("api stand-in memory at 1,000 connections",
                                            f"the {memory_at}-client step did not complete")
    else:
        hwm, rss = at["memory_mb"]["VmHWM"], at["memory_mb"]["VmRSS"]
        out["api_memory_1000_mb"] = entry(
            f"api stand-in peak memory (VmHWM) at {memory_at} open connections", "MB",
            {"median": hwm, "min": hwm, "max": hwm, "runs": 1},
            target=f"<= {MEMORY_TARGET_MB:.0f} MB", met=hwm <= MEMORY_TARGET_MB,
            vm_rss_mb=rss, vm_hwm_mb=hwm, idle_mb=baseline_mem, connections=memory_at,
            note="read while every connection is open and every run done; VmRSS is the resident size then")
    return out
