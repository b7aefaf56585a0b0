"""Replay: a cassette (:mod:`simstack.cassette`) served as the api or auth upstream.

simstack runs it like a service of yours, behind Toxiproxy and the gateway, so every fault still
applies on top of what it answers.

- HTTP: matched by method, path and query (``token`` and configured volatile names ignored); equal
  requests get the recorded answers in turn; each answer keeps its recorded latency. An unmatched
  request gets a JSON 404 naming the closest recorded request (``near_miss``).
- WebSocket: the recorded welcome frames, then for each client frame the server frames that
  followed the best-matching client frame in the recording (same ``type``, then the fewest
  differing fields, volatile ones ignored), with the recorded gaps, and the recorded close.

Configured by environment: ``SIMSTACK_REPLAY_DIR``, ``SIMSTACK_REPLAY_SERVICE`` (api or auth),
``SIMSTACK_REPLAY_SPEED`` (1.0 = recorded timing; 0 = no waiting), ``SIMSTACK_REPLAY_IGNORE``
(comma-separated query names and frame fields to ignore when matching).
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import difflib
import itertools
import json
import os
from collections import defaultdict
from urllib.parse import parse_qsl

from simstack.cassette import Entry, body_bytes, body_text, load

from . import edge

ENV_DIR = "SIMSTACK_REPLAY_DIR"
ENV_SERVICE = "SIMSTACK_REPLAY_SERVICE"
ENV_SPEED = "SIMSTACK_REPLAY_SPEED"
ENV_IGNORE = "SIMSTACK_REPLAY_IGNORE"
HEALTH_PATH = "/__simstack_replay/health"   # simstack's own readiness check; never a recorded path
# Fields that differ between any two runs: never used to tell frames or queries apart.
VOLATILE = frozenset({"token", "timestamp", "thread_id", "run_id", "message_id", "request_id", "id",
                      "connection_id", "client_id", "jti", "iat", "exp"})
MIN_ECHO = 6   # shorter client values are not substituted in answers (too likely to appear by chance)


def _query_key(query: str, ignore: frozenset) -> tuple:
    return tuple(sorted((k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k not in ignore))


def _leaves(value, prefix: str = "", ignore: frozenset = frozenset()) -> dict:
    """JSON value -> {key path: leaf value}, without ignored keys."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k not in ignore:
                out.update(_leaves(v, f"{prefix}.{k}" if prefix else k, ignore))
        return out
    if isinstance(value, list):
        out = {}
        for i, v in enumerate(value):
            out.update(_leaves(v, f"{prefix}[{i}]", ignore))
        return out
    return {prefix: value}


def _token_kind(token: str | None) -> str:
    """What a credential looks like (a redacted JWT still looks like a JWT): jwt, other or none."""
    if not token:
        return "none"
    parts = token.split(".")
    return "jwt" if len(parts) == 3 and all(parts[:2]) else "other"


def credentials(headers, subprotocols: list[str], query: str) -> tuple[str, str, str]:
    """The shape of an upgrade's credentials: Authorization, the ``jwt.`` subprotocol entry, ``?token=``."""
    auth = next((v for k, v in headers if k.lower() == "authorization"), None)
    bearer = auth.partition(" ")[2].strip() if auth and " " in auth else auth
    entry = next((p[4:] for p in subprotocols if p.startswith("jwt.")), None)
    decoded = None
    if entry:
        try:
            decoded = base64.urlsafe_b64decode(entry + "=" * (-len(entry) % 4)).decode()
        except (ValueError, UnicodeDecodeError):
            decoded = entry
    token = dict(parse_qsl(query, keep_blank_values=True)).get("token")
    return _token_kind(bearer), _token_kind(decoded), _token_kind(token)


def frame_type(body: dict | None) -> str | None:
    value = (body or {}).get("json")
    return value.get("type") if isinstance(value, dict) and isinstance(value.get("type"), str) else None


