"""What every launcher provides to the Stack."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass
class LaunchSpec:
    stack_id: str
    env: dict[str, str]                 # stand-in environment (see simstack.services ENV_*)
    ports: dict[str, int] = field(default_factory=dict)  # proxy name -> wanted host port (0/absent = any)
    toxiproxy_port: int = 0             # wanted host port of Toxiproxy's API (0 = any)
    own: dict = field(default_factory=dict)  # service name -> OwnService (simstack.own) replacing its stand-in
    startup_timeout: float = 30.0


@dataclass
class Launched:
    toxiproxy_url: str                  # Toxiproxy API, reachable from this host
    upstreams: dict[str, str]           # service name -> "host:port" as Toxiproxy sees it


class Launcher(Protocol):
    mode: str

    def start(self, spec: LaunchSpec) -> Launched:
        """Start Toxiproxy and the stand-ins; raise StartError (after cleaning up) on failure."""

    def proxy_listen(self, proxy: str, wanted_port: int) -> str:
        """The ``listen`` address to give Toxiproxy for this proxy."""

    def host_port(self, proxy: str, listen: str) -> int:
        """The host port a client uses, given the listen address Toxiproxy reported."""

    def logs(self, service: str) -> str:
        """Log text of ``api``, ``auth`` or ``toxiproxy`` (the CLI reads a detached stack's through ``attach``)."""

    def stop(self) -> None:
        """Stop everything this launcher started. Safe to call twice."""
