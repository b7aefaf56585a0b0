"""The gateway: simstack's fault layer in front of a service it did not write.

An ASGI app (served by uvicorn) that forwards HTTP and WebSocket traffic to one upstream URL and
applies, on the way, every protocol fault that applies at the edge of a service
(:mod:`fakes.edge`, ``HTTPFaults``), records each request and connection in the same timeline as
a stand-in, and answers the same admin API (``/__simstack``). The chain is
suite -> Toxiproxy listener (network faults) -> gateway (protocol faults) -> upstream.

- HTTP: method, path, query, headers (minus hop-by-hop ones) and body go upstream as a stream
  (:mod:`fakes.forward`, h11 on pooled keep-alive connections); status, headers and body come back
  as a stream, undecoded.
- WebSocket: the upgrade goes upstream (websockets client) with the client's headers
  (Authorization, E2E headers, ...) and offered subprotocols; the upstream's selected subprotocol
  is echoed to the client; a refused upgrade comes back with the upstream's status, headers and
  body. Frames pass both ways; a close passes with its code and reason, a cut as a cut.

Configured by environment (``python -m simstack.fakes.serve simstack.fakes.gateway:from_env
--factory``): ``SIMSTACK_GATEWAY_UPSTREAM`` (``http://host:port``) and
``SIMSTACK_GATEWAY_TARGETS`` (``api,ws`` or ``auth``).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import time
import uuid

from urllib.parse import urlsplit

from fastapi import FastAPI
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from simstack.shared.errors import ConfigError

from . import edge
from .common import HTTPFaults, is_e2e, json_error
from .control import ADMIN_PREFIX, FaultBook, Timeline, admin_router
from .forward import HOP_BY_HOP, Upstream, UpstreamError, forward_headers, request_target
from .lifecycle import Registry
from .recorder import recording   # imports simstack.cassette only when recording (not in the stand-ins image)
from .shortcut import Shortcut
from .timing import TIMINGS
from .tokens import subject
from .ws import extract_token, offered_subprotocols

ENV_UPSTREAM = "SIMSTACK_GATEWAY_UPSTREAM"
ENV_TARGETS = "SIMSTACK_GATEWAY_TARGETS"

# Headers of the WebSocket handshake itself: the gateway's client to the upstream makes its own.
HANDSHAKE = frozenset({b"sec-websocket-key", b"sec-websocket-version", b"sec-websocket-extensions",
                       b"sec-websocket-protocol", b"sec-websocket-accept", b"content-length", b"user-agent"})


class GatewayBook(FaultBook):
    """A forwarded service's fault book: refuses the kinds only simstack's own stand-ins can apply."""

    def add(self, faults) -> None:
        for f in faults:
            if f.kind in edge.SERVER_INTERNAL:
                raise ConfigError(
                    f"fault {f.id}: {f.kind} cannot be applied to a forwarded service: "
                    f"{edge.SERVER_INTERNAL[f.kind]}",
                    f"protocol kinds for a forwarded service: {', '.join(sorted(edge.edge_kinds()))}")
        super().add(faults)


class Gateway:
    """The ASGI app: admin API, HTTP forwarding (behind HTTPFaults) and WebSocket forwarding."""

    def __init__(self, upstream: str, targets: tuple[str, ...]):
        url = urlsplit(upstream)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ConfigError(f"upstream {upstream!r} is not an http(s)://host:port URL",
                              "e.g. http://127.0.0.1:9000")
        tls = url.scheme == "https"
        self.upstream = upstream.rstrip("/")
        self.ws_base = ("wss://" if tls else "ws://") + url.netloc
        self.http = Upstream(url.hostname, url.port or (443 if tls else 80), tls=tls)
        self.targets = targets
        self.ws_target = "ws" if "ws" in targets else targets[0]
        self.book = GatewayBook(targets)
        self.timeline = Timeline()
        self.open = Registry()   # open connections per user (connection_cap)
        self.admin = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
        self.admin.include_router(admin_router(self.book, self.timeline))
        self.admin.add_exception_handler(StarletteHTTPException, _json_http_error)
        inner = recording(self._dispatch, self.timeline, targets[0])
        self.app = HTTPFaults(inner, book=self.book, timeline=self.timeline, profile=TIMINGS["fast"], target=targets[0])
        # Plain requests skip the ASGI layers (fakes/shortcut.py), unless recording, which needs them all.
        self.asgi_shortcut = Shortcut(self) if inner == self._dispatch else None

    async def __call__(self, scope, receive, send):
        await self.app(scope, receive, send)

    async def _dispatch(self, scope, receive, send):
        kind = scope["type"]
        if kind == "lifespan":
            return await self._lifespan(receive, send)
        if scope["path"].startswith(ADMIN_PREFIX):
            return await self.admin(scope, receive, send)
        if kind == "http":
            return await self.forward_http(scope, receive, send)
        if kind == "websocket":
            return await self._forward_ws(WebSocket(scope, receive, send))

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.http.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # ------------------------------------------------------------------ HTTP
    async def forward_http(self, scope, receive, send) -> None:
        target = request_target(scope)
        has_body = any(k == b"transfer-encoding" or (k == b"content-length" and v != b"0")
                       for k, v in scope["headers"])
        try:
            await self.http.forward(scope["method"].encode(), target, forward_headers(scope),
                                    _body(receive) if has_body else None, send)
        except UpstreamError as exc:
            if not exc.started:   # once the response has started, the client sees it cut short
                await json_error(502, f"the upstream {self.upstream} did not answer: {exc}",
                                 "BAD_GATEWAY")(scope, receive, send)

    # ------------------------------------------------------------------ WebSocket
    async def _forward_ws(self, ws: WebSocket) -> None:
        rec = self.timeline.open("ws", method="GET", path=ws.scope["path"])
        token, _source = extract_token(ws)
        user_id = subject(token) or "anonymous"
        rec.user_id, rec.connection_id = user_id, f"gw_{uuid.uuid4().hex[:12]}"
        t0 = time.monotonic()

        def note(state: str) -> None:
            rec.states.append((state, round((time.monotonic() - t0) * 1000, 1)))
            self.timeline.touch(rec)

        upgrade = edge.Upgrade(self.book, self.ws_target, user_id, token, rec, self.open.open_for, is_e2e(ws.headers))
        refusal = edge.refusal_before_accept(upgrade)
        if refusal is not None:
            rec.status, rec.error = refusal.status, refusal.message
            note(f"refused {refusal.status}")
            await ws.send_denial_response(json_error(refusal.status, {"message": refusal.message},
                                                     refusal.error_code, headers=refusal.headers))
            return

        target = self.ws_base + (ws.scope.get("raw_path") or ws.scope["path"].encode()).decode("latin-1")
        if ws.scope.get("query_string"):
            target += "?" + ws.scope["query_string"].decode("latin-1")
        try:
            upstream = await connect(
                target, additional_headers=forward_headers(ws.scope, HOP_BY_HOP | HANDSHAKE, decode=True),
                subprotocols=offered_subprotocols(ws) or None, user_agent_header=ws.headers.get("user-agent"),
                proxy=None, compression=None, open_timeout=10, ping_interval=None, close_timeout=5, max_size=None)
        except InvalidStatus as exc:   # the upstream refused the upgrade: pass its answer back
            r = exc.response
            rec.status, rec.error = r.status_code, f"upstream refused the upgrade: HTTP {r.status_code}"
            note(f"refused {r.status_code} by upstream")
            headers = {k: v for k, v in r.headers.raw_items() if k.lower().encode() not in HOP_BY_HOP | HANDSHAKE}
            await ws.send_denial_response(Response(bytes(r.body or b""), r.status_code, headers=headers))
            return
        except (OSError, InvalidHandshake, asyncio.TimeoutError) as exc:
            message = f"the upstream {target} did not accept the WebSocket: {exc.__class__.__name__}: {exc}"
            rec.status, rec.error = 502, message
            note("refused 502")
            await ws.send_denial_response(json_error(502, message, "BAD_GATEWAY"))
            return

        await ws.accept(subprotocol=upstream.subprotocol)
        rec.status = 101
        note("accepted")
        self.open.count_open(user_id, +1)
        try:
            plan = edge.plan_after_accept(upgrade)
            if plan.reject is not None:
                text = edge.reject_frame(plan.reject)
                await ws.send_text(text)
                rec.frame("out", "error_message", text)
                await _close_client(ws, rec, edge.POLICY_VIOLATION, plan.reject[:120])
                await upstream.close()
                return
            await _pump(ws, upstream, plan, rec, self.timeline)
        finally:
            self.open.count_open(user_id, -1)
            with contextlib.suppress(Exception):
                await upstream.close()
            note("closed")


async def _pump(ws: WebSocket, upstream, plan: edge.Plan, rec, timeline: Timeline) -> None:
    """Frames both ways until one side closes or the plan closes; the other side learns how."""
    accepted = time.monotonic()

    async def client_to_upstream() -> None:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                code, reason = message.get("code", 1000), message.get("reason") or ""
                if rec.close_code is None:
                    rec.close_code, rec.close_reason, rec.closed_by = code, reason or None, "client"
                if code == 1006:
                    upstream.transport.abort()   # a cut stays a cut
                else:
                    await upstream.close(edge.sendable(code), reason)
                return
            text = message.get("text")
            rec.frame("in", _frame_type(text), text if text is not None else "<binary>")
            timeline.touch(rec)
            await upstream.send(text if text is not None else message.get("bytes") or b"")

    async def upstream_to_client() -> None:
        try:
            async for data in upstream:
                ftype = _frame_type(data if isinstance(data, str) else None)
                delay = edge.frame_delay(plan, ftype, time.monotonic() - accepted)
                if delay is None:
                    continue
                if delay == math.inf:
                    continue           # held until the planned close: never reaches the client
                if delay > 0:
                    await asyncio.sleep(delay)
                if isinstance(data, str):
                    await ws.send_text(data)
                else:
                    await ws.send_bytes(data)
                rec.frame("out", ftype or "<binary>", data if isinstance(data, str) else "<binary>")
                timeline.touch(rec)
        except ConnectionClosed:
            pass
        received = upstream.protocol.close_rcvd
        if received is None:           # the upstream cut the connection: so does the gateway
            if rec.close_code is None:
                rec.close_code, rec.closed_by = 1006, "server"
            return
        code = edge.sendable(received.code)
        await _close_client(ws, rec, code, received.reason)

    async def planned_close() -> None:
        after_s, code, reason = plan.close_at
        await asyncio.sleep(after_s)
        if code == edge.CUT:
            rec.close_code, rec.close_reason, rec.closed_by = 1006, "dropped without close frame", "server"
            return                     # returning without a close frame: uvicorn cuts the TCP connection
        await _close_client(ws, rec, code, reason)

    tasks = [asyncio.create_task(client_to_upstream()), asyncio.create_task(upstream_to_client())]
    if plan.close_at is not None:
        tasks.append(asyncio.create_task(planned_close()))
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in done:
            if not t.cancelled() and t.exception() is not None and not isinstance(
                    t.exception(), (WebSocketDisconnect, ConnectionClosed, OSError, RuntimeError)):
                raise t.exception()
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _close_client(ws: WebSocket, rec, code: int, reason: str) -> None:
    if rec.close_code is None:
        rec.close_code, rec.close_reason, rec.closed_by = code, reason or None, "server"
    if ws.application_state is WebSocketState.CONNECTED and ws.client_state is WebSocketState.CONNECTED:
        with contextlib.suppress(RuntimeError, OSError):
            await ws.close(code, reason)


async def _json_http_error(request, exc: StarletteHTTPException):
    return json_error(exc.status_code, exc.detail)


def _frame_type(text: str | None) -> str | None:
    """The ``type`` of a JSON text frame (what the timeline records), else a placeholder."""
    if text is None:
        return "<binary>"
    if not text.startswith("{"):
        return "<text>"
    try:
        t = json.loads(text).get("type")
    except (ValueError, AttributeError, RecursionError):
        return "<text>"
    return t if isinstance(t, str) else "<text>"


async def _body(receive):
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return
        if message.get("body"):
            yield message["body"]
        if not message.get("more_body"):
            return


def from_env() -> Gateway:
    """uvicorn factory: the gateway configured by SIMSTACK_GATEWAY_UPSTREAM and SIMSTACK_GATEWAY_TARGETS."""
    upstream = os.environ.get(ENV_UPSTREAM)
    if not upstream:
        raise SystemExit(f"{ENV_UPSTREAM} is not set; give it the upstream URL, e.g. http://127.0.0.1:9000")
    targets = tuple(t for t in os.environ.get(ENV_TARGETS, "api,ws").split(",") if t)
    gateway = Gateway(upstream, targets)
    if os.environ.get("SIMSTACK_REPLAY_DIR"):   # the upstream is a cassette player: HTTP is answered in-process
        from .replay import serve_http_in
        serve_http_in(gateway)
    return gateway
