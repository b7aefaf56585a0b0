"""The one adapter between simstack and Toxiproxy's HTTP API.

simstack talks to the API directly (httpx, with timeouts) rather than through
toxiproxy-python: that client keeps host and port in class-level globals (one
server per process) and has no timeouts nor toxic updates, while a test run
may drive several stacks at once.

Known Toxiproxy behaviour (upstream issue #558, still open in v2.12.0): removing a
latency or bandwidth toxic while it holds data for a connection whose client has
already gone blocks the API for 5 s per stuck direction. The API timeout below is
long enough to ride that out; the scenario runner avoids it by letting held data
drain first (see ``drain_s``).
"""
from __future__ import annotations

import httpx

from .errors import SimstackError
from .faults import Fault

_TOXIC_ATTRIBUTES = {
    "latency": lambda p: {"latency": p["latency_ms"], "jitter": p["jitter_ms"]},
    "bandwidth": lambda p: {"rate": p["rate_kbps"]},
    "hang": lambda p: {"timeout": 0},
    "cut": lambda p: {"timeout": p["after_ms"]},
    "reset": lambda p: {"timeout": p["after_ms"]},
    "slow_close": lambda p: {"delay": p["delay_ms"]},
    "slicer": lambda p: {"average_size": p["average_size"], "size_variation": p["size_variation"],
                         "delay": p["delay_us"]},
    "limit_data": lambda p: {"bytes": p["bytes"]},
}


class ToxiproxyError(SimstackError):
    pass


def drain_s(faults: list[Fault]) -> float:
    """How long data may sit inside these faults' toxics (latency + jitter)."""
    return max((f.params["latency_ms"] + f.params["jitter_ms"]) / 1000 for f in faults if f.kind == "latency") \
        if any(f.kind == "latency" for f in faults) else 0.0


class Toxiproxy:
    def __init__(self, url: str, timeout: float = 30.0):
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, timeout=timeout, trust_env=False,
                                 headers={"User-Agent": "simstack"})

    def _call(self, method: str, path: str, **kw) -> dict | list | None:
        try:
            r = self.http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise ToxiproxyError(f"Toxiproxy API at {self.url} did not answer {method} {path}: {exc}",
                                 "is the stack still running? `simstack status`") from None
        if r.status_code >= 400:
            raise ToxiproxyError(f"Toxiproxy refused {method} {path}: HTTP {r.status_code} {r.text.strip()}")
        return r.json() if r.content else None

    def version(self) -> str:
        r = self.http.get("/version")
        r.raise_for_status()
        return r.text.strip()

    def create_proxy(self, name: str, listen: str, upstream: str) -> dict:
        return self._call("POST", "/proxies", json={"name": name, "listen": listen, "upstream": upstream,
                                                    "enabled": True})

    def proxies(self) -> dict:
        return self._call("GET", "/proxies")

    def set_enabled(self, proxy: str, enabled: bool) -> None:
        self._call("POST", f"/proxies/{proxy}", json={"enabled": enabled})

    def add_toxic(self, proxy: str, fault: Fault) -> None:
        p = fault.params
        self._call("POST", f"/proxies/{proxy}/toxics", json={
            "name": fault.id, "type": fault.spec.toxic, "stream": p["direction"],
            "toxicity": p["toxicity"], "attributes": _TOXIC_ATTRIBUTES[fault.kind](p)})

    def remove_toxic(self, proxy: str, name: str) -> None:
        self._call("DELETE", f"/proxies/{proxy}/toxics/{name}")

    def apply(self, fault: Fault) -> None:
        if fault.kind == "proxy_down":
            self.set_enabled(fault.target, False)
        else:
            self.add_toxic(fault.target, fault)

    def unapply(self, fault: Fault) -> None:
        if fault.kind == "proxy_down":
            self.set_enabled(fault.target, True)
        else:
            self.remove_toxic(fault.target, fault.id)

    def reset(self) -> None:
        """Enable every proxy and remove every toxic."""
        self._call("POST", "/reset")

    def close(self) -> None:
        self.http.close()
