"""Names and values both sides use, each defined once: the environment the launchers set and the
stand-ins read, the timing profiles, the admin API's address, the e2e user and the agent events."""
from __future__ import annotations

from dataclasses import dataclass

# Environment variables the stand-ins read (set by every launcher).
ENV_PROFILE = "SIMSTACK_PROFILE"          # staging | fast
ENV_ADMIN_KEY = "SIMSTACK_ADMIN_KEY"      # required on /__simstack/* calls
ENV_JWT_SECRET = "SIMSTACK_JWT_SECRET"    # HS256 secret shared by auth and api
ENV_AUTH_POLICY = "SIMSTACK_AUTH_POLICY"  # lenient | strict
ENV_BYPASS_KEY = "SIMSTACK_E2E_BYPASS_KEY"  # strict bypass-key check when set
ENV_STACK_ID = "SIMSTACK_STACK_ID"
# Read by the CLI (never put on a command line, so `ps` cannot show them) and by a detached stack.
ENV_CLI_BYPASS_KEY = "SIMSTACK_BYPASS_KEY"  # `simstack up --bypass-key` default; SIMSTACK_JWT_SECRET likewise
ENV_UP_LOG = "SIMSTACK_UP_LOG"            # a detached stack's own output file, recorded in its state

# The timeline label of simstack's own requests (e.g. the token it mints for a session): never a test's.
INTERNAL_LABEL = "simstack:internal"

MODES = ("local", "docker", "auto")       # how a stack runs
DEV_JWT_SECRET = "simstack-dev-secret"    # public: lenient mode only; strict mode gets a random one per stack
DEFAULT_EMAIL = "e2e-user@staging.netra.test"   # the e2e user simstack mints tokens for
AGENT_EVENTS = ("agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_completed")

ADMIN_PREFIX = "/__simstack"              # the stand-ins' admin API
ADMIN_HEADER = "X-Simstack-Admin"         # carries the stack's admin key
INTERNAL_HEADER = "X-Simstack-Internal"   # on simstack's own calls: kept out of any test's traffic

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
NO_PROXY = ",".join(LOOPBACK_HOSTS)       # what a client of a stack sets, so proxies never see its traffic


@dataclass(frozen=True)
class Profile:
    """A timing profile. ``staging`` matches what real suites require (CONTRACT §5);
    ``fast`` adds no delays, for simstack's own tests and benchmarks."""
    name: str
    http_delay_s: float        # added to every HTTP response and to the WebSocket upgrade
    first_frame_s: float       # from accept to the first WebSocket frame
    event_interval_s: float    # between agent events


TIMINGS = {p.name: p for p in (Profile("staging", 0.2, 0.2, 0.3), Profile("fast", 0.0, 0.0, 0.0))}
PROFILES = tuple(TIMINGS)
