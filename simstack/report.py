"""One self-contained HTML timeline per run: what every request and connection went through.

A report is a list of :class:`Group` (a test, a repro phase, a scenario) holding the stand-ins'
timeline records (see ``fakes/control.py`` ``Record``). :func:`render` turns them into one HTML
file with inline CSS and JS and no fetch of any kind: a summary table (one row per group), then one
lane per connection or request on a time axis, with the upgrade status, frames in and out,
fault markers, the server's lifecycle states, the exception a close came from, and the close.

The page's data is JSON inside a ``<script type="application/json">`` element, with ``<``, ``>``
and ``&`` escaped, and the page's script builds the DOM with ``textContent`` only, so frame
contents are shown, never interpreted. The size is bounded: past :data:`FRAMES_PER_LANE` frames a
lane keeps the first and the last ones and counts the rest by type, and frame previews share a
budget of :data:`PREVIEW_BUDGET` characters; each lane says what it left out.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path

from .shared.constants import AGENT_EVENTS, INTERNAL_LABEL
from .shared.errors import ConfigError

FRAMES_PER_LANE = 40          # frames drawn per connection: the first 30 and the last 10
FRAMES_HEAD = 30
PREVIEW_BUDGET = 600_000      # characters of frame previews in one report
PREVIEW_MAX = 240
PREVIEW_MIN = 48


@dataclass
class Group:
    """One test, phase or scenario: its outcome, notes (verdicts, what the client saw) and records."""
    name: str
    outcome: str
    records: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class Stop:
    """Where the stack stopped answering: the records after this point are missing."""
    at: float                 # epoch seconds
    after: str | None         # the group (test, phase) during or after which it happened
    why: str


def check_path(path: str | os.PathLike, option: str) -> Path:
    """The report's path must be writable: checked before a run starts, so a typo costs nothing."""
    p = Path(path).expanduser()
    parent = p.parent if str(p.parent) else Path(".")
    if p.is_dir():
        raise ConfigError(f"{option} {str(path)!r} is a directory", f"give a file name, e.g. {p / 'simstack-report.html'}")
    if not parent.is_dir():
        raise ConfigError(f"{option} {str(path)!r}: directory {str(parent)!r} does not exist",
                          f"create it first (mkdir -p {parent}) or pick another path")
    try:   # a real write: permissions, read-only mounts and pseudo file systems alike
        fd, probe = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".probe", dir=parent)
        os.close(fd)
        os.unlink(probe)
        if p.exists() and not os.access(p, os.W_OK):
            raise PermissionError(13, "the file is read-only")
    except OSError as exc:
        raise ConfigError(f"{option} {str(path)!r}: cannot write there ({exc.strerror or exc})",
                          "pick a path in a directory you can write to") from None
    return p


def summarize(records: list[dict]) -> dict:
    """A group's row of the summary table."""
    ws = [r for r in records if r["kind"] == "ws"]
    return {
        "http": sum(1 for r in records if r["kind"] == "http"),
        "ws": len(ws),
        "events": sum(1 for r in ws for t in r.get("frames_out") or () if t in AGENT_EVENTS),
        "closes": dict(Counter(str(r["close_code"]) for r in ws if r.get("close_code") is not None)),
        "faults": sorted({f for r in records for f in r.get("faults") or ()}),
    }