class Session:
    """One recorded WebSocket session, split into what the server sent and when."""

    def __init__(self, entry: Entry, ignore: frozenset):
        d = entry.data
        self.entry, self.data = entry, d
        self.frames = d["frames"]
        self.client = [i for i, f in enumerate(self.frames) if f["dir"] == "in"]
        self.client_leaves = {i: _leaves((self.frames[i].get("json")), ignore=ignore) for i in self.client}
        self.server_close = d.get("closed_by") == "server" and d.get("close_code") is not None
        request = d.get("request") or {}
        self.shape = credentials(request.get("headers") or [], request.get("subprotocols") or [], d.get("query", ""))
        self.cut = d.get("closed_by") == "cut"

    def answer_to(self, i: int | None) -> tuple[float, list[dict], bool]:
        """(time of the client frame, server frames up to the next client frame, does the close follow)."""
        start = 0 if i is None else i + 1
        t0 = 0.0 if i is None else self.frames[i]["t_ms"]
        out = []
        for f in self.frames[start:]:
            if f["dir"] == "in":
                return t0, out, False
            out.append(f)
        return t0, out, self.server_close or self.cut


class Replay:
    def __init__(self, directory: str, service: str, speed: float = 1.0, ignore=()):
        self.ignore = VOLATILE | frozenset(ignore)
        self.speed = speed
        entries = [e for e in load(directory) if e.data["service"] == service]
        self.http: dict[tuple, list[Entry]] = defaultdict(list)
        self.http_all = [e for e in entries if e.kind == "http" and not e.data.get("incomplete")]
        for e in self.http_all:
            d = e.data
            self.http[(d["method"], d["path"], _query_key(d.get("query", ""), self.ignore))].append(e)
        self.turn: dict[tuple, itertools.count] = defaultdict(itertools.count)
        self.sessions = [Session(e, self.ignore) for e in entries if e.kind == "ws" and not e.data.get("incomplete")]
        self.ws_turn: dict[str, itertools.count] = defaultdict(itertools.count)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":   # (served with --lifespan off: nothing to start or stop)
            return await self._http(scope, receive, send)
        if scope["type"] == "websocket":
            return await self._ws(scope, receive, send)

    async def _wait(self, ms: float | None) -> None:
        if self.speed > 0 and ms and ms > 0:
            await asyncio.sleep(ms / 1000 / self.speed)

    # ------------------------------------------------------------------ HTTP
    async def _http(self, scope, receive, send):
        while (await receive()).get("more_body"):
            pass
        if scope["path"] == HEALTH_PATH:
            return await _json(send, 200, {"status": "replaying"})
        query = scope.get("query_string", b"").decode("latin-1")
        key = (scope["method"], scope["path"], _query_key(query, self.ignore))
        recorded = self.http.get(key)
        if not recorded:
            return await _json(send, 404, self._near_miss(scope["method"], scope["path"], query))
        e = recorded[next(self.turn[key]) % len(recorded)]
        d = e.data
        await self._wait(d.get("latency_ms"))
        body = body_bytes(d["response"].get("body"))
        headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in d["response"].get("headers", ())
                   if k.lower() != "content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": d["status"], "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _near_miss(self, method: str, path: str, query: str) -> dict:
        asked = f"{method} {path}" + (f"?{query}" if query else "")
        body = {"detail": f"no recorded answer for {asked}", "error_code": "NOT_RECORDED"}
        if self.http_all:
            def score(e: Entry) -> float:
                d = e.data
                return ((d["method"] == method) + difflib.SequenceMatcher(None, d["path"], path).ratio()
                        + 0.5 * difflib.SequenceMatcher(None, d.get("query", ""), query).ratio())
            closest = max(self.http_all, key=score)
            best = closest.data
            near = f"{best['method']} {best['path']}" + (f"?{best['query']}" if best.get("query") else "")
            body["near_miss"] = {"request": near, "status": best["status"], "where": closest.where()}
            body["detail"] += f"; closest recorded request: {near}"
        return body

    # ------------------------------------------------------------------ WebSocket
    def _pick(self, path: str, query: str, shape: tuple) -> Session | None:
        """A recorded session for this upgrade: same path, then the same credentials' shape (a refused
        upgrade is only replayed to a request that would be refused alike), then the same query; in turn."""
        same = [s for s in self.sessions if s.data["path"] == path]
        if not same:
            return None
        same = [s for s in same if s.shape == shape] or same
        qk = _query_key(query, self.ignore)
        exact = [s for s in same if _query_key(s.data.get("query", ""), self.ignore) == qk] or same
        key = (path, shape, qk)
        return exact[next(self.ws_turn[key]) % len(exact)]

    def _best(self, value, current: Session) -> tuple[Session, int] | None:
        """The recorded client frame (session, index) closest to ``value``, the client's parsed frame."""
        mtype = value.get("type") if isinstance(value, dict) else None
        leaves = _leaves(value, ignore=self.ignore)
        best, best_score = None, None
        for order, s in enumerate([current] + [s for s in self.sessions if s is not current]):
            for i in s.client:
                theirs = s.client_leaves[i]
                ftype = frame_type(s.frames[i])
                diff = sum(1 for k in leaves.keys() | theirs.keys() if leaves.get(k, ...) != theirs.get(k, ...))
                score = (ftype != mtype, diff, order > 0, i)
                if best_score is None or score < best_score:
                    best, best_score = (s, i), score
        return best

    async def _ws(self, scope, receive, send):
        await receive()   # websocket.connect
        query = scope.get("query_string", b"").decode("latin-1")
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        session = self._pick(scope["path"], query, credentials(headers, scope.get("subprotocols") or [], query))
        if session is None:
            body = json.dumps({"detail": f"no recorded WebSocket session for {scope['path']}",
                               "error_code": "NOT_RECORDED"}).encode()
            await send({"type": "websocket.http.response.start", "status": 404,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
            await send({"type": "websocket.http.response.body", "body": body})
            return
        d = session.data
        if d["status"] != 101:   # a refused upgrade: its status and body
            await self._wait(d.get("duration_ms"))
            body = body_bytes((d.get("response") or {}).get("body"))
            headers = [(k.lower().encode("latin-1"), v.encode("latin-1"))
                       for k, v in (d.get("response") or {}).get("headers", ()) if k.lower() != "content-length"]
            await send({"type": "websocket.http.response.start", "status": d["status"],
                        "headers": headers + [(b"content-length", str(len(body)).encode())]})
            await send({"type": "websocket.http.response.body", "body": body})
            return
        offered = scope.get("subprotocols") or []
        chosen = d.get("subprotocol") if d.get("subprotocol") in offered else None
        await send({"type": "websocket.accept", "subprotocol": chosen})
        done = asyncio.Event()
        tasks: set[asyncio.Task] = set()

        welcomed = asyncio.Event()   # answers never overtake the welcome (the server sent it first)

        async def play(frames: list[dict], t0_ms: float, close: bool, s: Session, welcome: bool = False,
                       echoes: tuple = ()) -> None:
            last = t0_ms
            if not welcome:
                await welcomed.wait()
            for f in frames:
                await self._wait(f["t_ms"] - last)
                last = f["t_ms"]
                payload = body_text(f)
                if echoes and isinstance(payload, str):
                    for recorded, now in echoes:
                        payload = payload.replace(recorded, now)
                await send({"type": "websocket.send", **({"bytes": payload} if isinstance(payload, bytes)
                                                         else {"text": payload})})
            if welcome:
                welcomed.set()
            if close and not done.is_set():
                await self._wait(s.data.get("duration_ms", last) - last)
                done.set()
                if s.cut:
                    raise _Cut()
                code = s.data["close_code"]
                await send({"type": "websocket.close", "code": edge.sendable(code),
                            "reason": s.data.get("close_reason") or ""})

        def start(frames, t0, close, s, welcome=False, echoes=()) -> None:
            task = asyncio.create_task(play(frames, t0, close, s, welcome, echoes))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            task.add_done_callback(lambda t: t.cancelled() or t.exception() is None or done.set())

        t0, welcome, close = session.answer_to(None)
        start(welcome, t0, close and not session.client, session, welcome=True)
        waiter = asyncio.create_task(done.wait())
        first = True
        try:
            while True:
                getter = asyncio.create_task(receive())
                finished, _ = await asyncio.wait({getter, waiter}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in finished:
                    getter.cancel()
                    break
                message = getter.result()
                if message["type"] != "websocket.receive":
                    return   # the client closed
                value = _parsed(message.get("text"))
                match = self._best(value, session)
                if match is not None:
                    s, i = match
                    t_in, frames, close = s.answer_to(i)
                    if first:   # the welcome already played: not again when the answer recorded it too
                        frames, first = _without_welcome(frames, [frame_type(f) for f in welcome]), False
                    start(frames, t_in, close, s, echoes=_echoes(s.frames[i].get("json"), value))
            # the recorded close was sent (or the connection is to be cut): wait for the player to finish
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            waiter.cancel()
            for t in list(tasks):
                t.cancel()
            with contextlib.suppress(Exception):
                await asyncio.gather(*tasks, return_exceptions=True)


def _parsed(text: str | None):
    """A client text frame as JSON (None: binary, or not JSON): parsed once, for matching and echoes."""
    try:
        return json.loads(text) if text is not None else None
    except (ValueError, RecursionError):
        return None


def _echoes(recorded, now) -> tuple:
    """(recorded, new) pairs of the string values this client frame (parsed) chose differently from the
    recorded one (a thread_id, a request id): the server's answer echoed the recorded ones, so it echoes
    these instead."""
    theirs, ours = _leaves(recorded), _leaves(now)
    pairs = []
    for path, value in theirs.items():
        new = ours.get(path)
        if isinstance(value, str) and isinstance(new, str) and value != new and len(value) >= MIN_ECHO:
            pairs.append((json.dumps(value)[1:-1], json.dumps(new)[1:-1]))
    return tuple(pairs)


def _without_welcome(frames: list[dict], welcome: list[str | None]) -> list[dict]:
    """``frames`` without its leading welcome frames. When a client speaks before the server's welcome,
    the recording has the welcome after the client's first frame, as part of what follows it."""
    n = 0
    while n < len(frames) and n < len(welcome) and frame_type(frames[n]) == welcome[n]:
        n += 1
    return frames[n:]


class _Cut(Exception):
    """The recording ended without a close frame: the handler returns and the connection is cut."""


async def _json(send, status: int, body: dict) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


class InProcess:
    """The gateway's HTTP upstream when the upstream is a replay: the cassette answers in the gateway's
    own process (same ``forward`` as :class:`fakes.forward.Upstream`), so a replayed request crosses
    Toxiproxy and the fault layer and no further hop, like a request to a stand-in."""

    def __init__(self, replay: Replay):
        self.replay = replay

    async def forward(self, method: bytes, target: bytes, headers: list, body, send) -> None:
        path, _, query = target.partition(b"?")
        scope = {"type": "http", "method": method.decode("latin-1"), "path": path.decode("latin-1"),
                 "query_string": query, "headers": headers}
        chunks = body.__aiter__() if body is not None else None

        async def receive() -> dict:
            if chunks is None:
                return {"type": "http.request", "body": b"", "more_body": False}
            try:
                return {"type": "http.request", "body": await chunks.__anext__(), "more_body": True}
            except StopAsyncIteration:
                return {"type": "http.request", "body": b"", "more_body": False}

        await self.replay(scope, receive, send)

    def close(self) -> None:
        pass


def serve_http_in(gateway) -> None:
    """Make ``gateway`` answer HTTP from the cassette named in the environment (see :class:`InProcess`);
    every request then takes the ordinary path: there is no upstream connection for the shortcut."""
    gateway.http = InProcess(from_env(gateway.targets[0]))
    gateway.asgi_shortcut = None


def from_env(service: str | None = None) -> Replay:
    """uvicorn factory: the replay configured by SIMSTACK_REPLAY_*."""
    directory, service = os.environ.get(ENV_DIR), service or os.environ.get(ENV_SERVICE, "api")
    if not directory:
        raise SystemExit(f"{ENV_DIR} is not set; give it a cassette directory")
    speed = float(os.environ.get(ENV_SPEED, "1.0"))
    ignore = [n.strip() for n in os.environ.get(ENV_IGNORE, "").split(",") if n.strip()]
    return Replay(directory, service, speed, ignore)
