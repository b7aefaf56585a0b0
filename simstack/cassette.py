"""Cassettes: what a recorded service really answered, as plain JSON-lines files.

A cassette is a directory of ``*.jsonl`` files: one per test (the pytest plugin marks each
test), ``session.jsonl`` for traffic outside any test and ``simstack.jsonl`` for simstack's own
calls (the session token). Line 1 of every file is its header, ``{"simstack_cassette": 1, ...}``;
every other line is one entry:

- ``{"kind": "http", "service", "method", "path", "query", "request": {"headers", "body"},
  "status", "response": {"headers", "body"}, "latency_ms"}``
- ``{"kind": "ws", "service", "path", "query", "request": {"headers", "subprotocols"}, "status",
  "subprotocol", "response": {...} (a refused upgrade), "frames": [{"dir": "in"|"out", "t_ms",
  <body>}], "closed_by": "client"|"server"|"cut", "close_code", "close_reason", "duration_ms"}``

A body is ``{"json": value}``, ``{"text": str}`` or ``{"base64": str}`` (``null`` when empty).
An exchange the upstream never finished carries ``"incomplete": true``.

Secrets never reach a file: :class:`Redactor` replaces them by placeholders first.
"""
from __future__ import annotations

import base64
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

from .shared.constants import INTERNAL_LABEL
from .shared.errors import SimstackError

FORMAT_VERSION = 1
HEADER_KEY = "simstack_cassette"
SUFFIX = ".jsonl"
SESSION_FILE = "session"        # traffic outside any test
INTERNAL_FILE = "simstack"      # simstack's own calls (the token it mints for a session)

REDACTED = "<redacted>"
# A redacted JWT keeps its header and claims (suites decode them) with this in place of the signature.
REDACTED_SIGNATURE = base64.urlsafe_b64encode(b"simstack-redacted").rstrip(b"=").decode()
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie", "x-e2e-bypass-key",
                            "x-api-key", "x-simstack-admin"})
SECRET_KEYS = frozenset({"access_token", "refresh_token", "id_token", "token", "password", "secret",
                         "client_secret", "api_key"})
SECRET_QUERY = frozenset({"token", "access_token", "api_key"})
MIN_SECRET = 8                  # shorter values are not scrubbed from free text (too many false hits)


class CassetteError(SimstackError):
    """A cassette that cannot be read: which file, which line, what is wrong."""


# ------------------------------------------------------------------ bodies and names

def body_of(data: bytes | str | None, content_type: str = "") -> dict | None:
    """A body as the cassette stores it: parsed JSON when it is JSON, else text, else base64."""
    if data is None or data == b"" or data == "":
        return None
    text = data if isinstance(data, str) else None
    if text is None:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return {"base64": base64.b64encode(data).decode()}
    if text[:1] in "{[" or "json" in content_type:
        try:
            return {"json": json.loads(text)}
        except (ValueError, RecursionError):
            pass
    return {"text": text}


def body_bytes(body: dict | None) -> bytes:
    if not body:
        return b""
    if "json" in body:
        return json.dumps(body["json"], separators=(",", ":"), ensure_ascii=False).encode()
    if "text" in body:
        return body["text"].encode()
    return base64.b64decode(body["base64"])


def body_text(body: dict | None) -> str | bytes:
    """A WebSocket frame's payload: text for json/text bodies, bytes for binary ones."""
    if body and "base64" in body:
        return base64.b64decode(body["base64"])
    return body_bytes(body).decode()


def file_for(label: str | None) -> str:
    """The file a test's entries go to (its node id, made a file name)."""
    if label is None:
        return SESSION_FILE + SUFFIX
    if label == INTERNAL_LABEL:
        return INTERNAL_FILE + SUFFIX
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("_")[:180] + SUFFIX


def header_line(label: str | None) -> dict:
    return {HEADER_KEY: FORMAT_VERSION, "label": label}


# ------------------------------------------------------------------ redaction

