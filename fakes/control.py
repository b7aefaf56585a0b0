"""What every stand-in shares: the active protocol faults, the traffic timeline,
and the admin API under ``/__simstack`` that simstack uses to drive them."""
from __future__ import annotations

import collections
import itertools
import os
import time
from dataclasses import dataclass, field

from fastapi import APIRouter, Header, HTTPException, Request

from simstack.shared.errors import ConfigError
from simstack.shared.faults import PROTOCOL, Fault
from simstack.shared.constants import ADMIN_HEADER, ADMIN_PREFIX, ENV_ADMIN_KEY, INTERNAL_LABEL
from simstack.shared.constants import INTERNAL_HEADER as INTERNAL
from simstack.shared.triggers import Candidate, TriggerState

from . import strictjson

INTERNAL_HEADER = INTERNAL.lower().encode()   # on simstack's own requests (e.g. the token it mints for a session)
FRAME_LOG_LIMIT = 500      # frames with time and preview kept per connection; types are always all kept
FRAME_PREVIEW_CHARS = 240


@dataclass
class Active:
    fault: Fault
    state: TriggerState
    applied_at: float = field(default_factory=time.time)


class FaultBook:
    """The protocol faults in force in one stand-in, with their trigger states."""

    def __init__(self, targets: tuple[str, ...]):
        self.targets = targets
        self._active: dict[str, Active] = {}

    def add(self, faults: list[Fault]) -> None:
        """All or nothing: every fault is checked before any is applied."""
        for f in faults:
            if f.layer != PROTOCOL or f.target not in self.targets:
                raise ConfigError(f"fault {f.id}: {f.kind} on {f.target} is not applied by this stand-in",
                                  f"this stand-in applies protocol faults on {', '.join(self.targets)}")
        ids = [f.id for f in faults]
        taken = sorted({i for i in ids if i in self._active or ids.count(i) > 1})
        if taken:
            raise ConfigError(f"fault id(s) {', '.join(map(repr, taken))} already in use",
                              "remove the active fault first (`simstack fault rm ID`) or pick another id")
        for f in faults:
            self._active[f.id] = Active(f, TriggerState(f.trigger))

    def remove(self, fault_id: str) -> bool:
        return self._active.pop(fault_id, None) is not None

    def reset(self) -> None:
        self._active.clear()

    def any_active(self) -> bool:
        return bool(self._active)

    def list(self) -> list[dict]:
        return [{**a.fault.to_dict(), "seen": a.state.seen, "fired": a.state.fired} for a in self._active.values()]

    def candidates(self, kind: str, target: str) -> list[Fault]:
        return [a.fault for a in self._active.values() if a.fault.kind == kind and a.fault.target == target]

    def decide(self, fault: Fault, who: Candidate = Candidate(), where=None) -> bool:
        """One candidate for one fault: does it fire? A hit is noted on ``where`` (a timeline record)."""
        active = self._active.get(fault.id)
        hit = active is not None and active.state.decide(who.user_id, time.time() - active.applied_at, who.e2e)
        if hit and where is not None:
            where.faults.append(fault.id)
        return hit

    def fire(self, kind: str, target: str, who: Candidate = Candidate(), where=None) -> Fault | None:
        """Evaluate every active fault of ``kind`` on ``target`` for one candidate;
        return the first that fires."""
        hits = [f for f in self.candidates(kind, target) if self.decide(f, who)]
        if hits and where is not None:
            where.faults.append(hits[0].id)
        return hits[0] if hits else None


@dataclass
class Record:
    """One HTTP request or WebSocket connection, as the stand-in saw it."""
    seq: int
    kind: str                      # "http" | "ws"
    label: str | None              # the test that caused it (set via /__simstack/mark)
    started: float
    session: str | None = None     # the marking session (a pytest run), so shared stacks keep runs apart
    method: str = ""
    path: str = ""
    status: int | None = None
    duration_ms: float | None = None
    user_id: str | None = None
    connection_id: str | None = None
    states: list = field(default_factory=list)       # [(state, ms since open)]
    frames_in: list = field(default_factory=list)    # message types received
    frames_out: list = field(default_factory=list)   # message types sent
    frames: list = field(default_factory=list)       # [(ms since open, "in"|"out", type, text preview)]
    close_code: int | None = None
    close_reason: str | None = None
    closed_by: str | None = None                      # "server" | "client"
    error: str | None = None
    faults: list = field(default_factory=list)
    version: int = 0

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}

    def frame(self, direction: str, mtype: str | None, data: str | bytes) -> None:
        """One WebSocket frame ("in" or "out"): its type, and while the log has room, when and a preview."""
        (self.frames_in if direction == "in" else self.frames_out).append(mtype)
        if len(self.frames) < FRAME_LOG_LIMIT:
            at = round((time.time() - self.started) * 1000, 1)
            preview = data[:FRAME_PREVIEW_CHARS]
            if isinstance(preview, bytes):
                preview = preview.decode("utf-8", "replace")
            self.frames.append((at, direction, mtype, preview))


