"""The timing profile a stand-in runs with (the table is in ``simstack.shared.constants``)."""
from __future__ import annotations

import os

from simstack.shared.constants import ENV_PROFILE, TIMINGS, Profile


def from_env() -> Profile:
    name = os.environ.get(ENV_PROFILE, "staging")
    if name not in TIMINGS:
        raise SystemExit(f"{ENV_PROFILE}={name!r} is not a profile; use one of {', '.join(TIMINGS)}")
    return TIMINGS[name]
