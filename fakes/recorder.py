"""Recording: an ASGI layer in the gateway that writes every exchange to a cassette (:mod:`simstack.cassette`).

It sits between the gateway's HTTP fault layer and its forwarding, so it sees each request with
its body, the answer with its latency, and each WebSocket session as the client sees it: the
upgrade and its answer, every frame both ways with its time since connect, who closed, with which
code and reason. Secrets are redacted before a line is written. Each entry goes to the file of the
test marked at the time it started (``/__simstack/mark``), so a suite gets one file per test.

On when ``SIMSTACK_RECORD_DIR`` is set (``simstack record``, ``pytest --simstack-record``).
"""
from __future__ import annotations

import os
import time

from simstack.shared.constants import INTERNAL_LABEL

from .control import ADMIN_PREFIX, INTERNAL_HEADER, Timeline

ENV_RECORD_DIR = "SIMSTACK_RECORD_DIR"
ENV_REDACT_HEADERS = "SIMSTACK_RECORD_REDACT_HEADERS"   # comma-separated, added to the defaults
ENV_REDACT_KEYS = "SIMSTACK_RECORD_REDACT_KEYS"
# Response headers that only say how this answer travelled: not kept (they would make every diff noisy).
TRANSPORT_HEADERS = frozenset({"date", "server", "content-length", "transfer-encoding", "connection", "keep-alive"})
# Request headers that change with every connection or port (the handshake's key, the Host): not kept.
REQUEST_NOISE = TRANSPORT_HEADERS | {"host", "upgrade", "sec-websocket-key", "sec-websocket-version",
                                     "sec-websocket-extensions"}


def recording(app, timeline: Timeline, service: str):
    """``app`` wrapped in a :class:`Recorder` when ``SIMSTACK_RECORD_DIR`` is set, else ``app`` itself."""
    directory = os.environ.get(ENV_RECORD_DIR)
    if not directory:
        return app
    from simstack.cassette import Redactor, Writer   # not in the stand-ins image: recording is local mode only
    redactor = Redactor(_names(ENV_REDACT_HEADERS), _names(ENV_REDACT_KEYS))
    return Recorder(app, Writer(directory, redactor), timeline, service)


def _names(var: str) -> list[str]:
    return [n.strip() for n in os.environ.get(var, "").split(",") if n.strip()]


def body_of(data, content_type: str = ""):
    from simstack.cassette import body_of as stored   # (already imported by recording(): a dict look-up)
    return stored(data, content_type)


def _label(scope, timeline: Timeline) -> str | None:
    return INTERNAL_LABEL if any(k == INTERNAL_HEADER for k, _ in scope["headers"]) else timeline.label


def _decode_headers(raw, drop: frozenset = frozenset()) -> list[tuple[str, str]]:
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw if k.decode("latin-1").lower() not in drop]


