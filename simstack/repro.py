"""`make repro-1011`: the staging 1011, and what the fix changes, side by side.

Three phases on one stack, each a shipped scenario checked by a real client:

    race     repro-1011        the bug: registration races the welcome send   -> 1011
    fixed    fix-1011          same slow registration, fix deployed           -> 5 events
    setup    setup-error-1011  setup raises for e2e users, fix deployed       -> still 1011

It exits 0 only when all three show their expected signature. With ``html`` it also writes the
HTML timeline of the phases, side by side (:mod:`simstack.report`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import report
from .shared.errors import ConfigError, SimstackError
from .stack import Stack
from .terminal import columns, fit

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


def run(what: str = "1011", mode: str = "local", profile: str = "staging", out=print,
        html: str | Path | None = None) -> int:
    """Run the repro's phases; with ``html``, also write the HTML timeline there (the path is checked first)."""
    from .scenarios import failed_checks, format_result, load_scenario, run_labelled
    if what not in REPROS:
        raise ConfigError(f"no repro {what!r}", f"known: {', '.join(REPROS)}")
    phases = REPROS[what]
    html_path = report.check_path(html, "--html") if html else None
    results, server_views, groups = [], [], []
    stop = None
    with Stack(mode=mode, profile=profile) as stack:
        if stack.mode_note:
            out(stack.mode_note)
        subtitle = f"{stack.mode} stack, {profile} profile, up in {stack.startup_s:.2f} s"
        out(f"simstack repro {what}: {subtitle}\n")
        try:
            for phase in phases:
                result, records = run_labelled(load_scenario(phase.scenario), stack, f"repro:{phase.scenario}")
                server_views.append([r for r in records if r["kind"] == "ws"])
                results.append(result)
                groups.append(phase_group(phase.title, result, records, phase))
                out(f"--- phase: {phase.title} ---")
                out(format_result(result))
                out("")
        except SimstackError as exc:   # the stack stopped answering: the report keeps what was seen
            stop = report.Stop(time.time(), groups[-1].name if groups else None, exc.message)
            raise
        finally:
            if html_path is not None:
                report.write(html_path, groups, f"simstack repro {what}", subtitle=subtitle, layout="columns",
                             stop=stop)
        out(side_by_side(phases, results, server_views))
    if html_path is not None:
        out(f"\nHTML timeline: {html_path}")
    failed = [r for r in results if not r.passed]
    if failed:
        for r in failed:
            out(fit(f"FAILED: {r.scenario.name}: {failed_checks(r)}"))
        return 1
    out("\nAll three phases show their expected signature: the race gives 1011 before any frame,\n"
        "the fix removes it, and a setup error still gives 1011 with the fix on.")
    return 0


def phase_group(title: str, result: ScenarioResult, records: list[dict], phase: Phase | None = None) -> report.Group:
    """A phase (or a scenario) for the HTML report: its verdict, what the client saw, the server's records."""
    from .scenarios import failed_checks
    if phase is not None:
        verdict = phase.shown if result.passed else f"{phase.not_shown}: {failed_checks(result)}"
    else:
        verdict = "PASS" if result.passed else f"FAIL: {failed_checks(result)}"
    notes = [verdict]
    for i, o in enumerate(result.connections):
        close = "-" if o.close_code is None else f"{o.close_code}" + (f" {o.close_reason!r}" if o.close_reason else "")
        notes.append(f"client ws[{i}]: upgrade {o.status}, close {close}, {o.frames_before_close} frame(s) before close, "
                     f"agent events {len(o.events)}/5" + (f", closed {o.closed_after_s:.2f} s after connect"
                                                          if o.closed_after_s is not None else ""))
        if o.error:
            notes.append(f"client ws[{i}] saw: {o.error}")
    for h in result.http:
        notes.append(f"client {h.method} {h.path}: " + (str(h.status) if h.status is not None else (h.error or "no answer")))
    return report.Group(title, "passed" if result.passed else "failed", records, notes)


def side_by_side(phases: tuple[Phase, ...], results: list[ScenarioResult], server_views: list[list[dict]]) -> str:
    """The phases as columns that wrap within 100 columns; the server error is never cut."""
    cols = [phase.title for phase in phases][:len(results)]
    rows = []
    for phase, r, server in zip(phases, results, server_views):
        o = r.connections[0]
        close = f"{o.close_code} {o.close_reason or ''}".strip() if o.close_code not in (None, 1000) else \
            ("1000 (client, after the run)" if o.close_code == 1000 else "-")
        srv = server[0] if server else {}
        rows.append({
            "upgrade": str(o.status),
            "close code, reason": close,
            "frames before close": str(o.frames_before_close),
            "connect -> close": f"{o.closed_after_s:.2f} s" if o.closed_after_s is not None else "-",
            "agent events": f"{len(o.events)}/5",
            "server lifecycle": " > ".join(s for s, _ in srv.get("states") or []) or "-",
            "server error": srv.get("error") or "-",
            "verdict": phase.shown if r.passed else phase.not_shown,
        })
    if not rows:
        return "(no phase ran)"
    return "What the fix changes (one connection per phase, a staging-like client):\n" + columns(cols, rows, 19)
