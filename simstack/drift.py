"""Drift: does a target still answer what the cassette recorded?

``simstack drift DIR --against stand-ins|URL`` sends every recorded request and client frame to the
target and compares what it serves with the recording at the level suites depend on: HTTP status
codes, JSON key paths and value types (not values: timestamps and ids always differ), WebSocket
upgrade status, the sequence of server frame types, who closed and the close code. One row per
difference; against simstack's own stand-ins it is the check that they still honour staging.
"""
from __future__ import annotations

import asyncio
import base64
import json
import time
from dataclasses import asdict, dataclass

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from .cassette import REDACTED_SIGNATURE, Entry, body_bytes, body_text, load
from .fakes.replay import frame_type

SLACK_S = 3.0          # how much longer than recorded a target may take to answer or close
SKIP_HEADERS = frozenset({"user-agent", "accept-encoding", "content-length", "x-simstack-internal"})


@dataclass
class Row:
    where: str        # file:line and the request
    field: str        # status, body.<key path>, frames, close
    recorded: str
    served: str


@dataclass
class Target:
    api_url: str
    ws_url: str               # the api's WebSocket base (ws://host:port)
    auth_url: str | None
    token: str | None = None  # replaces redacted tokens in the recorded requests


# ------------------------------------------------------------------ JSON shapes