class Recorder:
    def __init__(self, app, writer, timeline: Timeline, service: str):
        self.app, self.writer, self.timeline, self.service = app, writer, timeline, service
        self.redact = writer.redactor

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and not scope["path"].startswith(ADMIN_PREFIX):
            return await self._http(scope, receive, send)
        if scope["type"] == "websocket" and not scope["path"].startswith(ADMIN_PREFIX):
            return await self._ws(scope, receive, send)
        if scope["type"] == "lifespan":
            try:
                return await self.app(scope, receive, send)
            finally:
                self.writer.close()
        return await self.app(scope, receive, send)

    def _request(self, scope) -> dict:
        return {"service": self.service, "path": scope["path"],
                "query": self.redact.query(scope.get("query_string", b"").decode("latin-1"))}

    # ------------------------------------------------------------------ HTTP
    async def _http(self, scope, receive, send):
        label = _label(scope, self.timeline)
        t0 = time.perf_counter()
        request_body: list[bytes] = []
        response_body: list[bytes] = []
        answer: dict = {}
        headers = _decode_headers(scope["headers"], REQUEST_NOISE)

        async def tee_receive():
            message = await receive()
            if message["type"] == "http.request" and message.get("body"):
                request_body.append(message["body"])
            return message

        async def tee_send(message):
            if message["type"] == "http.response.start":
                answer["latency_ms"] = round((time.perf_counter() - t0) * 1000, 2)
                answer["status"] = message["status"]
                answer["headers"] = _decode_headers(message.get("headers") or ())
            elif message["type"] == "http.response.body":
                if message.get("body"):
                    response_body.append(message["body"])
                if not message.get("more_body"):
                    answer["done"] = True
            await send(message)

        try:
            await self.app(scope, tee_receive, tee_send)
        finally:
            ctype = next((v for k, v in headers if k.lower() == "content-type"), "")
            rtype = next((v for k, v in answer.get("headers", ()) if k.lower() == "content-type"), "")
            entry = {"kind": "http", **self._request(scope), "method": scope["method"],
                     "request": {"headers": self.redact.headers_list(headers),
                                 "body": self.redact.body(body_of(b"".join(request_body), ctype))},
                     "status": answer.get("status"),
                     "response": {"headers": self.redact.headers_list(
                                      (k, v) for k, v in answer.get("headers", ()) if k.lower() not in TRANSPORT_HEADERS),
                                  "body": self.redact.body(body_of(b"".join(response_body), rtype))},
                     "latency_ms": answer.get("latency_ms")}
            if not answer.get("done"):
                entry["incomplete"] = True
            self.writer.write(label, entry)

    # ------------------------------------------------------------------ WebSocket
    async def _ws(self, scope, receive, send):
        label = _label(scope, self.timeline)
        t0 = time.perf_counter()
        headers = _decode_headers(scope["headers"], REQUEST_NOISE)
        entry = {"kind": "ws", **self._request(scope),
                 "request": {"headers": self.redact.headers_list(headers),
                             "subprotocols": [self.redact.subprotocol(p) for p in scope.get("subprotocols") or ()]},
                 "status": None, "subprotocol": None, "frames": [], "closed_by": None, "close_code": None,
                 "close_reason": None}
        frames = entry["frames"]
        denial: dict = {}

        def ms() -> float:
            return round((time.perf_counter() - t0) * 1000, 1)

        def frame(direction: str, message: dict) -> None:
            text = message.get("text")
            body = body_of(text if text is not None else message.get("bytes"))
            frames.append({"dir": direction, "t_ms": ms(), **(self.redact.body(body) or {"text": ""})})

        def closed(by: str, code, reason) -> None:
            if entry["closed_by"] is None:
                entry.update(closed_by=by, close_code=code, close_reason=reason or None, duration_ms=ms())

        async def tee_receive():
            message = await receive()
            if message["type"] == "websocket.receive":
                frame("in", message)
            elif message["type"] == "websocket.disconnect" and entry["status"] == 101:
                closed("client", message.get("code", 1005), message.get("reason"))
            return message

        async def tee_send(message):
            t = message["type"]
            if t == "websocket.accept":
                entry["status"], entry["subprotocol"] = 101, message.get("subprotocol")
                entry["response"] = {"headers": self.redact.headers_list(_decode_headers(message.get("headers") or ()))}
            elif t == "websocket.send":
                frame("out", message)
            elif t == "websocket.close":
                if entry["status"] == 101:
                    closed("server", message.get("code", 1000), message.get("reason"))
                else:
                    entry["status"] = 403   # closed before accept: the client sees HTTP 403
            elif t == "websocket.http.response.start":
                entry["status"] = message["status"]
                denial["headers"] = _decode_headers(message.get("headers") or ())
                denial["body"] = []
            elif t == "websocket.http.response.body":
                denial["body"].append(message.get("body") or b"")
            await send(message)

        try:
            await self.app(scope, tee_receive, tee_send)
        finally:
            if entry["status"] == 101 and entry["closed_by"] is None:
                closed("cut", 1006, None)   # returned without a close frame: the TCP connection is cut
            if denial:
                rtype = next((v for k, v in denial["headers"] if k.lower() == "content-type"), "")
                entry["response"] = {
                    "headers": self.redact.headers_list((k, v) for k, v in denial["headers"]
                                                        if k.lower() not in TRANSPORT_HEADERS),
                    "body": self.redact.body(body_of(b"".join(denial["body"]), rtype))}
            if entry["status"] is None:
                entry["incomplete"] = True
            entry.setdefault("duration_ms", ms())
            self.writer.write(label, entry)
