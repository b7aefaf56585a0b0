"""The services a stack runs: one table shared by every launcher.

Each stand-in is an ASGI app in ``fakes/`` served by uvicorn. Toxiproxy sits in
front of all of them; suites only ever see Toxiproxy's listeners.
"""
from __future__ import annotations

import os
from dataclasses import dataclass


# uvicorn's h11 and websockets-sansio protocols, answering what they cannot parse with JSON at once
# (fakes/protocols.py): every uvicorn simstack starts runs with these, on asyncio's own event loop
# (named, because with uvloop installed uvicorn's default would pick it).
PROTOCOLS = ("--http", "simstack.fakes.protocols:HTTPProtocol", "--ws", "simstack.fakes.protocols:WebSocketProtocol",
             "--loop", "asyncio")
# The gateway's: the same answers from uvicorn's httptools protocol, on uvloop. Every request a suite
# sends to a service of yours crosses the gateway, whose per-request CPU is what its throughput target
# is about: httptools parses in C what h11 parses in Python, uvloop runs the loop and transports in C.
GATEWAY_PROTOCOLS = ("--http", "simstack.fakes.protocols:HTTPToolsProtocol",
                     "--ws", "simstack.fakes.protocols:WebSocketProtocol", "--loop", "uvloop")


@dataclass(frozen=True)
class Service:
    name: str          # "api" | "auth"
    app: str           # uvicorn import string
    container_port: int

    def command(self, port: int, host: str = "127.0.0.1", fd: int | None = None) -> list[str]:
        """Arguments after ``python3``: uvicorn serving this stand-in."""
        bind = ["--fd", str(fd)] if fd is not None else ["--host", host, "--port", str(port)]
        runner = "simstack.fakes.serve" if fd is not None else "uvicorn"   # see fakes/serve.py: TCP_NODELAY
        return ["-m", runner, self.app, *bind, "--log-level", "warning", "--no-access-log", *PROTOCOLS,
                "--ws-ping-interval", "20", "--ws-ping-timeout", "20", "--timeout-graceful-shutdown", "1"]


API = Service("api", "simstack.fakes.api:app", 8000)
AUTH = Service("auth", "simstack.fakes.auth:app", 8001)
STANDINS: tuple[Service, ...] = (API, AUTH)


@dataclass(frozen=True)
class ProxySpec:
    """One Toxiproxy listener. ``control`` proxies carry simstack's admin calls and never get faults."""
    name: str
    upstream: str        # service name
    container_port: int  # listen port inside the Toxiproxy container (docker mode)
    control: bool = False


PROXIES: tuple[ProxySpec, ...] = (
    ProxySpec("api", "api", 8666),
    ProxySpec("ws", "api", 8667),
    ProxySpec("auth", "auth", 8668),
    ProxySpec("api_control", "api", 8669, control=True),
    ProxySpec("auth_control", "auth", 8670, control=True),
)
TOXIPROXY_API_PORT = 8474


def port_option(name: str) -> str:
    """The command-line option that sets the host port of a proxy listener, or of Toxiproxy's API."""
    return f"--{name.replace('_', '-')}-port"


TOXIPROXY_PORT_OPTION = port_option("toxiproxy")


def toxiproxy_env() -> dict[str, str]:
    """Environment for the Toxiproxy process or container; a GOMAXPROCS or LOG_LEVEL the user set wins.

    - GOMAXPROCS at half the cores: Toxiproxy shares them with the Python stand-ins and the suite's
      client, and with one Go P per core its idle threads spin looking for work and take cycles from
      them. On 2 cores GOMAXPROCS=1 cut what the proxy adds to a fast-profile WebSocket agent run from
      ~0.65 ms to ~0.45 ms, with no loss of HTTP throughput or WebSocket capacity.
    - LOG_LEVEL=info: without it Toxiproxy logs at trace level, 8 lines (~3 KB) per connection, 3 of
      them written before it starts forwarding; info keeps "Accepted client" and warnings, saves
      ~0.03 ms per connection and keeps long sessions' logs ~4x smaller.
    Measured with `make bench` (bench/).
    """
    return {"GOMAXPROCS": os.environ.get("GOMAXPROCS") or str(max(1, (os.cpu_count() or 2) // 2)),
            "LOG_LEVEL": os.environ.get("LOG_LEVEL") or "info"}
