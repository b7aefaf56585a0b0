"""JSON as RFC 8259 defines it, for everything a client sends and everything a stand-in sends.

Python's ``json`` accepts ``NaN``/``Infinity`` (and ``1e999`` as inf), lets unpaired
``\\ud800`` escapes through as strings that cannot be encoded, and raises
``RecursionError`` on deep nesting. Client input that does any of these is refused
here with :class:`InvalidJSON` (a ``ValueError``) saying why, so it is answered
like any other malformed input instead of reaching a generic error handler.
Standard library only: :mod:`fakes.tokens` uses it too.
"""
from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_DEPTH = 100
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class InvalidJSON(ValueError):
    """The input is not RFC 8259 JSON the stand-ins accept; the message says why."""


def _refuse_constant(name: str) -> Any:
    raise InvalidJSON(f"{name} is not JSON (RFC 8259 has no NaN or Infinity)")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InvalidJSON(f"number {text[:40]} is out of range (not finite)")
    return value


def _deeper_than(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def loads(data: str | bytes | bytearray) -> Any:
    """Parse client input; raise InvalidJSON (with the reason) for anything RFC 8259 or the limits refuse."""
    if isinstance(data, (bytes, bytearray)):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidJSON(f"not UTF-8 (byte {exc.start})") from None
    try:
        value = json.loads(data, parse_constant=_refuse_constant, parse_float=_finite)
    except InvalidJSON:
        raise
    except RecursionError:
        raise InvalidJSON(f"nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:
        raise InvalidJSON(str(exc)) from None
    if data.count("[") + data.count("{") > MAX_DEPTH and _deeper_than(value, MAX_DEPTH):
        raise InvalidJSON(f"nested deeper than {MAX_DEPTH} levels")
    if _SURROGATE_ESCAPE.search(data):
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidJSON("a string holds an unpaired UTF-16 surrogate escape (e.g. \\ud800)") from None
    return value


def dumps(value: Any) -> str:
    """Serialise a frame or body: never NaN/Infinity (raises ValueError instead)."""
    return json.dumps(value, allow_nan=False)
