"""HS256 JWTs, as staging's auth service issues them, and the acceptance policies.

Standard library only: the stand-ins must accept tokens minted by suites with
secrets simstack does not know (lenient policy), so decoding and verifying are
separate steps.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass

from . import strictjson

ISSUER = "netra-auth-service"
ACCESS_TTL_S = 900


class TokenError(ValueError):
    """The token was rejected; the message says why."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def encode(claims: dict, secret: str) -> str:
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    body = _b64(json.dumps(claims, separators=(",", ":"), allow_nan=False).encode())
    sig = hmac.new(secret.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{_b64(sig)}"


def mint(user_id: str, email: str, secret: str, permissions: list[str] | None = None,
         kind: str = "access", ttl_s: int = ACCESS_TTL_S, now: float | None = None) -> str:
    now = int(now if now is not None else time.time())
    return encode({"sub": user_id, "email": email, "permissions": permissions or ["read", "write"],
                   "iat": now, "exp": now + ttl_s, "type": kind, "iss": ISSUER,
                   "jti": uuid.uuid4().hex}, secret)


def _parts(token: str) -> tuple[dict, dict]:
    """Header and claims, signature unchecked. Raises TokenError if it is not a JWT at all."""
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenError(f"not a JWT: expected 3 dot-separated parts, got {len(parts)}")
    try:
        header = strictjson.loads(_unb64(parts[0]))
        claims = strictjson.loads(_unb64(parts[1]))
    except ValueError as exc:   # base64 (binascii.Error) or JSON (strictjson.InvalidJSON)
        raise TokenError(f"not a JWT: header or claims are not base64url JSON ({exc})") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise TokenError("not a JWT: header and claims must be JSON objects")
    return header, claims


def decode(token: str) -> dict:
    """The claims, signature unchecked. Raises TokenError if it is not a JWT at all."""
    return _parts(token)[1]


def _numeric_date(claims: dict, name: str, required: bool) -> float | None:
    """A NumericDate claim (RFC 7519 §2): a JSON number; anything else is refused."""
    value = claims.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TokenError(f"{name} must be a number of seconds since the epoch, got {value!r}")
    return value


def verify(token: str, secrets: list[str], now: float | None = None) -> dict:
    """Strict check: HS256 signature against any of ``secrets``, ``exp`` (and ``nbf``, ``iat``
    when present: numbers, ``nbf`` not in the future) and ``iss``. Never requires ``aud`` nor unique ``jti``."""
    header, claims = _parts(token)
    if header.get("alg") != "HS256":
        raise TokenError(f"unsupported alg {header.get('alg')!r}: only HS256")
    signing_input, sig = token.rsplit(".", 1)
    try:
        got = _unb64(sig)
    except ValueError:
        raise TokenError("signature is not base64url") from None
    if not any(hmac.compare_digest(got, hmac.new(s.encode(), signing_input.encode(), hashlib.sha256).digest())
               for s in secrets):
        raise TokenError("signature does not match the configured secret")
    now = now if now is not None else time.time()
    exp = _numeric_date(claims, "exp", required=True)
    nbf = _numeric_date(claims, "nbf", required=False)
    _numeric_date(claims, "iat", required=False)
    if exp < now:
        raise TokenError(f"token expired (exp={exp!r})")
    if nbf is not None and nbf > now:
        raise TokenError(f"token not valid yet (nbf={nbf!r})")
    if claims.get("iss") != ISSUER:
        raise TokenError(f"iss is {claims.get('iss')!r}, expected {ISSUER!r}")
    return claims


@dataclass(frozen=True)
class Policy:
    """Which tokens the WebSocket accepts.

    lenient (staging-like, default): any token that decodes as a JWT is accepted,
    signature unchecked, when the request carries E2E test headers; otherwise strict.
    strict: signature, exp and iss verified against ``secrets``.
    """
    name: str
    secrets: tuple[str, ...]

    def accept(self, token: str, e2e: bool) -> dict:
        if self.name == "lenient" and e2e:
            return decode(token)
        return verify(token, list(self.secrets))


def subject(token: str | None) -> str | None:
    """The ``sub`` of a token decoded leniently (signature unchecked), or None when there is no token,
    it does not decode, or it has no subject."""
    if not token:
        return None
    try:
        sub = decode(token).get("sub")
    except TokenError:
        return None
    return str(sub) if sub is not None else None
