"""Docker mode's ports: what Toxiproxy's container publishes (loopback only), and a busy port as PortInUse."""
from __future__ import annotations

import re

from ...services import PROXIES, TOXIPROXY_API_PORT, TOXIPROXY_PORT_OPTION, port_option
from ...shared.errors import PortInUse, StartError
from ..base import LaunchSpec
from .engine import LOOPBACK, _first_line


def _proxy_spec(proxy: str):
    for p in PROXIES:
        if p.name == proxy:
            return p
    raise StartError(f"unknown proxy {proxy!r}", f"known: {', '.join(p.name for p in PROXIES)}")


def _toxiproxy_ports(spec: LaunchSpec) -> dict[str, tuple[str, int | None]]:
    """Toxiproxy's API and every proxy listener, on loopback only; None lets the engine pick."""
    ports = {f"{TOXIPROXY_API_PORT}/tcp": (LOOPBACK, spec.toxiproxy_port or None)}
    for p in PROXIES:
        ports[f"{p.container_port}/tcp"] = (LOOPBACK, spec.ports.get(p.name) or None)
    return ports


def _start_error(name: str, exc: BaseException, spec: LaunchSpec) -> StartError:
    text = _first_line(exc)
    busy = re.search(r"(?:bind for|listen tcp4?) [\d.]*:(\d+).*(?:already allocated|address already in use)", text)
    if busy:
        port = int(busy.group(1))
        option = next((port_option(p) for p, v in spec.ports.items() if v == port), TOXIPROXY_PORT_OPTION)
        return PortInUse(LOOPBACK, port, option)
    if "Conflict" in text and "already in use" in text:
        return StartError(f"could not create the {name} container: {text}",
                          "a container of the same stack id exists; `simstack down` removes it")
    return StartError(f"could not start the {name} container: {text}",
                      "check the engine with `docker/engine.sh status`, or use --mode local")
