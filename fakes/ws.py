"""The WebSocket at /ws (CONTRACT §4) and its protocol faults (CONTRACT §6).

One connection goes through :mod:`fakes.lifecycle`; every frame to the client
is routed through the registry, so an unregistered connection cannot be sent
to. The two handlers differ only in *when* registration happens:

- fixed (default): register first, send the handshake sequence, then serve
  frames that were queued meanwhile;
- unfixed (``race_on_accept`` with ``fixed: false``): registration runs
  concurrently with the welcome send and the first read; whichever routes a
  frame first meets ``NotRegistered`` and the generic handler closes 1011.
"""
from __future__ import annotations

import asyncio
import base64
import os

from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState
from websockets.frames import CloseCode

from simstack.shared.constants import DEV_JWT_SECRET, ENV_AUTH_POLICY, ENV_JWT_SECRET
from simstack.shared.triggers import Candidate

from . import agent, edge, strictjson
from .common import is_e2e, json_error
from .control import FaultBook, Record, Timeline
from .edge import Refusal
from .lifecycle import Connection, NotRegistered, Registry, State
from .timing import Profile
from .tokens import Policy, TokenError, subject

SUBPROTOCOL = "jwt-auth"
SHOWN = 100   # characters of a client's value quoted back in an error frame
CHAT_TYPES = ("user_message", "chat", "message")


def policy_from_env() -> Policy:
    secrets = tuple(s for s in os.environ.get(ENV_JWT_SECRET, DEV_JWT_SECRET).split(",") if s)
    return Policy(os.environ.get(ENV_AUTH_POLICY, "lenient"), secrets)


def extract_token(ws: WebSocket) -> tuple[str | None, str]:
    """Authorization header, then the ``jwt.`` subprotocol entry, then ``?token=``."""
    auth = ws.headers.get("authorization", "")
    if auth.lower().startswith("bearer ") and auth[7:].strip():
        return auth[7:].strip(), "authorization"
    for entry in ws.headers.get("sec-websocket-protocol", "").split(","):
        entry = entry.strip()
        if entry.startswith("jwt."):
            try:
                return base64.urlsafe_b64decode(entry[4:] + "=" * (-len(entry[4:]) % 4)).decode(), "subprotocol"
            except ValueError:   # binascii.Error, UnicodeDecodeError, or a non-ASCII entry
                return None, "subprotocol (not base64url)"
    token = ws.query_params.get("token")
    return (token, "query") if token else (None, "none")


def offered_subprotocols(ws: WebSocket) -> list[str]:
    return [p.strip() for p in ws.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]


class Drop(Exception):
    """End the connection without a close frame (client sees 1006)."""


