"""`make repro-1011`: the staging 1011, and what the fix changes, side by side.

Three phases on one stack, each a shipped scenario checked by a real client:

    race     repro-1011        the bug: registration races the welcome send   -> 1011
    fixed    fix-1011          same slow registration, fix deployed           -> 5 events
    setup    setup-error-1011  setup raises for e2e users, fix deployed       -> still 1011

It exits 0 only when all three show their expected signature.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .shared.errors import ConfigError
from .stack import Stack

if TYPE_CHECKING:   # scenarios pull in the WebSocket client: imported when a repro runs
    from .scenarios import ScenarioResult


@dataclass(frozen=True)
class Phase:
    title: str
    scenario: str
    shown: str      # the verdict when the scenario shows its expected signature
    not_shown: str  # ... and when it does not


REPROS = {
    "1011": (Phase("race_on_accept (bug)", "repro-1011", "REPRODUCED 1011", "did not reproduce"),
             Phase("fixed (fix deployed)", "fix-1011", "FIXED", "NOT fixed"),
             Phase("setup_error (fix deployed)", "setup-error-1011", "STILL 1011: not a race",
                   "did not show the setup error")),
}


def run(what: str = "1011", mode: str = "local", profile: str = "staging", out=print) -> int:
    from .scenarios import format_result, load_scenario, run_scenario
    if what not in REPROS:
        raise ConfigError(f"no repro {what!r}", f"known: {', '.join(REPROS)}")
    phases = REPROS[what]
    with Stack(mode=mode, profile=profile) as stack:
        if stack.mode_note:
            out(stack.mode_note)
        out(f"simstack repro {what}: {stack.mode} stack, {profile} profile, up in {stack.startup_s:.2f} s\n")
        results, server_views = [], []
        for phase in phases:
            name = phase.scenario
            stack.faults.mark(f"repro:{name}")
            result = run_scenario(load_scenario(name), stack)
            records, _ = stack.faults.timeline(label=f"repro:{name}")
            server_views.append([r for r in records if r["kind"] == "ws"])
            results.append(result)
            out(f"--- phase: {phase.title} ---")
            out(format_result(result))
            out("")
        stack.faults.mark(None)
        out(side_by_side(phases, results, server_views))
    failed = [r for r in results if not r.passed]
    if failed:
        for r in failed:
            bad = ", ".join(f"{c.what} expected {c.expected!r} got {c.observed!r}" for c in r.checks if not c.ok)
            out(f"FAILED: {r.scenario.name}: {bad}")
        return 1
    out("\nAll three phases show their expected signature: the race gives 1011 before any frame, the fix "
        "removes it, and a setup error still gives 1011 with the fix on.")
    return 0


def side_by_side(phases: tuple[Phase, ...], results: list[ScenarioResult], server_views: list[list[dict]]) -> str:
    cols = [phase.title for phase in phases]
    rows = []
    for phase, r, server in zip(phases, results, server_views):
        o = r.connections[0]
        close = f"{o.close_code} {o.close_reason or ''}".strip() if o.close_code not in (None, 1000) else \
            ("1000 (client, after the run)" if o.close_code == 1000 else "-")
        srv = server[0] if server else {}
        rows.append({
            "upgrade": str(o.status),
            "close code / reason": close,
            "frames before close": str(o.frames_before_close),
            "connect -> close": f"{o.closed_after_s:.2f} s" if o.closed_after_s is not None else "-",
            "agent events": f"{len(o.events)}/5",
            "server lifecycle": " > ".join(s for s, _ in srv.get("states") or []) or "-",
            "server error": (srv.get("error") or "-")[:64],
            "verdict": phase.shown if r.passed else phase.not_shown,
        })
    width = max(len(k) for k in rows[0])
    colw = [max(len(c), *(len(row[k]) for k in row)) for c, row in zip(cols, rows)]
    lines = ["What the fix changes (one connection per phase, a staging-like client):",
             " " * (width + 2) + "  ".join(c.ljust(w) for c, w in zip(cols, colw))]
    for key in rows[0]:
        lines.append(key.ljust(width + 2) + "  ".join(row[key].ljust(w) for row, w in zip(rows, colw)))
    return "\n".join(lines)
