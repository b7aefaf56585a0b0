"""The ``auth`` stand-in (CONTRACT §3): e2e test tokens, validation and health.

Serve with ``python -m uvicorn simstack.fakes.auth:app``.
"""
from __future__ import annotations

import hmac
import os
import time
import uuid

from fastapi import Header, HTTPException, Request
from pydantic import BaseModel, Field, ValidationError

from simstack.shared.constants import DEFAULT_EMAIL, DEV_JWT_SECRET, ENV_BYPASS_KEY, ENV_JWT_SECRET

from . import strictjson, tokens
from .common import create_app

app = create_app("auth", targets=("auth",))
SECRET = os.environ.get(ENV_JWT_SECRET, DEV_JWT_SECRET).split(",")[0]


class TestAuthRequest(BaseModel):
    email: str = DEFAULT_EMAIL
    name: str = "E2E Test User"
    permissions: list[str] = Field(default_factory=lambda: ["read", "write"])


def user_id_for(email: str) -> str:
    """Stable e2e user ids, in the ``e2e-…`` form staging gives test users."""
    return f"e2e-{uuid.uuid5(uuid.NAMESPACE_URL, email).hex[:12]}"


@app.get("/health")
async def health() -> dict:
    return {"status": "healthy", "service": "auth-service", "version": "1.0.0", "timestamp": time.time()}


@app.get("/health/ready")
async def ready() -> dict:
    return {"status": "ready", "service": "auth-service", "timestamp": time.time()}


async def _body(request: Request) -> TestAuthRequest:
    """The request body (strict JSON, see fakes/strictjson.py), defaults when empty; 422 naming the bad field."""
    raw = await request.body()
    data = strictjson.loads(raw) if raw.strip() else None
    try:
        return TestAuthRequest.model_validate({} if data is None else data)
    except ValidationError as exc:
        errors = [{"loc": ["body", *e["loc"]], "msg": e["msg"]} for e in exc.errors()]
        shown = "; ".join(f"{'.'.join(map(str, e['loc'][1:])) or 'body'}: {e['msg']}" for e in errors)
        raise HTTPException(422, detail={"message": f"request body is invalid: {shown}", "errors": errors,
                                         "error_code": "VALIDATION_ERROR"}) from None


def _key_matches(given: str, expected: str) -> bool:
    # Starlette decodes header bytes as latin-1: compare the bytes the client sent with the key's UTF-8.
    return hmac.compare_digest(given.encode("latin-1"), expected.encode("utf-8"))


@app.post("/auth/e2e/test-auth")
async def test_auth(request: Request, x_e2e_bypass_key: str | None = Header(default=None)) -> dict:
    if not x_e2e_bypass_key:
        raise HTTPException(401, detail={"message": "missing X-E2E-Bypass-Key header", "error_code": "MISSING_BYPASS_KEY"})
    expected = os.environ.get(ENV_BYPASS_KEY)
    if expected and not _key_matches(x_e2e_bypass_key, expected):
        raise HTTPException(401, detail={"message": "X-E2E-Bypass-Key does not match", "error_code": "INVALID_BYPASS_KEY"})
    body = await _body(request)
    uid = user_id_for(body.email)
    return {"access_token": tokens.mint(uid, body.email, SECRET, body.permissions),
            "refresh_token": tokens.mint(uid, body.email, SECRET, body.permissions, kind="refresh", ttl_s=7 * 86400),
            "token_type": "Bearer", "expires_in": tokens.ACCESS_TTL_S,
            "user": {"id": uid, "email": body.email, "name": body.name, "permissions": body.permissions}}


@app.post("/auth/validate")
async def validate(request: Request, authorization: str | None = Header(default=None)) -> dict:
    """Strict validation against this service's secret; says why a token fails."""
    token = None
    if authorization and authorization.lower().startswith("bearer "):
        token = authorization[7:].strip()
    else:
        raw = await request.body()
        body = strictjson.loads(raw) if raw.strip() else None   # not JSON: 400 INVALID_JSON saying why
        token = body.get("token") if isinstance(body, dict) else None
        if token is not None and not isinstance(token, str):
            raise HTTPException(422, detail={"message": f"token must be a string (a JWT), got {type(token).__name__}",
                                             "error_code": "INVALID_TOKEN"})
    if not token:
        raise HTTPException(401, detail={"message": "no token: send Authorization: Bearer <jwt> or {\"token\": ...}",
                                         "error_code": "MISSING_TOKEN"})
    try:
        claims = tokens.verify(token, [SECRET])
    except tokens.TokenError as exc:
        raise HTTPException(401, detail={"message": str(exc), "error_code": "INVALID_TOKEN"}) from None
    return {"valid": True, "user_id": claims.get("sub"), "email": claims.get("email"), "claims": claims}
