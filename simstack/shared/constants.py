"""Names both sides use: the environment the launchers set and the stand-ins read."""

# Environment variables the stand-ins read (set by every launcher).
ENV_PROFILE = "SIMSTACK_PROFILE"          # staging | fast
ENV_ADMIN_KEY = "SIMSTACK_ADMIN_KEY"      # required on /__simstack/* calls
ENV_JWT_SECRET = "SIMSTACK_JWT_SECRET"    # HS256 secret shared by auth and api
ENV_AUTH_POLICY = "SIMSTACK_AUTH_POLICY"  # lenient | strict
ENV_BYPASS_KEY = "SIMSTACK_E2E_BYPASS_KEY"  # strict bypass-key check when set
ENV_STACK_ID = "SIMSTACK_STACK_ID"

# The timeline label of simstack's own requests (e.g. the token it mints for a session): never a test's.
INTERNAL_LABEL = "simstack:internal"