def json_type(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def shape(value, prefix: str = "body") -> dict[str, str]:
    """Key path -> JSON type; list items share one path (``[]``), so lengths do not matter."""
    out = {prefix: json_type(value)}
    if isinstance(value, dict):
        for k, v in value.items():
            out.update(shape(v, f"{prefix}.{k}"))
    elif isinstance(value, list):
        for v in value:
            for path, t in shape(v, f"{prefix}[]").items():
                out.setdefault(path, t)
    return out


def compare_json(where: str, recorded, served) -> list[Row]:
    a, b = shape(recorded), shape(served)
    rows = []
    for path in sorted(a.keys() | b.keys()):
        if a.get(path) != b.get(path):
            rows.append(Row(where, path, a.get(path, "missing"), b.get(path, "missing")))
    return rows


# ------------------------------------------------------------------ requests, with fresh secrets

def _fresh(name: str, value: str, token: str | None) -> str:
    """A redacted JWT gets ``token`` in its place; a redacted credential that was not a JWT stays
    ``<redacted>``, still not a JWT, as recorded (a suite's "refused without a valid token" case)."""
    if token is not None and name.lower() in ("authorization", "proxy-authorization") and REDACTED_SIGNATURE in value:
        return f"{value.partition(' ')[0]} {token}"
    return value


def _subprotocols(offered: list[str], token: str | None) -> list[str]:
    out = []
    for p in offered:
        if p.startswith("jwt.") and token is not None:
            raw = p[4:]
            try:
                decoded = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
            except (ValueError, UnicodeDecodeError):
                decoded = ""
            if REDACTED_SIGNATURE in decoded:
                p = "jwt." + base64.urlsafe_b64encode(token.encode()).rstrip(b"=").decode()
        out.append(p)
    return out


def _query(query: str, token: str | None) -> str:
    if not query or token is None:
        return query
    from urllib.parse import parse_qsl, urlencode
    return urlencode([(k, token if REDACTED_SIGNATURE in v else v)
                      for k, v in parse_qsl(query, keep_blank_values=True)])


def _headers(pairs, token: str | None, skip: frozenset = frozenset()) -> list[tuple[str, str]]:
    return [(k, _fresh(k, v, token)) for k, v in pairs if k.lower() not in SKIP_HEADERS | skip]


def _label(d: dict) -> str:
    q = f"?{d['query']}" if d.get("query") else ""
    return f"{d.get('method', 'WS')} {d['path']}{q}"


# ------------------------------------------------------------------ HTTP

async def check_http(http: httpx.AsyncClient, e: Entry, base: str, token: str | None) -> list[Row]:
    d = e.data
    where = f"{e.where()} {_label(d)}"
    url = base.rstrip("/") + d["path"] + (f"?{_query(d['query'], token)}" if d.get("query") else "")
    try:
        r = await http.request(d["method"], url, headers=_headers(d["request"].get("headers", ()), token),
                               content=body_bytes(d["request"].get("body")) or None)
    except httpx.HTTPError as exc:
        return [Row(where, "answer", f"HTTP {d['status']}", f"no answer: {exc.__class__.__name__}: {exc}")]
    rows = []
    if r.status_code != d["status"]:
        rows.append(Row(where, "status", str(d["status"]), str(r.status_code)))
    body = (d.get("response") or {}).get("body") or {}
    if "json" in body:
        try:
            served = r.json()
        except ValueError:
            rows.append(Row(where, "body", "json", f"not JSON: {r.text[:60]!r}"))
        else:
            rows += compare_json(where, body["json"], served)
    return rows


# ------------------------------------------------------------------ WebSocket

async def check_ws(e: Entry, ws_base: str, token: str | None) -> list[Row]:
    d = e.data
    where = f"{e.where()} {_label(d)}"
    url = ws_base.rstrip("/") + d["path"] + (f"?{_query(d['query'], token)}" if d.get("query") else "")
    headers = _headers(d["request"].get("headers", ()), token, frozenset({"sec-websocket-protocol"}))
    recorded_out = [frame_type(f) or "<text>" for f in d["frames"] if f["dir"] == "out"]
    served_out: list[str] = []
    closed_by, code = None, None
    try:
        ws = await connect(url, additional_headers=headers, subprotocols=_subprotocols(
            d["request"].get("subprotocols") or [], token) or None, open_timeout=10, close_timeout=5,
            proxy=None, max_size=None)
    except InvalidStatus as exc:
        served = exc.response.status_code
        return [] if served == d["status"] else [Row(where, "upgrade", str(d["status"]), str(served))]
    except (OSError, InvalidHandshake, asyncio.TimeoutError) as exc:
        return [Row(where, "upgrade", str(d["status"]), f"no answer: {exc.__class__.__name__}: {exc}")]
    if d["status"] != 101:
        await ws.close()
        return [Row(where, "upgrade", str(d["status"]), "101")]
    t0 = time.monotonic()
    duration_s = (d.get("duration_ms") or 0) / 1000

    async def reader() -> None:
        async for data in ws:
            served_out.append((frame_type({"json": _loads(data)}) or "<text>") if isinstance(data, str) else "<binary>")

    read = asyncio.create_task(reader())
    try:
        for f in d["frames"]:
            if f["dir"] != "in":
                continue
            await asyncio.sleep(max(0.0, f["t_ms"] / 1000 - (time.monotonic() - t0)))
            if read.done():
                break
            await ws.send(body_text(f))
        if d.get("closed_by") == "client":
            deadline = t0 + duration_s + SLACK_S
            while not read.done() and time.monotonic() < deadline and (
                    len(served_out) < len(recorded_out) or time.monotonic() < t0 + duration_s):
                await asyncio.sleep(0.02)
            if not read.done():
                await ws.close(d.get("close_code") or 1000, d.get("close_reason") or "")
        await asyncio.wait_for(asyncio.shield(read), duration_s + SLACK_S)
    except ConnectionClosed:
        pass
    except asyncio.TimeoutError:
        closed_by = "nobody"
    finally:
        read.cancel()
        await asyncio.gather(read, return_exceptions=True)
        await ws.close()
    if closed_by is None:
        closed_by, code = _who_closed(ws.protocol)
    rows = []
    if served_out != recorded_out:
        rows.append(Row(where, "frames", " ".join(recorded_out) or "(none)", " ".join(served_out) or "(none)"))
    recorded_close = f"{d.get('closed_by')} {d.get('close_code')}"
    served_close = f"{closed_by}" + (f" {code}" if code is not None else "")
    if recorded_close != served_close:
        rows.append(Row(where, "close", recorded_close, served_close))
    return rows


def _who_closed(p) -> tuple[str, int]:
    if p.close_rcvd is None and p.close_sent is None:
        return "cut", 1006
    if p.close_rcvd_then_sent or p.close_sent is None:
        return "server", p.close_rcvd.code
    return "client", p.close_sent.code


def _loads(text: str):
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


# ------------------------------------------------------------------ the whole cassette

WS_AT_ONCE = 20   # WebSocket sessions replayed side by side (each takes its recorded time)


async def _run(entries: list[Entry], target: Target) -> tuple[list[Row], list[str]]:
    """HTTP requests one by one in cassette order; WebSocket sessions side by side meanwhile."""
    notes, sessions = [], []
    results: dict[int, list[Row]] = {}
    gate = asyncio.Semaphore(WS_AT_ONCE)

    async def session(i: int, e: Entry) -> None:
        async with gate:
            results[i] = await check_ws(e, target.ws_url, target.token)

    async with httpx.AsyncClient(trust_env=False, timeout=httpx.Timeout(30.0, connect=10.0),
                                 follow_redirects=False) as http:
        http.headers.clear()
        for i, e in enumerate(entries):
            d = e.data
            if d.get("incomplete"):
                notes.append(f"{e.where()}: skipped, the recording is incomplete")
                continue
            base = target.api_url if d["service"] == "api" else target.auth_url
            if base is None:
                notes.append(f"{e.where()}: skipped {_label(d)}: no auth target (give --auth-url)")
                continue
            if e.kind == "http":
                results[i] = await check_http(http, e, base, target.token)
            else:
                sessions.append(asyncio.create_task(session(i, e)))
        await asyncio.gather(*sessions)
    return [row for i in sorted(results) for row in results[i]], notes


def drift(directory: str, target: Target) -> tuple[list[Row], list[str], int]:
    """(rows, notes, entries checked)."""
    entries = load(directory)
    rows, notes = asyncio.run(_run(entries, target))
    return rows, notes, len(entries)


def format_rows(rows: list[Row]) -> str:
    if not rows:
        return ""
    widths = [max(len(h), *(len(getattr(r, h)) for r in rows)) for h in ("where", "field", "recorded")]
    lines = [f"{'where':<{widths[0]}}  {'field':<{widths[1]}}  {'recorded':<{widths[2]}}  served"]
    for r in rows:
        lines.append(f"{r.where:<{widths[0]}}  {r.field:<{widths[1]}}  {r.recorded:<{widths[2]}}  {r.served}")
    return "\n".join(lines)


def as_json(rows: list[Row], notes: list[str], checked: int) -> str:
    return json.dumps({"checked": checked, "drift": [asdict(r) for r in rows], "notes": notes}, indent=2)


# ------------------------------------------------------------------ `simstack drift`

STAND_INS = "stand-ins"


def add_arguments(c) -> None:
    c.add_argument("cassette", metavar="DIR", help="a cassette directory (simstack record --out)")
    c.add_argument("--against", required=True, metavar="stand-ins|URL",
                   help="`stand-ins` (simstack's own, started for the check) or the api URL of a deployment")
    c.add_argument("--auth-url", help="with --against URL: the deployment's auth URL (else auth entries are skipped)")
    c.add_argument("--token", help="a token for the target, in place of the redacted ones (stand-ins: minted)")
    c.add_argument("--json", action="store_true", help="print the rows as JSON")


def run(args) -> int:
    from .shared.errors import ConfigError
    load(args.cassette)   # a bad or empty cassette is refused before anything starts
    stack = None
    try:
        if args.against == STAND_INS:
            from .stack import Stack
            stack = Stack(mode="local", profile="fast").start()
            e = stack.endpoints
            target = Target(e.api_url, e.ws_url.rsplit("/ws", 1)[0], e.auth_url, args.token or stack.token())
        else:
            url = httpx.URL(args.against)
            if url.scheme not in ("http", "https") or not url.host:
                raise ConfigError(f"--against {args.against!r} is neither stand-ins nor an http(s):// URL",
                                  "e.g. --against stand-ins, or --against https://api.staging.example.com")
            ws = str(url.copy_with(scheme="wss" if url.scheme == "https" else "ws")).rstrip("/")
            target = Target(args.against.rstrip("/"), ws, args.auth_url, args.token)
        rows, notes, checked = drift(args.cassette, target)
    finally:
        if stack is not None:
            stack.stop()
    if args.json:
        print(as_json(rows, notes, checked))
    else:
        for note in notes:
            print(note)
        if rows:
            print(format_rows(rows))
            print(f"drift: {len(rows)} difference(s) in {checked} recorded exchange(s) against {args.against}")
        else:
            print(f"no drift: {checked} recorded exchange(s) answered alike by {args.against}")
    return 1 if rows else 0
