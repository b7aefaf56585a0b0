"""Timing profiles. ``staging`` matches what real suites require (CONTRACT §5);
``fast`` adds no delays, for simstack's own tests and benchmarks."""
from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    http_delay_s: float        # added to every HTTP response and to the WebSocket upgrade
    first_frame_s: float       # from accept to the first WebSocket frame
    event_interval_s: float    # between agent events


PROFILES = {
    "staging": Profile("staging", 0.2, 0.2, 0.3),
    "fast": Profile("fast", 0.0, 0.0, 0.0),
}


def from_env() -> Profile:
    name = os.environ.get("SIMSTACK_PROFILE", "staging")
    if name not in PROFILES:
        raise SystemExit(f"SIMSTACK_PROFILE={name!r} is not a profile; use one of {', '.join(PROFILES)}")
    return PROFILES[name]