def render(groups: list[Group], title: str, subtitle: str = "", layout: str = "rows",
           stop: Stop | None = None, now: float | None = None) -> str:
    """The report as one HTML document. ``layout`` "columns" puts the groups side by side (phases)."""
    data = report_data(groups, title, subtitle, layout, stop, now)
    blob = (json.dumps(data, separators=(",", ":"), ensure_ascii=False)
            .replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e"))
    template = resources.files("simstack").joinpath("report.html").read_text(encoding="utf-8")
    head, tail = template.split("{{DATA}}")
    return head.replace("{{TITLE}}", _html_text(title)) + blob + tail


def data_in(html: str) -> dict:
    """The data a report's page renders (what :func:`render` embedded), e.g. for tests and tools."""
    start = html.index(_DATA_OPEN) + len(_DATA_OPEN)
    return json.loads(html[start:html.index("</script>", start)])


_DATA_OPEN = '<script type="application/json" id="simstack-data">'


def write(path: str | os.PathLike, groups: list[Group], title: str, **kw) -> Path:
    p = Path(path).expanduser()
    tmp = p.with_name(f".{p.name}.tmp")
    tmp.write_text(render(groups, title, **kw), encoding="utf-8")
    tmp.replace(p)
    return p


def report_data(groups: list[Group], title: str, subtitle: str, layout: str, stop: Stop | None,
                now: float | None) -> dict:
    now = time.time() if now is None else now
    types: dict[str, int] = {}
    n_frames = sum(min(len(r.get("frames") or ()), FRAMES_PER_LANE) for g in groups for r in g.records)
    preview = max(0, min(PREVIEW_MAX, PREVIEW_BUDGET // max(1, n_frames)))
    preview = preview if preview >= PREVIEW_MIN else 0
    end_of_run = stop.at if stop else now
    out_groups = []
    for g in groups:
        t0 = min((r["started"] for r in g.records), default=None)
        lanes = [_lane(r, t0, types, preview, end_of_run) for r in sorted(g.records, key=lambda r: r["started"])]
        out_groups.append({"name": g.name, "outcome": g.outcome, "notes": g.notes, "summary": summarize(g.records),
                           "t0": t0, "span": max((ln["end"] for ln in lanes), default=0.0), "lanes": lanes})
    return {
        "title": title, "subtitle": subtitle, "layout": layout,
        "generated": datetime.fromtimestamp(now, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "types": list(types), "preview_chars": preview, "preview_max": PREVIEW_MAX,
        "stop": {"at": stop.at, "after": stop.after, "why": stop.why} if stop else None,
        "groups": out_groups,
    }


def _lane(r: dict, t0: float, types: dict[str, int], preview: int, end_of_run: float) -> dict:
    start = round((r["started"] - t0) * 1000, 1)
    lane = {"k": r["kind"], "svc": r.get("service", ""), "t": start, "st": r.get("status"),
            "faults": r.get("faults") or [], "label": r.get("label")}
    if r["kind"] == "http":
        open_ms = r.get("duration_ms")
        lane.update(m=r.get("method", ""), p=r.get("path", ""), d=open_ms)
        lane["end"] = start + (open_ms if open_ms is not None else max(0.0, (end_of_run - r["started"]) * 1000))
        return lane
    states = [[s, ms] for s, ms in r.get("states") or []]
    frames = r.get("frames") or []
    total = len(r.get("frames_in") or ()) + len(r.get("frames_out") or ())
    kept = frames if len(frames) <= FRAMES_PER_LANE else frames[:FRAMES_HEAD] + frames[-(FRAMES_PER_LANE - FRAMES_HEAD):]
    summarised = Counter(f"{d} {t}" for _, d, t, _ in frames[FRAMES_HEAD:len(frames) - (FRAMES_PER_LANE - FRAMES_HEAD)]) \
        if len(frames) > FRAMES_PER_LANE else Counter()
    unlogged = total - len(frames)   # beyond the stand-in's own log: counted by type from frames_in/out
    if unlogged > 0:
        logged = Counter(f"{d} {t}" for _, d, t, _ in frames)
        every = Counter([f"in {t}" for t in r.get("frames_in") or ()] + [f"out {t}" for t in r.get("frames_out") or ()])
        summarised += every - logged
    closed_ms = next((ms for s, ms in states if s == "closed" and ms is not None), None)
    last = max([ms for s, ms in states if ms is not None] + [f[0] for f in frames] + [0.0])
    open_now = closed_ms is None and r.get("close_code") is None and r.get("status") == 101
    end = closed_ms if closed_ms is not None else (max(last, (end_of_run - r["started"]) * 1000) if open_now else last)
    lane.update(
        id=r.get("connection_id"), user=r.get("user_id"), states=states,
        fr=[[at, 1 if d == "out" else 0, types.setdefault(str(t), len(types)), (text or "")[:preview]]
            for at, d, t, text in kept],
        n_in=len(r.get("frames_in") or ()), n_out=len(r.get("frames_out") or ()),
        summarised=dict(summarised), cc=r.get("close_code"), cr=r.get("close_reason"), by=r.get("closed_by"),
        err=r.get("error"), open=open_now, end=start + end)
    return lane


def _html_text(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def by_label(records: list[dict], order: list[str] | None = None, outcomes: dict[str, str] | None = None,
             default_outcome: str = "recorded") -> list[Group]:
    """Records grouped by their timeline label (a test id, a phase), in ``order`` first, then as seen;
    traffic with no label is one group of its own."""
    outcomes = outcomes or {}
    groups: dict[str | None, Group] = {}
    for name in order or ():
        groups[name] = Group(name, outcomes.get(name, default_outcome))
    for r in records:
        label = r.get("label")
        if label == INTERNAL_LABEL:
            continue   # simstack's own requests (e.g. minting a session's token), not the suite's
        if label not in groups:
            groups[label] = Group(label or UNLABELLED, outcomes.get(label, default_outcome))
        groups[label].records.append(r)
    unlabelled = groups.pop(None, None)
    return list(groups.values()) + ([unlabelled] if unlabelled else [])


UNLABELLED = "outside any test (setup, import-time probes, other clients)"


def of_running_stack(stack, path: Path) -> Path:
    """``simstack report``: everything a running stack's stand-ins have recorded so far."""
    records, _ = stack.faults.timeline()
    groups = by_label(records)
    if len(groups) == 1 and groups[0].name == UNLABELLED:
        groups[0].name = "all traffic"
    return write(path, groups, "simstack timeline of a running stack",
                 subtitle=f"stack {stack.id}, api {stack.endpoints.api_url}, {len(records)} records so far")


_COLOURS = {"ok": "#1a7f37", "bad": "#cf222e", "warn": "#bc4c00", "open": "#0550ae"}


def static_lanes(records: list[dict], width: int = 360) -> str:
    """One test's lanes as plain HTML with inline styles and no script, for pytest-html's extras."""
    if not records:
        return '<div class="simstack-lanes" style="font:12px sans-serif;color:#57606a">simstack: no traffic</div>'
    data = report_data([Group("", "", records)], "", "", "rows", None, None)
    lanes, span = data["groups"][0]["lanes"], max(1.0, data["groups"][0]["span"])
    x = lambda ms: round(min(width, max(0.0, ms / span * width)), 1)   # noqa: E731
    rows = []
    for ln in lanes:
        if ln["k"] == "http":
            colour = _status_colour(ln["st"])
            what = f"HTTP {ln['m']} {ln['p']} → {ln['st'] if ln['st'] is not None else 'no response'}"
            tail = f"{ln['d']} ms" if ln["d"] is not None else "still in flight"
            marks = ""
        else:
            colour = _status_colour(ln["st"]) if ln["st"] != 101 else (
                _COLOURS["open"] if ln["open"] else _close_colour(ln["cc"]))
            what = f"WS {ln['id']} upgrade {ln['st']}"
            tail = (f"close {ln['cc']} {ln['cr'] or ''} by {ln['by'] or '?'}".strip() if ln["cc"] is not None
                    else ("open" if ln["open"] else "-")) + f", {ln['n_out']} out / {ln['n_in']} in"
            marks = "".join(f'<rect x="{x(ln["t"] + at)}" y="{0 if out else 10}" width="2" height="4" '
                            f'fill="{"#0969da" if out else "#8250df"}"/>' for at, out, _, _ in ln["fr"])
            if ln["err"]:
                tail += f"; server error: {ln['err']}"
        if ln["faults"]:
            tail += f"; faults: {', '.join(ln['faults'])}"
        bar = (f'<svg width="{width + 4}" height="14" style="vertical-align:middle">'
               f'<rect x="{x(ln["t"])}" y="5" width="{max(2.0, x(ln["end"]) - x(ln["t"]))}" height="4" fill="{colour}"/>'
               f'{marks}</svg>')
        rows.append(f'<tr><td style="white-space:nowrap;padding-right:8px">{_html_text(what)}</td><td>{bar}</td>'
                    f'<td style="color:{colour};padding-left:8px">{_html_text(tail)}</td></tr>')
    return ('<table class="simstack-lanes" style="font:12px sans-serif;border-collapse:collapse">'
            f'<caption style="text-align:left;color:#57606a">simstack timeline, 0 to {round(span, 1)} ms</caption>'
            + "".join(rows) + "</table>")


def _status_colour(status: int | None) -> str:
    return _COLOURS["bad"] if status is None or status >= 500 else _COLOURS["warn"] if status >= 400 else _COLOURS["ok"]


def _close_colour(code: int | None) -> str:
    return _COLOURS["ok"] if code in (1000, 1001) else _COLOURS["bad"] if code in (1006, 1011) else _COLOURS["warn"]
