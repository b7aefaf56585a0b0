"""Records of running stacks, so later commands (`simstack env`, `fault`, `down`,
the pytest plugin's --simstack-attach) find a stack started by `simstack up`.

One JSON file per stack in $SIMSTACK_STATE_DIR (default ~/.local/state/simstack).
A record whose owner process is gone is stale and is removed when seen.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from .endpoints import Endpoints
from .shared.errors import NotRunning, SimstackError


def state_dir() -> Path:
    d = Path(os.environ.get("SIMSTACK_STATE_DIR") or Path.home() / ".local" / "state" / "simstack")
    d.mkdir(parents=True, exist_ok=True)
    return d


def pid_alive(pid: int) -> bool:
    """True for a running process; a zombie (dead, not yet reaped by its parent) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def write_record(stack, pid: int, scenario: str | None = None, redirects: dict | None = None) -> Path:
    path = state_dir() / f"{stack.id}.json"
    record = {"id": stack.id, "mode": stack.mode, "profile": stack.profile, "pid": pid, "created": time.time(),
              "startup_s": stack.startup_s, "scenario": scenario, "endpoints": stack.endpoints.to_dict(),
              "log_dir": str(getattr(stack.launcher, "log_dir", "") or ""),
              "up_log": os.environ.get("SIMSTACK_UP_LOG"),   # a detached stack's own output
              "redirects": redirects}                         # simstack.redirect.Redirection.record()
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2))
    tmp.replace(path)
    return path


def remove_record(stack_id: str) -> None:
    (state_dir() / f"{stack_id}.json").unlink(missing_ok=True)


def records() -> list[dict]:
    """Records of live stacks, oldest first; stale ones are deleted."""
    out = []
    for path in sorted(state_dir().glob("*.json")):
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            path.unlink(missing_ok=True)
            continue
        if pid_alive(rec.get("pid", -1)):
            out.append(rec)
        else:   # its owner was killed: take what it left behind
            path.unlink(missing_ok=True)
            _remove_leftovers(rec)
    return sorted(out, key=lambda r: r["created"])


def _remove_leftovers(rec: dict) -> None:
    """The temporary log directory and output file of a stack whose owner died without cleaning up."""
    log_dir = rec.get("log_dir") or ""
    if Path(log_dir).name.startswith("simstack-"):
        shutil.rmtree(log_dir, ignore_errors=True)
    if rec.get("up_log"):
        Path(rec["up_log"]).unlink(missing_ok=True)


def find_record(stack_id: str | None = None) -> dict:
    live = records()
    if stack_id:
        for rec in live:
            if rec["id"] == stack_id:
                return rec
        raise NotRunning(f"no running stack with id {stack_id!r}")
    if not live:
        raise NotRunning()
    if len(live) > 1:
        ids = ", ".join(r["id"] for r in live)
        raise SimstackError(f"{len(live)} stacks are running ({ids})", "pick one with --id")
    return live[0]


def find_running(stack_id: str | None = None) -> Endpoints:
    """Endpoints of the running stack (the only one, or the one with ``stack_id``)."""
    return Endpoints.from_dict(find_record(stack_id)["endpoints"])
