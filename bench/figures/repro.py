"""Figure 2: `make repro-1011` wall time, and determinism of the race and its fix.

Wall time is ``simstack repro 1011`` as a subprocess (what `make repro-1011` runs once set-up is done):
a local stack with the staging profile, three scenarios, teardown. Determinism runs the race scenario
(repro-1011) and the fixed one (fix-1011) alternately on one fast-profile stack, through the real
scenario runner, and counts 1011 closes and complete event runs.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from simstack.scenarios import load_scenario, run_scenario
from simstack.stack import Stack

from ..harness import entry, figure
from ..load import AGENT_EVENTS
from ..stats import summary

WALL_TARGET_S = 10.0


def simstack_cli() -> str:
    here = Path(sys.executable).with_name("simstack")
    return str(here) if here.exists() else (shutil.which("simstack") or "simstack")


def repro_wall(profile: str | None) -> float:
    argv = [simstack_cli(), "repro", "1011"] + (["--profile", profile] if profile else [])
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "NO_PROXY": "127.0.0.1,localhost,::1"})
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stdout[-800:]}{proc.stderr[-800:]}")
    return took


@figure("repro", "simstack repro 1011 wall time; determinism of the race and the fix",
        ("repro_1011_wall_s", "determinism_race_1011", "determinism_fixed_complete"))
def repro(ctx) -> dict:
    # --quick keeps the command but uses the fast profile, so the smoke test stays short.
    profile = "fast" if ctx.quick else None
    walls = [repro_wall(profile) for _ in range(ctx.n(3, 1))]
    w = summary(walls, 3)
    out = {"repro_1011_wall_s": entry(
        "simstack repro 1011 wall time (local)", "s", w, target=f"<= {WALL_TARGET_S:.0f} s",
        met=w["median"] <= WALL_TARGET_S, command=f"simstack repro 1011{' --profile fast' if profile else ''}",
        profile=profile or "staging")}
    ctx.log(f"   wall: {w['median']} s")

    n = ctx.n(100, 3)
    race, fixed = load_scenario("repro-1011"), load_scenario("fix-1011")
    race_s, fixed_s, closes, complete = [], [], 0, 0
    race_odd, fixed_odd = [], []
    with Stack(mode="local", profile="fast") as stack:
        for i in range(n):
            t0 = time.perf_counter()
            r = run_scenario(race, stack)
            race_s.append(time.perf_counter() - t0)
            o = r.connections[0]
            if o.close_code == 1011:
                closes += 1
            else:
                race_odd.append(f"run {i}: close {o.close_code}, events {o.events}, error {o.error}")
            t0 = time.perf_counter()
            r = run_scenario(fixed, stack)
            fixed_s.append(time.perf_counter() - t0)
            o = r.connections[0]
            if tuple(o.events) == AGENT_EVENTS and o.close_code == 1000 and r.passed:
                complete += 1
            else:
                fixed_odd.append(f"run {i}: close {o.close_code}, events {o.events}, error {o.error}")
    out["determinism_race_1011"] = entry(
        "race scenario (repro-1011): runs that closed 1011", "s/run", summary(race_s, 3),
        headline=f"{closes}/{n} closed 1011", target=f"{n}/{n} close 1011", met=closes == n,
        count=closes, of=n, profile="fast", unexpected=race_odd[:10])
    out["determinism_fixed_complete"] = entry(
        "fixed scenario (fix-1011): runs with all five agent events", "s/run", summary(fixed_s, 3),
        headline=f"{complete}/{n} complete", target=f"{n}/{n} complete (0/{n} close 1011)", met=complete == n,
        count=complete, of=n, profile="fast", unexpected=fixed_odd[:10])
    ctx.log(f"   race: {closes}/{n} closed 1011; fixed: {complete}/{n} complete")
    return out