class Session:
    """Serves one accepted, authenticated connection."""

    def __init__(self, ws: WebSocket, conn: Connection, registry: Registry, book: FaultBook,
                 profile: Profile, rec: Record, timeline: Timeline):
        self.ws, self.conn, self.registry, self.book = ws, conn, registry, book
        self.profile, self.rec, self.timeline = profile, rec, timeline
        self.send_lock = asyncio.Lock()
        self.runs: set[asyncio.Task] = set()
        self.lost_from: int | None = None
        self.event_delay_s = 0.0
        self.held = False          # close_after_accept: frames held back until the close

    # --- frames out: always through the registry
    async def send(self, message: dict) -> None:
        self.registry.lookup(self.conn.id)
        if self.held:
            return
        text = strictjson.dumps(message)
        async with self.send_lock:
            await self.ws.send_text(text)
        self.rec.frame("out", message.get("type"), text)
        self.timeline.touch(self.rec)

    def error_frame(self, message: str, code: str = "INVALID_MESSAGE") -> dict:
        return {"type": "error", "message": message, "error_code": code, "timestamp": agent.now_iso()}

    async def welcome(self) -> None:
        cid = self.conn.id
        await self.send({"type": "handshake_validation", "connection_id": cid, "status": "validated",
                         "timestamp": agent.now_iso()})
        await self.send({"type": "ping", "timestamp": agent.now_iso()})
        await self.send({"type": "system_message", "timestamp": agent.now_iso(),
                         "data": {"event": "connection_established", "connection_id": cid,
                                  "user_id": self.conn.user_id, "connection_ready": True}})

    # --- the two handlers
    async def run_fixed(self, register_delay_s: float, welcome_delay_s: float) -> None:
        inbound: asyncio.Queue = asyncio.Queue()
        reader = asyncio.create_task(self._read_into(inbound))
        try:
            await asyncio.sleep(register_delay_s)
            self.registry.register(self.conn)
            await asyncio.sleep(welcome_delay_s)
            await self.welcome()
            self.conn.advance(State.READY)
            self.timeline.touch(self.rec)
            while True:
                getter = asyncio.ensure_future(inbound.get())
                done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    reader.result()   # re-raises the disconnect
                    return
                await self.handle(getter.result())
        finally:
            reader.cancel()

    async def run_unfixed(self, register_delay_s: float, welcome_delay_s: float) -> None:
        async def register_later() -> None:
            await asyncio.sleep(register_delay_s)
            self.registry.register(self.conn)

        async def welcome_later() -> None:
            await asyncio.sleep(welcome_delay_s)
            await self.welcome()

        async def serve() -> None:
            while True:
                await self.handle(await self._receive())

        registration = asyncio.create_task(register_later())
        tasks = [asyncio.create_task(welcome_later()), asyncio.create_task(serve())]
        try:
            welcome_done = False
            pending = set(tasks)
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for t in done:
                    t.result()   # NotRegistered surfaces here
                    welcome_done |= t is tasks[0]
                if welcome_done and registration.done() and self.conn.state is State.REGISTERED:
                    self.conn.advance(State.READY)
        finally:
            for t in (registration, *tasks):
                t.cancel()

    async def _read_into(self, queue: asyncio.Queue) -> None:
        while True:
            queue.put_nowait(await self._receive())

    async def _receive(self) -> str | bytes:
        message = await self.ws.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", CloseCode.NORMAL_CLOSURE))
        text = message.get("text")
        return text if text is not None else (message.get("bytes") or b"")

    # --- one client frame: every frame gets an answer
    async def handle(self, data: str | bytes) -> None:
        try:
            msg = strictjson.loads(data)
        except strictjson.InvalidJSON as exc:
            self.rec.frame("in", "<invalid>", data)
            await self.send(self.error_frame(f"Unknown or invalid message type: not JSON ({exc})"))
            return
        mtype = msg.get("type") if isinstance(msg, dict) else None
        self.rec.frame("in", mtype[:SHOWN] if isinstance(mtype, str) else "<invalid>", data)
        why = _malformed(msg, mtype)
        if why:
            await self.send(self.error_frame(f"Unknown or invalid message type: {why}"))
        elif mtype == "ping":
            await self.send({"type": "pong", "timestamp": agent.now_iso()})
        elif mtype == "get_agent_status":
            status = "running" if any(not t.done() for t in self.runs) else "idle"
            await self.send({"type": "agent_status", "status": status, "timestamp": agent.now_iso()})
        elif mtype == "start_agent":
            payload = msg.get("payload") if isinstance(msg.get("payload"), dict) else {}
            request = payload.get("user_request") or payload.get("message") or payload.get("content")
            agent_type = payload.get("agent_type") or agent.DEFAULT_AGENT
            if agent_type not in agent.KNOWN_AGENTS:
                await self.send(self.error_frame(f"Agent '{agent_type[:SHOWN]}' not found", "AGENT_NOT_FOUND"))
                await self.close(CloseCode.POLICY_VIOLATION, "Agent not found")
                return
            if not isinstance(request, str) or not request.strip():
                await self.send(self.error_frame("Unknown or invalid message type: start_agent needs "
                                                 "payload.user_request"))
                return
            self.start_run(agent_type, _thread_id(msg.get("thread_id") or payload.get("thread_id")), request)
        elif mtype in CHAT_TYPES:
            payload = msg.get("payload") if isinstance(msg.get("payload"), dict) else {}
            content = msg.get("content") or msg.get("message") or payload.get("content") or payload.get("message")
            if not isinstance(content, str) or not content.strip():
                await self.send(self.error_frame(f"Unknown or invalid message type: {mtype} needs content"))
                return
            self.start_run(agent.DEFAULT_AGENT, _thread_id(msg.get("thread_id")), content)
        else:
            shown = mtype[:SHOWN] if mtype else "missing type"
            await self.send(self.error_frame(f"Unknown or invalid message type: {shown}"))

    def start_run(self, agent_type: str, thread_id: str | None, request: str) -> None:
        run = agent.new_run(agent_type, thread_id, self.conn.user_id, request)
        task = asyncio.create_task(self._run(run))
        self.runs.add(task)
        task.add_done_callback(self.runs.discard)

    async def _run(self, run: dict) -> None:
        try:
            for i, kind in enumerate(agent.EVENTS):
                await asyncio.sleep((self.profile.event_interval_s if i else 0.0) + self.event_delay_s)
                if self.lost_from is not None and i >= self.lost_from:
                    continue
                await self.send(agent.event(kind, run))
        except (NotRegistered, WebSocketDisconnect, RuntimeError):
            pass   # the connection went away mid-run

    async def close(self, code: int, reason: str) -> None:
        if self.ws.application_state is WebSocketState.CONNECTED:
            await self.ws.close(code, reason)
        self.rec.close_code, self.rec.close_reason, self.rec.closed_by = code, reason, "server"


