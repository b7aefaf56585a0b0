"""A real client that behaves like the staging suites, and what it observed.

It sends the headers of CONTRACT §4 (Authorization, a raw ``jwt.`` subprotocol
entry and the E2E headers), then does one of:

- ``start_agent``: send start_agent at once and read until agent_completed;
- ``listen``: send nothing, read until the server closes or the timeout;
- ``connect``: open and report the handshake only.

Every exception becomes part of an :class:`Observation`, so callers compare
observations with expectations instead of catching errors.
"""
from __future__ import annotations

import asyncio
import base64
import json
import time
from dataclasses import dataclass, field

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

ACTIONS = ("start_agent", "listen", "connect")


def staging_headers(token: str) -> dict[str, str]:
    b64 = base64.urlsafe_b64encode(token.encode()).rstrip(b"=").decode()
    return {"Authorization": f"Bearer {token}", "sec-websocket-protocol": f"jwt.{b64}",
            "X-E2E-Test": "true", "X-Test-Type": "E2E", "X-Test-Environment": "staging"}


@dataclass
class Observation:
    """What one WebSocket connection looked like from the client."""
    status: int | None = None            # 101, or the HTTP status of a refused upgrade
    close_code: int | None = None        # None: still open when the client stopped waiting
    close_reason: str | None = None
    frames: list[str] = field(default_factory=list)   # types, in order
    events: list[str] = field(default_factory=list)   # agent_* types, in order
    timed_out: bool = False
    closed_after_s: float | None = None  # from the 101 to the close
    error: str | None = None             # the exception text a suite would see
    retry_after: str | None = None

    @property
    def frames_before_close(self) -> int:
        return len(self.frames)


async def observe_ws(ws_url: str, token: str, action: str = "start_agent", timeout_s: float = 10.0,
                     request: str = "Analyze my AI costs and suggest optimizations",
                     hold: asyncio.Event | None = None, opened: asyncio.Event | None = None) -> Observation:
    """One connection as a staging suite makes it. With ``hold``, keep it open until the event is set;
    ``opened`` is set once the handshake has succeeded or failed."""
    obs = Observation()
    try:
        return await _observe(obs, ws_url, token, action, timeout_s, request, hold, opened)
    finally:
        if opened is not None:
            opened.set()


async def _observe(obs, ws_url, token, action, timeout_s, request, hold, opened) -> Observation:
    t_open = None
    try:
        async with connect(ws_url, additional_headers=staging_headers(token), open_timeout=timeout_s,
                           close_timeout=5, ping_interval=20, proxy=None) as ws:
            obs.status = 101
            t_open = time.perf_counter()
            if opened is not None:
                opened.set()
            if action == "start_agent":
                try:
                    await ws.send(json.dumps({"type": "start_agent", "payload": {
                        "user_request": request, "agent_type": "supervisor_agent"}}))
                except ConnectionClosed:
                    pass   # the server closed first: still read the frames it sent before closing
            if action != "connect":
                await _read(ws, obs, action, t_open + timeout_s)
            if hold is not None:
                await hold.wait()
            if obs.close_code is None and not obs.timed_out:
                obs.close_code = 1000  # the client closed normally
    except InvalidStatus as exc:
        obs.status = exc.response.status_code
        obs.retry_after = exc.response.headers.get("Retry-After")
        obs.error = str(exc)
    except ConnectionClosed as exc:
        obs.close_code = exc.rcvd.code if exc.rcvd else 1006
        obs.close_reason = exc.rcvd.reason if exc.rcvd else None
        obs.error = f"{exc.__class__.__name__}: {exc}"
    except (TimeoutError, asyncio.TimeoutError):
        obs.timed_out = True
        obs.error = "TimeoutError: opening handshake timed out"
    except OSError as exc:
        obs.error = f"{exc.__class__.__name__}: {exc}"
    if t_open is not None and obs.close_code not in (None, 1000):
        obs.closed_after_s = round(time.perf_counter() - t_open, 3)
    return obs


async def _read(ws, obs: Observation, action: str, deadline: float) -> None:
    while True:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            obs.timed_out = True
            return
        try:
            raw = await asyncio.wait_for(ws.recv(), remaining)
        except (TimeoutError, asyncio.TimeoutError):
            obs.timed_out = True
            return
        try:
            frame = json.loads(raw)
            kind = frame.get("type", "?") if isinstance(frame, dict) else "?"
        except ValueError:
            kind = "<not json>"
        obs.frames.append(kind)
        if kind.startswith("agent_") or kind.startswith("tool_"):
            obs.events.append(kind)
        if action == "start_agent" and kind == "agent_completed":
            return


@dataclass
class HttpObservation:
    path: str
    method: str = "GET"
    status: int | None = None
    timed_out: bool = False
    json_ok: bool | None = None
    retry_after: str | None = None
    error: str | None = None


def observe_http(base_url: str, path: str, method: str = "GET", timeout_s: float = 5.0) -> HttpObservation:
    obs = HttpObservation(path, method)
    try:
        r = httpx.request(method, base_url + path, timeout=timeout_s, trust_env=False)
    except httpx.TimeoutException as exc:
        obs.timed_out, obs.error = True, f"{exc.__class__.__name__}: timed out after {timeout_s} s"
        return obs
    except httpx.HTTPError as exc:
        obs.error = f"{exc.__class__.__name__}: {exc}"
        return obs
    obs.status = r.status_code
    obs.retry_after = r.headers.get("Retry-After")
    try:
        r.json()
        obs.json_ok = True
    except ValueError:
        obs.json_ok = False
    return obs
