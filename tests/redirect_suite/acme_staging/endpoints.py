"""Where staging lives. Hard-coded, and derived at import time, as many suites have it."""
from urllib.parse import urljoin

BASE_DOMAIN = "staging.acme-example.invalid"
API_BASE = f"https://api.{BASE_DOMAIN}"
AUTH_BASE = f"https://auth.{BASE_DOMAIN}"
WS_URL = API_BASE.replace("https://", "wss://") + "/ws"

HEALTH_URL = urljoin(API_BASE, "/health")
API_HEALTH_URL = urljoin(API_BASE, "/api/health")
DISCOVERY_URL = urljoin(API_BASE, "/api/discovery/services")
MCP_SERVERS_URL = urljoin(API_BASE, "/api/mcp/servers")
AUTH_HEALTH_URL = urljoin(AUTH_BASE, "/health")
TEST_AUTH_URL = urljoin(AUTH_BASE, "/auth/e2e/test-auth")
