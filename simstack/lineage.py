"""Every process a local stack started, found again by a mark it inherited, so none outlives its run.

PR_SET_PDEATHSIG (:mod:`launchers.local`) reaches only simstack's own children, and a killpg only
their process group. A command of yours may fork its real server behind a shell, run worker
processes, or put one in a session of its own (``setsid``, a daemon); when simstack's child dies
those are reparented and keep running, and keep their port. So each process a local stack spawns
gets ``SIMSTACK_OWNER=<owner pid> <owner start> <stack tag>`` in its environment, and every
descendant inherits it (unless it clears its environment). A stack's ``stop()`` ends what still
carries its own mark; :func:`state.reap` ends what carries the mark of an owner that died.

Only processes of this user whose environment carries the exact mark are touched; each is pinned
with a pidfd before it is signalled, so a pid reused meanwhile is never hit.
"""
from __future__ import annotations

import math
import os
import select
import signal
import time
from typing import Callable

ENV_OWNER = "SIMSTACK_OWNER"
_KEY = f"\0{ENV_OWNER}=".encode()


def mark_of(pid: int | str) -> str:
    """The mark in ``pid``'s environment, "" where it has none or cannot be read (not ours, gone)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = b"\0" + f.read()
    except OSError:
        return ""
    at = env.find(_KEY)
    if at < 0:
        return ""
    start = at + len(_KEY)
    end = env.find(b"\0", start)
    return env[start:end if end >= 0 else None].decode(errors="replace")


def owner_of(mark: str) -> str:
    """The owner part of a mark (all but its last word, the stack's tag: "<pid> <start>", or "<pid>"
    where /proc gives no start time), as :func:`state.owner_alive` takes it."""
    return mark.rpartition(" ")[0]


def marked(wanted: Callable[[str], bool]) -> list[int]:
    """Processes of this user, other than this one, whose mark ``wanted`` accepts."""
    me, uid, out = os.getpid(), os.getuid(), []
    try:
        names = os.listdir("/proc")
    except OSError:
        return []   # no /proc: no way to find them (and no PR_SET_PDEATHSIG either)
    for name in names:
        if not name.isdigit() or int(name) == me:
            continue
        mark = mark_of(name)
        try:
            if mark and wanted(mark) and os.stat(f"/proc/{name}").st_uid == uid:
                out.append(int(name))
        except OSError:
            continue
    return out


class _Pinned:
    """One process, held by a pidfd (where the kernel has them) so signals reach it and no other."""

    def __init__(self, pid: int, fd: int | None):
        self.pid, self.fd = pid, fd

    @classmethod
    def open(cls, pid: int, wanted: Callable[[str], bool]) -> "_Pinned | None":
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            return None
        except (AttributeError, OSError):
            fd = None   # no pidfds: the mark, checked again just below, is the guard
        if not wanted(mark_of(pid)):   # gone, or the pid already belongs to another process
            if fd is not None:
                os.close(fd)
            return None
        return cls(pid, fd)

    def send(self, sig: int) -> None:
        try:
            if self.fd is not None:
                signal.pidfd_send_signal(self.fd, sig)
            else:
                os.kill(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def running(self, wanted: Callable[[str], bool]) -> bool:
        if self.fd is not None:
            return not _exited([self.fd], 0)
        return bool(wanted(mark_of(self.pid)))

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)


def end(pids: list[int], wanted: Callable[[str], bool], grace: float, termed: set[int] = frozenset()) -> None:
    """SIGTERM each process (bar those in ``termed``, which already had theirs), SIGKILL what still
    runs after ``grace`` seconds, and wait (bounded) until they are gone. ``wanted`` is checked
    again first: only processes that still carry the mark."""
    procs = [p for p in (_Pinned.open(pid, wanted) for pid in pids) if p]
    try:
        for p in procs:
            if p.pid not in termed:
                p.send(signal.SIGTERM)
        _wait_gone(procs, wanted, grace)
        for p in procs:
            if p.running(wanted):
                p.send(signal.SIGKILL)
        _wait_gone(procs, wanted, 1.0)   # so its port is free once this returns
    finally:
        for p in procs:
            p.close()


def _wait_gone(procs: list[_Pinned], wanted: Callable[[str], bool], seconds: float) -> None:
    """Until none runs or ``seconds`` passed; woken by the pidfds as they exit (polled without them)."""
    deadline = time.monotonic() + seconds
    while (left := [p for p in procs if p.running(wanted)]) and (wait := deadline - time.monotonic()) > 0:
        fds = [p.fd for p in left if p.fd is not None]
        if len(fds) == len(left):
            _exited(fds, wait)
        else:
            time.sleep(min(0.02, wait))


def _exited(fds: list[int], seconds: float) -> list:
    """Wait up to ``seconds`` until one of the pidfds reads ready (its process exited); the ready ones.
    poll, not select: a session with many files open may hold pidfds above select's 1024 limit."""
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    return poller.poll(max(0, math.ceil(seconds * 1000)))


def end_orphans(owner_alive: Callable[[str], bool], grace: float = 3.0) -> None:
    """End every process whose mark names an owner that is gone (it was killed before its stop())."""
    verdicts: dict[str, bool] = {}

    def orphan(mark: str) -> bool:
        owner = owner_of(mark)
        if owner not in verdicts:
            verdicts[owner] = bool(owner) and not owner_alive(owner)
        return verdicts[owner]

    left = marked(orphan)
    if left:
        end(left, orphan, grace)