class Timeline:
    """A bounded log of what each request and connection went through."""

    def __init__(self, maxlen: int = 20000):
        self._records: collections.deque[Record] = collections.deque(maxlen=maxlen)
        self._seq = itertools.count(1)
        self._version = itertools.count(1)
        self.version = 0
        self.label: str | None = None
        self.session: str | None = None

    def open(self, kind: str, internal: bool = False, **fields) -> Record:
        """A new record, attributed to the current mark, or to simstack itself when ``internal``."""
        label, session = (INTERNAL_LABEL, None) if internal else (self.label, self.session)
        rec = Record(seq=next(self._seq), kind=kind, label=label, session=session, started=time.time(), **fields)
        self._records.append(rec)
        self.touch(rec)
        return rec

    def touch(self, rec: Record) -> None:
        rec.version = self.version = next(self._version)

    def since(self, version: int = 0, label: str | None = None, session: str | None = None) -> list[dict]:
        return [r.to_dict() for r in self._records if r.version > version and (label is None or r.label == label)
                and (session is None or r.session == session)]


def admin_router(book: FaultBook, timeline: Timeline) -> APIRouter:
    """Admin calls must carry the stack's key (X-Simstack-Admin) when one is configured."""
    key = os.environ.get(ENV_ADMIN_KEY, "")

    async def guard(x_simstack_admin: str | None = Header(default=None, alias=ADMIN_HEADER)) -> None:
        if key and x_simstack_admin != key:
            raise HTTPException(403, detail={"message": f"missing or wrong {ADMIN_HEADER} key",
                                             "error_code": "ADMIN_FORBIDDEN"})

    from fastapi import Depends
    r = APIRouter(prefix=ADMIN_PREFIX, dependencies=[Depends(guard)])

    @r.get("/ping")
    async def ping() -> dict:
        return {"ok": True, "targets": list(book.targets)}

    @r.get("/faults")
    async def list_faults() -> dict:
        return {"faults": book.list()}

    @r.post("/faults")
    async def add_faults(request: Request) -> dict:
        body = strictjson.loads(await request.body())
        items = body if isinstance(body, list) else [body]
        try:
            faults = [Fault.from_dict(item, where=f"faults[{i}]") for i, item in enumerate(items)]
            book.add(faults)
        except ConfigError as exc:
            raise HTTPException(422, detail={"message": exc.message, "hint": exc.hint,
                                             "error_code": "BAD_FAULT"}) from None
        return {"applied": [f.id for f in faults]}

    @r.delete("/faults/{fault_id}")
    async def remove_fault(fault_id: str) -> dict:
        if not book.remove(fault_id):
            raise HTTPException(404, detail={"message": f"no fault {fault_id!r}", "error_code": "NO_SUCH_FAULT"})
        return {"removed": fault_id}

    @r.post("/reset")
    async def reset() -> dict:
        book.reset()
        return {"reset": True}

    @r.post("/urls")
    async def set_urls(request: Request) -> dict:
        """The stack's public URLs (the proxies), which only simstack knows; discovery reports them."""
        body = strictjson.loads(await request.body())
        if not isinstance(body, dict) or not all(isinstance(body.get(k), str) for k in ("api_url", "ws_url", "auth_url")):
            raise HTTPException(422, detail={"message": "body needs api_url, ws_url and auth_url strings",
                                             "error_code": "BAD_URLS"})
        request.app.state.public_urls = body
        return {"urls": body}

    @r.post("/mark")
    async def mark(request: Request) -> dict:
        body = strictjson.loads(await request.body())
        body = body if isinstance(body, dict) else {}
        timeline.label, timeline.session = body.get("label"), body.get("session")
        return {"label": timeline.label, "session": timeline.session, "version": timeline.version}

    @r.get("/timeline")
    async def get_timeline(since: int = 0, label: str | None = None, session: str | None = None) -> dict:
        return {"version": timeline.version, "records": timeline.since(since, label, session)}

    return r