def _malformed(msg, mtype) -> str | None:
    """Why a parsed frame cannot be served (answered with INVALID_MESSAGE), if it cannot."""
    if not isinstance(msg, dict):
        return f"a frame must be a JSON object, got {type(msg).__name__}"
    if "type" in msg and not isinstance(mtype, str):
        return f"type must be a string, got {type(mtype).__name__}"
    if mtype in ("start_agent", *CHAT_TYPES):
        payload = msg.get("payload") if isinstance(msg.get("payload"), dict) else {}
        agent_type = payload.get("agent_type")
        if agent_type is not None and not isinstance(agent_type, str):
            return f"payload.agent_type must be a string, got {type(agent_type).__name__}"
        for where, value in (("thread_id", msg.get("thread_id")), ("payload.thread_id", payload.get("thread_id"))):
            if value is not None and (not isinstance(value, (str, int)) or isinstance(value, bool)):
                return f"{where} must be a string, got {type(value).__name__}"
    return None


def _thread_id(value: str | int | None) -> str | None:
    return str(value) if value is not None and value != "" else None


def refusal_before_accept(ws: WebSocket, token: str | None, upgrade: edge.Upgrade) -> Refusal | None:
    """The checks staging runs before accepting: the protocol faults of the edge layer
    (:mod:`fakes.edge`, the same appliers the gateway runs), then the stand-in's token policy."""
    st = ws.app.state
    refusal = edge.refusal_before_accept(upgrade)
    if refusal is not None and refusal.raises:   # upgrade_exception: a real exception, as on staging
        upgrade.rec.status, upgrade.rec.states = 500, [("raised before accept", None)]
        st.timeline.touch(upgrade.rec)
        raise RuntimeError("simstack upgrade_exception fault: exception before accept")
    if refusal is not None:
        return refusal
    if token is None:
        return Refusal(403, "no token (Authorization, jwt. subprotocol or ?token=)")
    try:
        st.policy.accept(token, upgrade.e2e)
    except TokenError as exc:
        return Refusal(403, str(exc))
    return None


