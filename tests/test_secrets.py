"""Strict mode cannot be forged, and a stack's secrets stay with its owner: random per-stack JWT
secret, records readable by the owner only, no secret on any child's command line."""
from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus

from simstack.stack import DEV_JWT_SECRET, Stack
from standin_client import connect_ws, mint, recv_type
from test_cli import cli, detached, stack_processes  # noqa: F401  (cli is a fixture)


async def _accepted(stack, token: str) -> bool:
    """True when the WebSocket accepts ``token`` (101 and the welcome), False on a 403."""
    try:
        async with connect_ws(stack, token) as ws:
            await recv_type(ws, "system_message")
            return True
    except InvalidStatus as exc:
        assert exc.response.status_code == 403
        return False


@pytest.fixture(scope="module")
def strict_stack():
    with Stack(mode="local", profile="fast", auth_policy="strict") as s:
        yield s


async def test_strict_mode_refuses_a_token_forged_with_the_public_dev_secret(strict_stack):
    forged = mint("e2e-forger", secret=DEV_JWT_SECRET)
    assert not await _accepted(strict_stack, forged)
    assert await _accepted(strict_stack, strict_stack.token()), "tokens the auth stand-in mints keep working"


async def test_each_strict_stack_gets_its_own_secret(strict_stack):
    assert strict_stack.jwt_secret != DEV_JWT_SECRET
    other = Stack(mode="local", profile="fast", auth_policy="strict")
    assert other.jwt_secret not in (strict_stack.jwt_secret, DEV_JWT_SECRET)


async def test_lenient_mode_still_signs_with_the_dev_secret():
    assert Stack(mode="local", profile="fast").jwt_secret == DEV_JWT_SECRET


class _Endpoints:   # what connect_ws needs of a stack
    def __init__(self, ws_url: str):
        self.endpoints = type("E", (), {"ws_url": ws_url})()


async def test_configured_secrets_stay_off_command_lines_and_in_private_records(cli, tmp_path):  # noqa: F811
    secret, key = "the-teams-own-jwt-secret", "the-teams-bypass-key"
    cli.env["SIMSTACK_JWT_SECRET"] = secret
    stack_id, urls = detached(cli, "--auth-policy", "strict", "--bypass-key", key)
    del cli.env["SIMSTACK_JWT_SECRET"]

    leaked = []
    for pid in stack_processes(stack_id):
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if any(secret.encode() in a or key.encode() in a for a in argv):
            leaked.append((pid, argv))
    assert len(stack_processes(stack_id)) == 3 and leaked == []
    state_dir = Path(cli.env["SIMSTACK_STATE_DIR"])
    supervisor = json.loads((state_dir / f"{stack_id}.json").read_text())["pid"]
    assert key.encode() not in Path(f"/proc/{supervisor}/cmdline").read_bytes(), \
        "the detached `simstack up` has no key in argv"

    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    for f in state_dir.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    record = json.loads((state_dir / f"{stack_id}.json").read_text())
    assert record["bypass_key"] == key

    stack = _Endpoints(urls["ws"])
    assert await _accepted(stack, mint("e2e-team", secret=secret)), "the configured secret signs valid tokens"
    assert not await _accepted(stack, mint("e2e-forger", secret=DEV_JWT_SECRET))
    env = cli("env")   # mints with the recorded bypass key (it used to end in a traceback)
    token = re.search(r"^export SIMSTACK_TOKEN=(\S+)$", env.stdout, re.M).group(1)
    assert await _accepted(stack, token) and "Traceback" not in env.stderr

