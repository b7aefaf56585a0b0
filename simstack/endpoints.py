"""The URLs of a running stack: the one source of truth every part reads."""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Endpoints:
    api_url: str            # backend HTTP API, through the `api` proxy
    ws_url: str             # the WebSocket, through its own `ws` proxy (same upstream as api)
    auth_url: str           # auth service, through the `auth` proxy
    toxiproxy_url: str      # Toxiproxy's API
    api_control_url: str    # api stand-in via a proxy that never gets faults (admin calls)
    auth_control_url: str
    admin_key: str

    def env(self, token: str | None = None) -> dict[str, str]:
        """The variables `simstack env` exports and the pytest plugin sets."""
        env = {"SIMSTACK_API_URL": self.api_url, "SIMSTACK_WS_URL": self.ws_url,
               "SIMSTACK_AUTH_URL": self.auth_url, "SIMSTACK_TOXIPROXY_URL": self.toxiproxy_url}
        if token:
            env["SIMSTACK_TOKEN"] = token
        return env

    def render(self, template: str, token: str | None = None) -> str:
        """Fill ``{api_url}``, ``{ws_url}``, ``{auth_url}``, ``{token}``... in a template."""
        return template.format(**asdict(self), token=token or "")

    def control_url(self, target: str) -> str:
        return self.auth_control_url if target == "auth" else self.api_control_url

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Endpoints":
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})
