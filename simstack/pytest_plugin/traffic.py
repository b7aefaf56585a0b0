"""Evidence of real traffic: what each test caused on the stack, --simstack-require-traffic, and the
terminal summary."""
from __future__ import annotations

import json
import time
from collections import Counter

import pytest

from ..shared.errors import SimstackError
from ..shared.constants import AGENT_EVENTS
from ..terminal import fit
from .session import SimstackSession, _SESSION, _active


TRAFFIC_PROPERTY = "simstack_traffic"


def summarize(records: list[dict]) -> dict:
    """Per test: requests, connections, agent events sent, WebSocket close codes, faults fired."""
    ws = [r for r in records if r["kind"] == "ws"]
    accepted = [r for r in ws if r.get("status") == 101]
    return {
        "http": sum(1 for r in records if r["kind"] == "http"),
        "ws": len(ws),
        "events": sum(1 for r in ws for t in r.get("frames_out") or () if t in AGENT_EVENTS),
        "ws_accepted": len(accepted),
        "ws_silent": sum(1 for r in accepted if not r.get("frames_out")),
        "ws_refused": sum(1 for r in ws if r.get("status") not in (None, 101)),
        "closes": [r["close_code"] for r in ws if r.get("close_code") is not None],
        "faults": sorted({f for r in records for f in r.get("faults") or ()}),
    }


NO_TRAFFIC = "passed without touching the stack"


def missing_traffic(t: dict) -> str | None:
    """Why a passed test did not really exercise the stack, or None."""
    if t["ws_accepted"] and t["ws_silent"] == t["ws_accepted"]:
        closes = ", ".join(map(str, t["closes"])) or "none yet"
        return (f"passed although none of its {t['ws_accepted']} WebSocket connection(s) got a single frame "
                f"from the server (close codes: {closes}): did it fall back to canned data?")
    answered = t["http"] + t["ws_refused"] + (t["ws_accepted"] - t["ws_silent"])
    if not answered:
        return f"{NO_TRAFFIC}: no HTTP request or WebSocket connection reached it"
    return None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    traffic = None
    s = _active(item.config)
    if s is not None and call.when == "call":
        try:
            traffic = summarize(s.timeline(label=item.nodeid))
        except SimstackError as exc:
            traffic = {"error": exc.message}
        item.user_properties.append((TRAFFIC_PROPERTY, json.dumps(traffic)))
    report = yield
    if traffic and s.options.require_traffic and report.passed and "error" not in traffic:
        why = missing_traffic(traffic)
        if why and why.startswith(NO_TRAFFIC) and s.options.may_skip_traffic(item.nodeid):
            traffic["no_traffic_ok"] = True   # allowed by --simstack-no-traffic-ok: its own outcome
            _set_traffic(report.user_properties, traffic)
        elif why:
            report.outcome = "failed"
            report.longrepr = f"simstack --simstack-require-traffic: {item.nodeid} {why}"
    return report


def _set_traffic(props: list, traffic: dict) -> None:
    for i, (name, _) in enumerate(props):
        if name == TRAFFIC_PROPERTY:
            props[i] = (TRAFFIC_PROPERTY, json.dumps(traffic))


SETTLE_S = 2.0   # at session end, how long to wait for connections still closing to record their close code


def _settled_records(s: SimstackSession) -> list[dict]:
    """This session's records once no accepted WebSocket is still closing (or SETTLE_S passed)."""
    deadline = time.monotonic() + SETTLE_S
    while True:
        records = s.timeline()
        open_ws = [r for r in records if r["kind"] == "ws" and r.get("status") == 101 and r.get("close_code") is None]
        if not open_ws or time.monotonic() > deadline:
            return records
        time.sleep(0.05)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """Re-read each test's traffic at the end, so connections that were still closing when their test
    ended count with their final close code (the summary and reports show these final figures)."""
    s = _active(session.config)
    tr = session.config.pluginmanager.get_plugin("terminalreporter")
    if s is None or tr is None:
        return
    try:
        records = _settled_records(s)
    except SimstackError:
        return   # the per-test figures stay
    by_label: dict[str, list[dict]] = {}
    for r in records:
        by_label.setdefault(r.get("label"), []).append(r)
    for reports in tr.stats.values():
        for rep in reports:
            t = _traffic_of(rep) if getattr(rep, "when", None) == "call" else None
            if t is not None and "error" not in t:
                final = summarize(by_label.get(rep.nodeid, []))
                if t.get("no_traffic_ok"):
                    final["no_traffic_ok"] = True
                _set_traffic(rep.user_properties, final)


def _traffic_of(report) -> dict | None:
    for name, value in getattr(report, "user_properties", ()):
        if name == TRAFFIC_PROPERTY:
            return json.loads(value)
    return None


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    rows = []
    for reports in terminalreporter.stats.values():
        for rep in reports:
            if getattr(rep, "when", None) == "call" and (t := _traffic_of(rep)) is not None:
                rows.append((rep.nodeid, rep.outcome, t))
    if not rows:
        return
    tr = terminalreporter
    line = lambda text: tr.line(fit(text, indent=8))   # noqa: E731  (100 columns; the test id is never cut)
    tr.section("simstack traffic")
    s = config.stash.get(_SESSION, None)
    if s is not None and s.endpoints is not None:
        line(f"{s.mode} stack, profile {s.profile}" + (f", scenario {s.scenario}" if s.scenario else ""))
    elif s is not None:
        line("one stack per xdist worker" + (f", scenario {s.scenario}" if s.scenario else ""))
    line(f"{'http':>5} {'ws':>4} {'events':>6}  {'ws closes':<14} {'faults fired':<28} {'outcome':<7} test")
    untouched = 0
    for nodeid, outcome, t in sorted(rows):
        if t.get("no_traffic_ok") and outcome == "passed":
            outcome, untouched = "no I/O", untouched + 1
        if "error" in t:
            line(f"{'?':>5} {'?':>4} {'?':>6}  {'':<14} {'':<28} {outcome:<7} {nodeid} ({t['error']})")
            continue
        closes = ",".join(f"{c}x{n}" if n > 1 else str(c) for c, n in Counter(t["closes"]).items()) or "-"
        fired = ",".join(t["faults"]) or "-"
        line(f"{t['http']:>5} {t['ws']:>4} {t['events']:>6}  {closes:<14} {fired:<28} {outcome:<7} {nodeid}")
    if untouched:
        line(f"no I/O: {untouched} test(s) {NO_TRAFFIC}, allowed by --simstack-no-traffic-ok / "
             "simstack_no_traffic_ok")
