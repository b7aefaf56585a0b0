"""Removing a latency fault that holds data for a client that already left does not block
Toxiproxy's API (upstream issue #558 blocks it 5-10 s): `simstack fault rm`, `stack.faults.remove`
and `reset` release the toxic first. The bound below only detects that multi-second block; the
times themselves are measured in bench/figures/fault_rm.py."""
from __future__ import annotations

import asyncio
import threading
import time

import pytest

from simstack.client import observe_ws

BLOCK_S = 4.0   # the block is >= 5 s per stuck direction; a healthy removal takes milliseconds


def _leave_a_held_upgrade(stack, fault_id: str) -> None:
    """A latency fault holds the upgrade's answer; the client gives up and leaves meanwhile."""
    stack.faults.add("latency", target="ws", latency_ms=3000, direction="downstream", id=fault_id)
    obs = asyncio.run(observe_ws(stack.endpoints.ws_url, stack.token(), action="listen", timeout_s=1))
    assert obs.timed_out, "the client left before the held answer arrived"


@pytest.mark.parametrize("how", ["remove", "reset"])
def test_removing_a_latency_fault_holding_data_does_not_block_other_fault_calls(stack, how):
    _leave_a_held_upgrade(stack, "held")
    other = {}

    def list_meanwhile():   # another fault call on the same stack, while the removal runs
        time.sleep(0.05)
        t0 = time.monotonic()
        other["faults"] = stack.faults.list()
        other["s"] = time.monotonic() - t0

    lister = threading.Thread(target=list_meanwhile)
    t0 = time.monotonic()
    lister.start()
    stack.faults.remove("held") if how == "remove" else stack.faults.reset()
    took = time.monotonic() - t0
    lister.join()
    assert took < BLOCK_S and other["s"] < BLOCK_S, (took, other)
    assert stack.faults.list() == []
    obs = asyncio.run(observe_ws(stack.endpoints.ws_url, stack.token(), timeout_s=5))
    assert len(obs.events) == 5, "the endpoint is healthy again"
