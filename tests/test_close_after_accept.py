"""close_after_accept on simstack's own stand-in: the same client signature as in front of a
forwarded service (tests/test_gateway.py)."""
from __future__ import annotations

import contextlib

import pytest
from websockets.exceptions import ConnectionClosed, ConnectionClosedError

from standin_client import WELCOME, closed_by_server, connect_ws, recv_json, send_json, start_agent

STAGING_1011 = "received 1011 (internal error) Internal error; then sent 1011 (internal error) Internal error"


@pytest.mark.parametrize("client_sends_first", [False, True], ids=["silent-client", "client-sends-first"])
async def test_the_stand_in_closes_1011_after_accept_with_no_frame_before(stack, token, client_sends_first):
    stack.faults.add("close_after_accept", after_ms=200)
    async with connect_ws(stack, token) as ws:
        if client_sends_first:
            with contextlib.suppress(ConnectionClosed):
                await send_json(ws, start_agent())
        with pytest.raises(ConnectionClosedError) as info:
            await recv_json(ws)
    assert str(info.value) == STAGING_1011


async def test_the_stand_in_lets_the_welcome_through_when_asked_and_closes_with_the_chosen_code(stack, token):
    stack.faults.add("close_after_accept", code=4500, reason="draining", after_ms=300, before_first_frame=False)
    async with connect_ws(stack, token) as ws:
        exc, frames = await closed_by_server(ws)
    assert [f["type"] for f in frames] == list(WELCOME)
    assert (exc.rcvd.code, exc.rcvd.reason) == (4500, "draining")
