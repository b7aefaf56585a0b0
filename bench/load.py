"""Load generators and probes, all bounded in count and time, all aimed at 127.0.0.1.

- :func:`http_load`: closed-loop HTTP/1.1 keep-alive GETs on raw asyncio streams (a client far lighter
  than httpx, so the server, not the client, is what the figure measures);
- :func:`agent_run`: one staging-like WebSocket connection (``simstack.client`` headers) timed from
  connect to ``agent_completed``;
- :func:`proc_status`: VmRSS/VmHWM of a process, from /proc.
"""
from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from websockets.asyncio.client import connect

from simstack.client import staging_headers

AGENT_EVENTS = ("agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_completed")
START_AGENT = json.dumps({"type": "start_agent", "payload": {
    "user_request": "Analyze my AI costs and suggest optimizations", "agent_type": "supervisor_agent"}})
WELCOME_LAST = "system_message"   # the third frame of the handshake sequence


def host_port(url_or_hostport: str) -> tuple[str, int]:
    if "://" in url_or_hostport:
        u = urlsplit(url_or_hostport)
        return u.hostname, u.port
    host, port = url_or_hostport.rsplit(":", 1)
    return host, int(port)


def _check_loopback(host: str) -> None:
    if not (host == "localhost" or host.startswith("127.") or host == "::1"):
        raise ValueError(f"load generators only target loopback, got {host!r}")


# ------------------------------------------------------------------ HTTP

def _request(host: str, port: int, path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: simstack-bench\r\n\r\n".encode()


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    """One request on a keep-alive connection; the response status."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = next((int(line[15:]) for line in head.split(b"\r\n") if line[:15].lower() == b"content-length:"), 0)
    await reader.readexactly(length)
    return int(head[9:12])


@dataclass
class HttpLoad:
    latencies: list[float] = field(default_factory=list)   # seconds per successful request
    errors: int = 0
    elapsed_s: float = 0.0

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.elapsed_s if self.elapsed_s else 0.0


async def _http_worker(target: tuple[str, int], request: bytes, out: HttpLoad, stop_at: float,
                       budget: list[int]) -> None:
    reader, writer = await asyncio.open_connection(*target)
    try:
        while budget[0] > 0 and time.perf_counter() < stop_at:
            budget[0] -= 1
            t0 = time.perf_counter()
            if await _exchange(reader, writer, request) == 200:
                out.latencies.append(time.perf_counter() - t0)
            else:
                out.errors += 1
    except (OSError, asyncio.IncompleteReadError):
        out.errors += 1
    finally:
        writer.close()


async def http_load(target: str, path: str = "/health", concurrency: int = 8, max_requests: int = 50000,
                    max_seconds: float = 2.0) -> HttpLoad:
    """``concurrency`` keep-alive connections sending GET ``path`` back to back until either bound is hit."""
    host, port = host_port(target)
    _check_loopback(host)
    out, budget = HttpLoad(), [max_requests]
    t0 = time.perf_counter()
    await asyncio.gather(*(_http_worker((host, port), _request(host, port, path), out, t0 + max_seconds, budget)
                           for _ in range(concurrency)))
    out.elapsed_s = time.perf_counter() - t0
    return out


async def http_alternating(targets: list[str], path: str = "/health", rounds: int = 500,
                           max_seconds: float = 2.0) -> list[list[float]]:
    """Sequential GETs on one keep-alive connection per target, taking turns request by request, so
    every target sees the same moments of a shared, noisy machine. Latencies (s) per target."""
    conns = []
    for t in targets:
        host, port = host_port(t)
        _check_loopback(host)
        conns.append((*await asyncio.open_connection(host, port), _request(host, port, path)))
    out: list[list[float]] = [[] for _ in targets]
    stop_at = time.perf_counter() + max_seconds
    try:
        for _ in range(rounds):
            if time.perf_counter() > stop_at:
                break
            for (reader, writer, request), lat in zip(conns, out):
                t0 = time.perf_counter()
                await _exchange(reader, writer, request)
                lat.append(time.perf_counter() - t0)
    finally:
        for _, writer, _ in conns:
            writer.close()
    return out


async def http_once(target: str, path: str = "/health", timeout_s: float = 2.0) -> int | str:
    """One GET on a new connection: the status, or what went wrong ("refused", "reset", "timeout", ...)."""
    host, port = host_port(target)
    _check_loopback(host)
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    except ConnectionRefusedError:
        return "refused"
    except (asyncio.TimeoutError, TimeoutError):
        return "timeout"
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout_s)
        return int(head[9:12])
    except ConnectionResetError:
        return "reset"
    except asyncio.IncompleteReadError:
        return "closed"
    except (asyncio.TimeoutError, TimeoutError):
        return "timeout"
    except OSError as exc:
        return exc.__class__.__name__
    finally:
        writer.close()


# ------------------------------------------------------------------ WebSocket

@dataclass
class AgentRun:
    seconds: float | None = None      # connect -> agent_completed
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


async def agent_run(ws_url: str, token: str, timeout_s: float = 10.0) -> AgentRun:
    """Connect as a staging suite does, send start_agent, read until agent_completed. A complete run is
    all five agent events, in order, with no error frame."""
    _check_loopback(host_port(ws_url)[0])
    run = AgentRun()
    t0 = time.perf_counter()
    try:
        async with connect(ws_url, additional_headers=staging_headers(token), open_timeout=timeout_s,
                           close_timeout=5, ping_interval=None, proxy=None) as ws:
            await ws.send(START_AGENT)
            run.error = await asyncio.wait_for(_events(ws), timeout_s)
            run.seconds = time.perf_counter() - t0
    except Exception as exc:   # every failure is a counted error, not a crash of the figure
        run.error = run.error or f"{exc.__class__.__name__}: {exc}"[:200]
    if run.error:
        run.seconds = None
    return run


async def _events(ws) -> str | None:
    """Read until agent_completed; the error (or None) of what arrived."""
    seen = []
    while True:
        frame = json.loads(await ws.recv())
        kind = frame.get("type")
        if kind in ("error", "error_message"):
            return f"error frame: {frame.get('message')}"
        if kind in AGENT_EVENTS:
            seen.append(kind)
            if kind == "agent_completed":
                return None if tuple(seen) == AGENT_EVENTS else f"events out of order: {seen}"


# ------------------------------------------------------------------ processes

def proc_status(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS) of ``pid`` in MB, from /proc/<pid>/status."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = round(int(value.split()[0]) / 1024, 1)
    return out