class Redactor:
    """Replaces secrets by placeholders: secret headers (Authorization keeps its scheme, cookies keep
    their names), the ``jwt.`` subprotocol entry, ``?token=``, values of secret JSON keys, and then
    every occurrence of a secret seen so far anywhere in a line (a token echoed in a body)."""

    def __init__(self, headers=(), keys=()):
        self.headers = SECRET_HEADERS | {h.lower() for h in headers}
        self.keys = SECRET_KEYS | {k.lower() for k in keys}
        self.secrets: dict[str, str] = {}     # secret -> its placeholder

    def token(self, value: str) -> str:
        """A token's placeholder: a JWT keeps header and claims with a fake signature; others become <redacted>."""
        parts = value.split(".")
        if len(parts) == 3 and all(re.fullmatch(r"[A-Za-z0-9_-]+", p) for p in parts[:2]):
            placeholder = f"{parts[0]}.{parts[1]}.{REDACTED_SIGNATURE}"
        else:
            placeholder = REDACTED
        if len(value) >= MIN_SECRET and value != placeholder:
            self.secrets[value] = placeholder
        return placeholder

    def header(self, name: str, value: str) -> str:
        low = name.lower()
        if low == "sec-websocket-protocol":
            return ", ".join(self.subprotocol(p.strip()) for p in value.split(","))
        if low not in self.headers:
            return value
        if low in ("authorization", "proxy-authorization"):
            scheme, sep, cred = value.partition(" ")
            return f"{scheme} {self.token(cred.strip())}" if sep else self.token(value)
        if low == "cookie":
            return "; ".join(self._cookie(c.strip()) for c in value.split(";"))
        if low == "set-cookie":
            first, sep, attrs = value.partition(";")
            return self._cookie(first.strip()) + (sep + attrs if sep else "")
        return self.token(value)

    def _cookie(self, pair: str) -> str:
        name, sep, value = pair.partition("=")
        return f"{name}={self.token(value)}" if sep else pair

    def subprotocol(self, entry: str) -> str:
        if not entry.startswith("jwt.") or entry == "jwt.":
            return entry
        raw = entry[4:]
        try:
            tok = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
        except (ValueError, UnicodeDecodeError):
            return "jwt." + self.token(raw)
        placeholder = base64.urlsafe_b64encode(self.token(tok).encode()).rstrip(b"=").decode()
        if len(raw) >= MIN_SECRET:
            self.secrets[raw] = placeholder
        return "jwt." + placeholder

    def headers_list(self, pairs) -> list[list[str]]:
        return [[k, self.header(k, v)] for k, v in pairs]

    def query(self, qs: str) -> str:
        if not qs:
            return ""
        pairs = parse_qsl(qs, keep_blank_values=True)
        return urlencode([(k, self.token(v) if k.lower() in SECRET_QUERY else v) for k, v in pairs])

    def json(self, value):
        if isinstance(value, dict):
            return {k: (self._secret_value(v) if k.lower() in self.keys else self.json(v)) for k, v in value.items()}
        if isinstance(value, list):
            return [self.json(v) for v in value]
        return value

    def _secret_value(self, value):
        return self.token(value) if isinstance(value, str) else REDACTED

    def body(self, body: dict | None) -> dict | None:
        if body and "json" in body:
            return {"json": self.json(body["json"])}
        return body

    def scrub(self, line: str) -> str:
        """Every secret seen so far, wherever it still appears in ``line``."""
        for secret, placeholder in self.secrets.items():
            if secret in line:
                line = line.replace(secret, placeholder)
        return line


# ------------------------------------------------------------------ writing

class Writer:
    """Appends entries to a cassette directory, one file per label. Several processes (the api and
    the auth gateway) may write the same file: a file is created with its header in one step, and
    each entry is one ``write`` on an O_APPEND descriptor, so lines never interleave."""

    def __init__(self, directory: str | os.PathLike, redactor: Redactor | None = None):
        self.dir = Path(directory)
        self.redactor = redactor or Redactor()
        self._fds: dict[str, int] = {}

    def write(self, label: str | None, entry: dict) -> None:
        line = self.redactor.scrub(json.dumps(entry, ensure_ascii=False, separators=(", ", ": "))) + "\n"
        os.write(self._fd(label), line.encode())

    def _fd(self, label: str | None) -> int:
        name = file_for(label)
        fd = self._fds.get(name)
        if fd is None:
            path = self.dir / name
            if not path.exists():
                tmp = self.dir / f".{name}.{os.getpid()}.tmp"
                tmp.write_text(json.dumps(header_line(label)) + "\n")
                try:
                    os.link(tmp, path)      # fails if another process created it first
                except FileExistsError:
                    pass
                finally:
                    tmp.unlink(missing_ok=True)
            fd = self._fds[name] = os.open(path, os.O_WRONLY | os.O_APPEND)
        return fd

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


