"""CONTRACT §3: the auth stand-in's test tokens, validation and health, and the
token policies of fakes/tokens.py (pure functions, tested in-process)."""
from __future__ import annotations

import base64
import json
import time

import pytest

from simstack.fakes import tokens
from simstack.stack import Stack
from standin_client import SUITE_SECRET, http, mint

# What the stand-ins answer does not depend on how they run: checked once, against local processes.
pytestmark = pytest.mark.mode_independent

STACK_SECRET = "simstack-dev-secret"   # Stack's default jwt_secret
CLAIMS = {"sub", "email", "permissions", "iat", "exp", "type", "iss", "jti"}
BODY = {"email": "e2e-auth@staging.netra.test", "name": "Auth Contract", "permissions": ["read", "write", "admin"]}


@pytest.fixture
def auth(stack):
    with http(stack.endpoints.auth_url) as client:
        yield client


@pytest.fixture(scope="module")
def strict_key_stack(stack_mode):
    """A stack whose auth stand-in checks the bypass key against a configured value."""
    with Stack(mode=stack_mode, profile="fast", bypass_key="the-configured-key") as s:
        yield s


def _header(token: str) -> dict:
    part = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


# ---------------------------------------------------------------- over the wire

def test_test_auth_returns_tokens_and_the_user(auth):
    r = auth.post("/auth/e2e/test-auth", headers={"X-E2E-Bypass-Key": "any-key"}, json=BODY)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in", "user"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 900
    assert set(body["user"]) == {"id", "email", "name", "permissions"}
    assert {k: body["user"][k] for k in ("email", "name", "permissions")} == BODY
    assert body["refresh_token"] and body["refresh_token"] != body["access_token"]


def test_access_token_is_hs256_with_the_staging_claims(auth):
    body = auth.post("/auth/e2e/test-auth", headers={"X-E2E-Bypass-Key": "k"}, json=BODY).json()
    token = body["access_token"]
    assert _header(token)["alg"] == "HS256"
    claims = tokens.verify(token, [STACK_SECRET])          # signed with the stack's secret
    assert CLAIMS <= set(claims)
    assert "aud" not in claims
    assert claims["sub"] == body["user"]["id"]
    assert claims["email"] == BODY["email"]
    assert claims["permissions"] == BODY["permissions"]
    assert claims["type"] == "access"
    assert claims["iss"] == "netra-auth-service"
    assert claims["exp"] - claims["iat"] == 900
    assert isinstance(claims["jti"], str) and claims["jti"]


@pytest.mark.parametrize("headers", [{}, {"X-E2E-Bypass-Key": ""}], ids=["missing", "empty"])
def test_test_auth_without_a_bypass_key_is_401_json(auth, headers):
    r = auth.post("/auth/e2e/test-auth", headers=headers, json=BODY)
    assert r.status_code == 401
    assert r.json()["detail"] and r.json()["error_code"]


def test_strict_bypass_key_mode_accepts_only_the_configured_key(strict_key_stack):
    with http(strict_key_stack.endpoints.auth_url) as client:
        wrong = client.post("/auth/e2e/test-auth", headers={"X-E2E-Bypass-Key": "guessed"}, json=BODY)
        right = client.post("/auth/e2e/test-auth", headers={"X-E2E-Bypass-Key": "the-configured-key"}, json=BODY)
    assert wrong.status_code == 401 and wrong.json()["error_code"]
    assert right.status_code == 200 and right.json()["access_token"]


def test_validate_accepts_an_issued_token(auth):
    token = auth.post("/auth/e2e/test-auth", headers={"X-E2E-Bypass-Key": "k"}, json=BODY).json()["access_token"]
    by_header = auth.post("/auth/validate", headers={"Authorization": f"Bearer {token}"})
    by_body = auth.post("/auth/validate", json={"token": token})
    for r in (by_header, by_body):
        assert r.status_code == 200, r.text
        assert r.json()["valid"] is True
        assert r.json()["email"] == BODY["email"]


@pytest.mark.parametrize("token", [mint("e2e-foreign"), "not-a-jwt", ""], ids=["foreign-secret", "garbage", "none"])
def test_validate_rejects_a_bad_token_with_401_json_saying_why(auth, token):
    r = auth.post("/auth/validate", headers={"Authorization": f"Bearer {token}"} if token else {})
    assert r.status_code == 401
    assert r.json()["error_code"] in ("INVALID_TOKEN", "MISSING_TOKEN")
    assert r.json()["detail"]


def test_auth_health_names_the_auth_service(auth):
    r = auth.get("/health")
    assert r.status_code == 200
    assert {"status": "healthy", "service": "auth-service"}.items() <= r.json().items()


# ---------------------------------------------------------------- fakes/tokens.py

LENIENT = tokens.Policy("lenient", (STACK_SECRET,))
STRICT = tokens.Policy("strict", (STACK_SECRET,))


def test_lenient_accepts_a_token_signed_with_a_foreign_secret_when_e2e():
    assert LENIENT.accept(mint("e2e-suite-user"), e2e=True)["sub"] == "e2e-suite-user"


def test_lenient_without_e2e_headers_checks_the_signature():
    with pytest.raises(tokens.TokenError, match="signature"):
        LENIENT.accept(mint("e2e-suite-user"), e2e=False)


@pytest.mark.parametrize("policy", [LENIENT, STRICT], ids=["lenient", "strict"])
def test_no_aud_is_required_and_repeated_jti_is_accepted(policy):
    now = time.time()
    first = tokens.mint("e2e-a", "a@x.test", STACK_SECRET, now=now)
    jti = tokens.decode(first)["jti"]
    second = tokens.encode({**tokens.decode(first), "email": "b@x.test"}, STACK_SECRET)   # same jti, same second
    for token in (first, first, second):
        claims = policy.accept(token, e2e=True)
        assert "aud" not in claims and claims["jti"] == jti


def test_strict_accepts_a_token_signed_with_the_configured_secret():
    assert STRICT.accept(tokens.mint("e2e-a", "a@x.test", STACK_SECRET), e2e=True)["sub"] == "e2e-a"


@pytest.mark.parametrize("token,why", [
    (mint("e2e-a", secret="wrong-secret"), "signature"),
    (mint("e2e-a", secret=STACK_SECRET, exp=int(time.time()) - 60), "expired"),
    (mint("e2e-a", secret=STACK_SECRET, iss="someone-else"), "iss"),
    (mint("e2e-a", secret=STACK_SECRET, exp=None), "exp"),
], ids=["wrong-secret", "expired", "wrong-iss", "no-exp"])
def test_strict_rejects_and_says_why(token, why):
    with pytest.raises(tokens.TokenError, match=why):
        STRICT.accept(token, e2e=True)


def test_a_foreign_secret_is_not_needed_to_decode():
    assert tokens.decode(mint("e2e-x", secret=SUITE_SECRET))["sub"] == "e2e-x"


@pytest.mark.parametrize("garbage", ["", "a.b", "a.b.c", "x" * 40])
def test_decode_rejects_what_is_not_a_jwt(garbage):
    with pytest.raises(tokens.TokenError, match="not a JWT"):
        tokens.decode(garbage)
