"""Figure 11: what every command's ``state.reap()`` costs, with nothing to reap and with a killed
stack's leftovers.

With nothing to reap (the common case) it only lists the state directory and ``$TMPDIR/simstack-*``.
With a dead owner's temporary directory it also scans ``/proc`` for processes carrying a dead
owner's mark (:mod:`simstack.lineage`) and ends them: here three ``sleep`` processes carrying one
(they exit on SIGTERM, as a server does). Baseline for that: the same leftover directory with no
process to end (the scan finds nothing). Each round runs in a TMPDIR and state directory of its own.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
import time
from pathlib import Path

from simstack import lineage, state

from ..harness import entry, figure
from ..stats import summary

ORPHANS = 3


@contextlib.contextmanager
def _sandbox():
    """TMPDIR and SIMSTACK_STATE_DIR of its own, restored afterwards (tempfile caches its directory)."""
    saved = {k: os.environ.get(k) for k in ("TMPDIR", "SIMSTACK_STATE_DIR")}
    with tempfile.TemporaryDirectory(prefix="bench-reap-") as d:
        for k in saved:
            os.environ[k] = str(Path(d) / k.lower())
            Path(os.environ[k]).mkdir()
        tempfile.tempdir = None
        try:
            yield
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            tempfile.tempdir = None


def _dead_owner() -> str:
    """The mark of a process that ran and is gone, and its leftover ``simstack-*`` directory."""
    gone = subprocess.Popen(["sleep", "60"])
    mark = state.owner_mark(gone.pid)
    gone.kill()
    gone.wait()
    d = Path(tempfile.gettempdir()) / "simstack-dead"
    d.mkdir()
    (d / state.OWNER_FILE).write_text(mark)
    return mark


def _timed_reap(orphans: int | None) -> float:
    """ms of one reap(): no leftovers (None), or a dead owner's directory and ``orphans`` processes."""
    with _sandbox():
        procs = []
        if orphans is not None:
            mark = _dead_owner()
            procs = [subprocess.Popen(["sleep", "60"], env={**os.environ, lineage.ENV_OWNER: f"{mark} simstack-dead"})
                     for _ in range(orphans)]
            time.sleep(0.05)   # exec'd, so their environment carries the mark
        t0 = time.perf_counter()
        state.reap()
        took = time.perf_counter() - t0
        left = [p for p in procs if p.poll() is None]
        for p in procs:
            p.kill()
            p.wait()
        if left:
            raise RuntimeError(f"reap left {len(left)} of {len(procs)} orphans running")
        return took * 1000


@figure("reap", "what each command's reap costs: nothing to reap, and a killed stack's leftovers",
         ("reap_idle_ms", "reap_orphans_ms"))
def reap(ctx) -> dict:
    rounds = ctx.n(9, 1)
    idle, empty, orphans = [], [], []
    for _ in range(rounds):   # the three cases take turns
        idle.append(_timed_reap(None))
        empty.append(_timed_reap(0))
        orphans.append(_timed_reap(ORPHANS))
    processes = sum(1 for n in os.listdir("/proc") if n.isdigit())
    i, e, o = summary(idle, 3), summary(empty, 3), summary(orphans, 3)
    ctx.log(f"   reap: {i['median']} ms idle; leftovers {e['median']} ms, with {ORPHANS} orphans {o['median']} ms "
            f"({processes} processes)")
    return {
        "reap_idle_ms": entry("reap() with nothing to reap (every command)", "ms", i),
        "reap_orphans_ms": entry(f"reap() of a dead owner's directory and {ORPHANS} orphans it started", "ms", o,
                                 baseline="the same directory, no orphan (scan only)", baseline_median=e["median"],
                                 ratio=round(o["median"] / e["median"], 2) if e["median"] else None,
                                 processes_on_machine=processes)}