# ------------------------------------------------------------------ reading

@dataclass
class Entry:
    file: str
    line: int
    label: str | None
    data: dict

    @property
    def kind(self) -> str:
        return self.data["kind"]

    def where(self) -> str:
        return f"{self.file}:{self.line}"


_REQUIRED = {"http": ("service", "method", "path", "status"), "ws": ("service", "path", "status", "frames")}


def files(directory: str | os.PathLike) -> list[Path]:
    d = Path(directory)
    if not d.is_dir():
        raise CassetteError(f"cassette {str(d)!r} is not a directory",
                            "give the directory `simstack record --out` (or --simstack-record) wrote")
    return sorted(p for p in d.iterdir() if p.suffix == SUFFIX and p.is_file())


def load(directory: str | os.PathLike, require_entries: bool = True) -> list[Entry]:
    """Every entry of every file, in file then line order; a bad line is an error naming file and line."""
    entries: list[Entry] = []
    found = files(directory)
    for path in found:
        entries += load_file(path)
    if require_entries and not entries:
        what = f"{len(found)} file(s) with no entry" if found else f"no {SUFFIX} file"
        raise CassetteError(f"cassette {str(directory)!r} is empty: {what}",
                            "record one first: `simstack record --api-url URL --out DIR` or pytest --simstack-record DIR")
    return entries


def load_file(path: Path) -> list[Entry]:
    out: list[Entry] = []
    label = None
    with open(path, "rb") as f:
        raw_lines = f.read().split(b"\n")
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()   # the newline that ends the last line
    for n, raw in enumerate(raw_lines, 1):
        where = f"{path}:{n}"
        if not raw.strip():
            continue
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise CassetteError(f"{where}: not a JSON line ({exc}): {raw[:80]!r}",
                                "the file is corrupt or truncated: re-record it, or delete that line") from None
        if not isinstance(data, dict):
            raise CassetteError(f"{where}: expected a JSON object, got {type(data).__name__}",
                                "re-record the cassette, or delete that line")
        if n == 1:
            version = data.get(HEADER_KEY)
            if version is None:
                raise CassetteError(f"{where}: no cassette header (expected {{\"{HEADER_KEY}\": {FORMAT_VERSION}, ...}})",
                                    "is this a simstack cassette? re-record it with `simstack record`")
            if version != FORMAT_VERSION:
                raise CassetteError(f"{where}: cassette format version {version!r}, this simstack reads "
                                    f"version {FORMAT_VERSION}",
                                    "re-record the cassette with this simstack, or use the simstack that wrote it")
            label = data.get("label")
            continue
        kind = data.get("kind")
        if kind not in _REQUIRED:
            raise CassetteError(f"{where}: entry kind {kind!r} is not http or ws", "re-record it, or delete that line")
        missing = [k for k in _REQUIRED[kind] if k not in data]
        if missing:
            raise CassetteError(f"{where}: {kind} entry without {', '.join(missing)}",
                                "the line is truncated or was edited by hand: re-record it, or fix the line")
        out.append(Entry(str(path), n, label, data))
    return out


def summary(directory: str | os.PathLike) -> str:
    """One line: files, HTTP exchanges, WebSocket sessions, incomplete ones."""
    entries = load(directory, require_entries=False)
    n_files = len(files(directory))
    http = sum(1 for e in entries if e.kind == "http")
    ws = sum(1 for e in entries if e.kind == "ws")
    incomplete = sum(1 for e in entries if e.data.get("incomplete"))
    note = f", {incomplete} incomplete (the upstream never finished them; marked \"incomplete\": true)" if incomplete else ""
    return f"cassette {directory}: {n_files} file(s), {http} HTTP exchange(s), {ws} WebSocket session(s){note}"
