"""The frame every figure shares: a registry of figure functions, the run context, result entries,
the results file and the printed table."""
from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from simstack.shared.constants import NO_PROXY

ROOT = Path(__file__).resolve().parents[1]
SHARED_CORES_NOTE = ("client and server processes share the machine's cores; every load generator runs on "
                     "the same cores as the stack it measures")


@dataclass
class Context:
    quick: bool
    log: Callable[[str], None] = print

    def n(self, full, quick):
        """``full`` normally, ``quick`` under --quick."""
        return quick if self.quick else full


@dataclass
class Figure:
    name: str                       # what --only takes
    title: str
    keys: tuple[str, ...]           # the entries it writes, also when skipped or failed
    run: Callable[[Context], dict]


FIGURES: dict[str, Figure] = {}


def figure(name: str, title: str, keys: tuple[str, ...]):
    """Register ``fn(ctx) -> {key: entry}`` as a figure."""
    def register(fn):
        FIGURES[name] = Figure(name, title, keys, fn)
        return fn
    return register


def entry(title: str, unit: str, summary: dict, *, baseline: str | None = None,
          baseline_median: float | None = None, ratio: float | None = None,
          target: str | None = None, met: bool | None = None, note: str | None = None,
          headline: str | None = None, **details) -> dict:
    """One figure: ``summary`` is ``stats.summary(...)`` (median, min, max, runs) of the measured side;
    ``headline`` replaces the median in the table where the figure is a count, not a time."""
    e = {"title": title, "unit": unit, **summary}
    if headline:
        e["headline"] = headline
    if baseline is not None:
        e.update(baseline=baseline, baseline_median=baseline_median, ratio=ratio)
    if target is not None:
        e.update(target=target, met=met)
    if note:
        e["note"] = note
    if details:
        e["details"] = details
    return e


def skipped(title: str, reason: str) -> dict:
    return {"title": title, "median": None, "min": None, "max": None, "runs": 0, "skipped": reason}


def raise_nofile() -> tuple[int, int]:
    """Soft RLIMIT_NOFILE up to the hard limit, before any stack starts (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 65536)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def machine() -> dict:
    def version(pkg: str) -> str | None:
        from importlib.metadata import PackageNotFoundError, version as v
        try:
            return v(pkg)
        except PackageNotFoundError:
            return None

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "uvicorn": version("uvicorn"), "websockets": version("websockets"), "fastapi": version("fastapi"),
            "commit": commit, "nofile": list(resource.getrlimit(resource.RLIMIT_NOFILE)),
            "loadavg_at_start": [round(x, 2) for x in os.getloadavg()], "note": SHARED_CORES_NOTE}


def run(names: list[str], ctx: Context, out: Path) -> dict:
    raise_nofile()
    os.environ.setdefault("NO_PROXY", NO_PROXY)
    os.environ.setdefault("no_proxy", NO_PROXY)
    previous = _load(out)
    results = {"generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "command": "python -m bench " + " ".join(sys.argv[1:]), "quick": ctx.quick,
               "ran": names,   # with --only, the other figures are kept from the previous results file
               "machine": machine(), "figures": dict(previous.get("figures", {})) if len(names) < len(FIGURES) else {},
               "durations_s": {}}
    for name in names:
        fig = FIGURES[name]
        ctx.log(f"== {fig.name}: {fig.title}")
        t0 = time.perf_counter()
        try:
            produced = fig.run(ctx)
        except Exception as exc:   # one broken figure must not lose the others
            ctx.log(traceback.format_exc())
            produced = {}
            reason = f"failed: {exc.__class__.__name__}: {exc}"
        else:
            reason = "not produced"
        for key in fig.keys:
            results["figures"][key] = produced.get(key) or skipped(key, reason)
        results["durations_s"][name] = round(time.perf_counter() - t0, 1)
        ctx.log(f"   ({results['durations_s'][name]} s)")
        results["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n")
    return results


def _load(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 100 else f"{v:,.0f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def table(results: dict) -> str:
    """The figures as a Markdown table (printed, and pasted into bench/README.md)."""
    rows = [("figure", "median", "min – max", "runs", "baseline (median)", "ratio", "target", "met")]
    for key, e in results["figures"].items():
        if e.get("skipped"):
            rows.append((key, "skipped", e["skipped"][:60], "0", "-", "-", "-", "-"))
            continue
        unit = e.get("unit", "")
        base = f"{_fmt(e.get('baseline_median'))} {unit} ({e['baseline']})" if e.get("baseline") else "-"
        met = {True: "yes", False: "NO", None: "-"}[e.get("met")]
        rows.append((key, e.get("headline") or f"{_fmt(e['median'])} {unit}", f"{_fmt(e['min'])} – {_fmt(e['max'])} {unit}",
                     str(e["runs"]), base, _fmt(e.get("ratio")), e.get("target") or "-", met))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)
