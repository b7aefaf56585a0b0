"""What each request and connection went through, as a developer reads it."""
from __future__ import annotations

import time
from datetime import datetime

from .terminal import fit


def describe(rec: dict) -> str:
    """One record: when, what, how it ended, which faults fired; wrapped to 100 columns, never cut."""
    return fit(_line(rec), indent=6)


def _line(rec: dict) -> str:
    when = datetime.fromtimestamp(rec["started"]).strftime("%H:%M:%S.%f")[:-3]
    faults = f"  faults={','.join(rec['faults'])}" if rec.get("faults") else ""
    label = f"  [{rec['label']}]" if rec.get("label") else ""
    if rec["kind"] == "http":
        took = f" {rec['duration_ms']:.0f}ms" if rec.get("duration_ms") is not None else " (in flight)"
        return f"{when} {rec.get('service', ''):4} HTTP {rec['method']} {rec['path']} -> {rec.get('status')}{took}{faults}{label}"
    states = " > ".join(s for s, _ in rec.get("states") or [])
    close = f" close={rec['close_code']}" if rec.get("close_code") else ""
    reason = f" ({rec['close_reason']})" if rec.get("close_reason") else ""
    err = f"  error={rec['error']}" if rec.get("error") else ""
    out = rec.get("frames_out") or []
    return (f"{when} {rec.get('service', ''):4} WS {rec.get('connection_id')} user={rec.get('user_id')} "
            f"status={rec.get('status')} [{states}]{close}{reason} in={len(rec.get('frames_in') or [])} "
            f"out={len(out)}{' ' + ','.join(out[-6:]) if out else ''}{err}{faults}{label}")


def follow(faults, interval_s: float = 0.5, once: bool = False, out=print) -> None:
    """Print records as they appear or change (Ctrl-C to stop)."""
    versions: dict[str, int] = {}
    while True:
        records, versions = faults.timeline(versions)
        for rec in records:
            out(describe(rec))
        if once:
            return
        time.sleep(interval_s)
