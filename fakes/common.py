"""The frame every stand-in shares: JSON errors, no redirects, the timing
profile, HTTP protocol faults and traffic recording."""
from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import gc
import time
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from simstack.shared.triggers import Candidate

from . import tokens
from .control import ADMIN_PREFIX, INTERNAL_HEADER, FaultBook, Timeline, admin_router
from .strictjson import InvalidJSON
from .timing import Profile, from_env

ERROR_CODES = {400: "BAD_REQUEST", 401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "NOT_FOUND",
               405: "METHOD_NOT_ALLOWED", 414: "REQUEST_LINE_TOO_LONG", 422: "VALIDATION_ERROR",
               429: "RATE_LIMITED", 431: "HEADERS_TOO_LARGE", 500: "INTERNAL_ERROR", 503: "SERVICE_UNAVAILABLE"}


def error_body(status: int, detail, error_code: str | None = None) -> dict:
    if isinstance(detail, dict):
        body = {"detail": detail.get("message", detail), **detail}
        body.setdefault("error_code", error_code or ERROR_CODES.get(status, f"HTTP_{status}"))
        return body
    return {"detail": detail, "error_code": error_code or ERROR_CODES.get(status, f"HTTP_{status}")}


def json_error(status: int, detail, error_code: str | None = None, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, detail, error_code), status_code=status, headers=headers)


def is_e2e(headers: Mapping[str, str]) -> bool:
    """The request carries staging's E2E test headers (CONTRACT §4)."""
    return headers.get("x-e2e-test", "").lower() in ("true", "1") or headers.get("x-test-type", "").lower() == "e2e"


def http_candidate(headers: Mapping[str, str]) -> Candidate:
    """An HTTP request as triggers see it: the ``sub`` of its bearer token (decoded leniently,
    signature unchecked, as the WebSocket does) and its E2E headers."""
    auth = headers.get("authorization", "")
    user_id = tokens.subject(auth[7:].strip()) if auth[:7].lower() == "bearer " else None
    return Candidate(user_id, is_e2e(headers))


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI):
    # Everything imported and built by now lives as long as the server. Frozen, FastAPI's and
    # pydantic's ~58k objects are no longer traversed by every full collection, which stalled the
    # event loop: a gen2 pause under HTTP load went from ~29 ms to ~9 ms (the rest is the timeline).
    gc.freeze()
    yield


def create_app(service: str, targets: tuple[str, ...]) -> FastAPI:
    """A FastAPI app with the shared frame. ``app.state`` holds book, timeline and profile."""
    app = FastAPI(title=f"simstack {service} stand-in", redirect_slashes=False,
                  docs_url=None, redoc_url=None, openapi_url=None, lifespan=_lifespan)
    app.state.service = service
    app.state.profile = from_env()
    app.state.book = FaultBook(targets)
    app.state.timeline = Timeline()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return json_error(exc.status_code, exc.detail, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg")} for e in exc.errors()]
        return json_error(422, {"message": "request body is invalid", "errors": errors}, "VALIDATION_ERROR")

    @app.exception_handler(InvalidJSON)
    async def invalid_json(request: Request, exc: InvalidJSON):
        return json_error(400, {"message": f"body is not valid JSON: {exc}"}, "INVALID_JSON")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        return json_error(500, f"internal error: {exc.__class__.__name__}")

    app.include_router(admin_router(app.state.book, app.state.timeline))
    app.add_middleware(HTTPFaults, book=app.state.book, timeline=app.state.timeline,
                       profile=app.state.profile, target=targets[0])
    return app


# The request headers the timeline and the triggers read (lower case, as ASGI gives them).
_READ = frozenset({b"authorization", b"x-e2e-test", b"x-test-type", INTERNAL_HEADER})


def open_record(timeline: Timeline, scope) -> tuple:
    """An HTTP request's timeline record, with its bearer token's user, and the request as triggers see it.
    The headers it reads are picked in one pass over the raw list (every request crosses this; a
    ``Headers`` view would scan the list again for each look-up)."""
    read = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"] if k in _READ}
    rec = timeline.open("http", internal=INTERNAL_HEADER.decode() in read, method=scope["method"], path=scope["path"])
    who = http_candidate(read)
    rec.user_id = who.user_id
    return rec, who


def recording_send(rec, send):
    """``send``, noting the answer's status on ``rec``."""
    async def send_and_record(message):
        if message["type"] == "http.response.start":
            rec.status = message["status"]
        await send(message)
    return send_and_record


def close_record(timeline: Timeline, rec, t0: float) -> None:
    """The request's answer is complete (or abandoned): its duration since ``t0`` (perf_counter)."""
    rec.duration_ms = round((time.perf_counter() - t0) * 1000, 2)
    timeline.touch(rec)


class HTTPFaults:
    """Pure ASGI middleware for HTTP requests: records each, applies the profile's
    delay and the HTTP protocol faults (cold_start, status_override, health_hang, slow_ready)."""

    def __init__(self, app, book: FaultBook, timeline: Timeline, profile: Profile, target: str):
        self.app, self.book, self.timeline, self.profile, self.target = app, book, timeline, profile, target

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"].startswith(ADMIN_PREFIX):
            return await self.app(scope, receive, send)
        path, method = scope["path"], scope["method"]
        rec, who = open_record(self.timeline, scope)
        t0 = time.perf_counter()

        try:
            response = await self._fault_response(path, method, who, rec)
            if self.profile.http_delay_s:
                await asyncio.sleep(self.profile.http_delay_s)
            if response is not None:
                await response(scope, receive, recording_send(rec, send))
            else:
                await self.app(scope, receive, recording_send(rec, send))
        finally:
            close_record(self.timeline, rec, t0)

    async def _fault_response(self, path: str, method: str, who: Candidate, rec) -> JSONResponse | None:
        book, target = self.book, self.target
        f = book.fire("cold_start", target, who, where=rec)
        if f:
            retry = str(f.params["retry_after_s"])
            return json_error(503, {"message": "service is starting (cold start), retry later",
                                    "retry_after": f.params["retry_after_s"]}, "SERVICE_UNAVAILABLE",
                              headers={"Retry-After": retry})
        for f in book.candidates("status_override", target):
            if fnmatch.fnmatchcase(path, f.params["path"]) and f.params["method"] in ("*", method):
                if book.decide(f, who, where=rec):
                    status = f.params["status"]
                    return json_error(status, {"message": f"simstack status_override: {method} {path} -> {status}",
                                               "fault": f.id})
        for f in book.candidates("health_hang", target):
            if path in f.params["paths"]:
                if book.decide(f, who, where=rec):
                    await asyncio.sleep(f.params["hold_s"])
                    return json_error(504, "simstack health_hang: request held until the hold expired")
        if path == "/health/ready":
            f = book.fire("slow_ready", target, who, where=rec)
            if f:
                await asyncio.sleep(f.params["delay_s"])
        return None