async def websocket_endpoint(ws: WebSocket) -> None:
    """One connection: refuse before accept, or accept, authenticate, serve, and record every step."""
    st = ws.app.state
    book: FaultBook = st.book
    timeline: Timeline = st.timeline
    registry: Registry = st.registry
    rec = timeline.open("ws", method="GET", path="/ws")
    token, _source = extract_token(ws)
    user_id = subject(token) or "anonymous"
    conn = Connection(user_id)
    who = Candidate(user_id, is_e2e(ws.headers))
    rec.user_id, rec.connection_id = user_id, conn.id

    def note(extra: str | None = None) -> None:
        rec.states = list(conn.history) + ([(extra, None)] if extra else [])
        timeline.touch(rec)

    if st.profile.http_delay_s:
        await asyncio.sleep(st.profile.http_delay_s)
    upgrade = edge.Upgrade(book, "ws", user_id, token, rec, registry.open_for, who.e2e)
    refusal = refusal_before_accept(ws, token, upgrade)
    if refusal is not None:
        rec.status, rec.error = refusal.status, refusal.message
        note(f"refused {refusal.status}")
        if refusal.status == 403:
            await ws.close(CloseCode.POLICY_VIOLATION)   # closing before accept: the client sees HTTP 403
        else:
            await ws.send_denial_response(json_error(refusal.status, {"message": refusal.message},
                                                     refusal.error_code, headers=refusal.headers))
        return

    conn.advance(State.AUTHENTICATED)
    await ws.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered_subprotocols(ws) else None)
    conn.advance(State.ACCEPTED)
    rec.status = 101
    note()
    registry.count_open(user_id, +1)
    session = Session(ws, conn, registry, book, st.profile, rec, timeline)
    try:
        plan = edge.plan_after_accept(upgrade)
        why = plan.reject
        if why is not None:
            text = edge.reject_frame(why)
            await ws.send_text(text)
            rec.frame("out", "error_message", text)
            await session.close(CloseCode.POLICY_VIOLATION, why[:120])
            return
        await _serve(session, book, who, rec, plan)
    except Drop:
        rec.close_code, rec.close_reason, rec.closed_by = CloseCode.ABNORMAL_CLOSURE, "dropped without close frame", "server"
    except WebSocketDisconnect as exc:
        rec.close_code = rec.close_code or exc.code
        rec.closed_by = rec.closed_by or "client"
    except Exception as exc:                                  # the generic handler of staging
        rec.error = f"{exc.__class__.__name__}: {exc}"
        try:
            await session.close(CloseCode.INTERNAL_ERROR, "Internal error")
        except Exception:
            pass
    finally:
        for run in list(session.runs):   # agent runs end with their connection
            run.cancel()
        registry.unregister(conn)
        registry.count_open(user_id, -1)
        if conn.state is not State.CLOSED:
            conn.advance(State.CLOSED)
        note()


async def _serve(session: Session, book: FaultBook, who: Candidate, rec: Record, plan: edge.Plan) -> None:
    """Apply the plan the edge appliers made for this connection and the stand-in's own faults
    (setup_error, race_on_accept: they change how the server works inside), then run the handler."""
    f = book.fire("setup_error", "ws", who, where=rec)
    if f:
        raise ValueError(f"setup_error fault: {f.params['message']} ({who.user_id!r})")
    race = book.fire("race_on_accept", "ws", who, where=rec)
    session.lost_from, session.event_delay_s, session.held = plan.lost_from, plan.event_delay_s, plan.hold_to_close
    welcome_s = session.profile.first_frame_s + plan.hold_until_s
    register_s = race.params["register_delay_ms"] / 1000 if race else 0.0
    if race and not race.params["fixed"]:
        handler = session.run_unfixed(register_s, welcome_s)
    else:
        handler = session.run_fixed(register_s, welcome_s)
    if plan.close_at is None:
        return await handler
    delay, code, reason = plan.close_at
    try:
        await asyncio.wait_for(handler, timeout=delay)
        return
    except asyncio.TimeoutError:
        pass
    if code == CloseCode.ABNORMAL_CLOSURE:
        raise Drop()
    await session.close(code, reason)
