"""Records of running stacks, so later commands (`simstack env`, `fault`, `down`,
the pytest plugin's --simstack-attach) find a stack started by `simstack up`.

One JSON file per stack in $SIMSTACK_STATE_DIR (default ~/.local/state/simstack), readable
only by its owner (0600: it holds the stack's admin key and bypass key).
A record whose owner process is gone is stale and is removed when seen, with what its owner
left behind; so are ``$TMPDIR/simstack-*`` directories whose owner died before writing a record,
and then the processes its stack started that are still running (see :func:`reap`, :mod:`lineage`).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from . import lineage
from .endpoints import Endpoints
from .shared.constants import ENV_UP_LOG
from .shared.errors import NotRunning, SimstackError


OWNER_FILE = "owner"   # in a temporary directory: "<pid> <start>" of the process that made it


def state_dir() -> Path:
    d = Path(os.environ.get("SIMSTACK_STATE_DIR") or Path.home() / ".local" / "state" / "simstack")
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    return d


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, readable by this user only."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    tmp.replace(path)


def _proc_stat(pid: int) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after the command name (state first), or [] where unreadable."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def process_start(pid: int) -> str:
    """The kernel's start time of ``pid`` (clock ticks since boot), or "" where /proc is absent."""
    fields = _proc_stat(pid)
    return fields[19] if len(fields) > 19 else ""


def owner_mark(pid: int | None = None) -> str:
    """Who owns a leftover-prone resource: pid and start time, so a reused pid is not taken for the owner."""
    pid = os.getpid() if pid is None else pid
    return f"{pid} {process_start(pid)}".strip()


def owner_alive(mark: str) -> bool:
    pid, _, started = mark.strip().partition(" ")
    try:
        pid_i = int(pid)
    except ValueError:
        return True   # not ours to judge
    return pid_alive(pid_i) and (not started or process_start(pid_i) in ("", started))


def private_tempdir() -> Path:
    """A ``$TMPDIR/simstack-*`` directory marked with its owner, so :func:`reap` removes it if the owner dies."""
    d = Path(tempfile.mkdtemp(prefix="simstack-"))
    (d / OWNER_FILE).write_text(owner_mark())
    return d


def pid_alive(pid: int) -> bool:
    """True for a running process; a zombie (dead, not yet reaped by its parent) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _proc_stat(pid)[:1] != ["Z"]


def write_record(stack, pid: int, scenario: str | None = None, redirects: dict | None = None) -> Path:
    path = state_dir() / f"{stack.id}.json"
    record = {"id": stack.id, "mode": stack.mode, "profile": stack.profile, "pid": pid, "created": time.time(),
              "startup_s": stack.startup_s, "scenario": scenario, "endpoints": stack.endpoints.to_dict(),
              "auth_policy": stack.auth_policy, "bypass_key": stack.bypass_key,
              "log_dir": str(getattr(stack.launcher, "log_dir", "") or ""),
              "up_log": os.environ.get(ENV_UP_LOG),   # a detached stack's own output
              "redirects": redirects}                         # simstack.redirect.Redirection.record()
    write_private(path, json.dumps(record, indent=2))
    return path


def remove_record(stack_id: str) -> None:
    (state_dir() / f"{stack_id}.json").unlink(missing_ok=True)


def records() -> list[dict]:
    """Records of live stacks, oldest first; stale ones are deleted, and so is what dead owners left."""
    out, orphans = [], False
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
            orphans |= _remove_leftovers(rec)
    orphans |= _reap_files({r.get("up_log") for r in out})
    if orphans:   # only then is /proc worth a look: the processes a dead owner's stack started
        lineage.end_orphans(owner_alive)
    return sorted(out, key=lambda r: r["created"])


def reap() -> None:
    """Remove what processes killed before they could clean up left: stale records, their logs,
    ``simstack-*`` temporary directories whose owner is gone and, when there was such a leftover, the
    processes their stacks started (a command's forked server outlives PDEATHSIG). Every command and
    session calls it."""
    records()


def _reap_files(in_use: set) -> bool:
    """Remove dead owners' temporary directories and detached logs; True if a directory was one
    (its owner may have had processes running)."""
    found = False
    for d in Path(tempfile.gettempdir()).glob("simstack-*"):
        try:
            mark = (d / OWNER_FILE).read_text()
        except OSError:
            continue   # not marked (yet, or not ours): leave it
        if not owner_alive(mark):
            shutil.rmtree(d, ignore_errors=True)
            found = True
    for log in state_dir().glob("up-*.log"):   # up-<pid>-<start>-<ms>.log of a `simstack up --detach`
        pid, _, rest = log.name[3:].partition("-")
        if str(log) not in in_use and not owner_alive(f"{pid} {rest.split('-')[0]}"):
            log.unlink(missing_ok=True)
    return found


def _remove_leftovers(rec: dict) -> bool:
    """The temporary log directory and output file of a stack whose owner died without cleaning up;
    True for a local stack (it ran processes)."""
    log_dir = rec.get("log_dir") or ""
    if Path(log_dir).name.startswith("simstack-"):
        shutil.rmtree(log_dir, ignore_errors=True)
    if rec.get("up_log"):
        Path(rec["up_log"]).unlink(missing_ok=True)
    return bool(log_dir)


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
