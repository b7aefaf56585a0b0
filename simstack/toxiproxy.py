"""The one adapter between simstack and Toxiproxy's HTTP API.

simstack talks to the API directly (httpx, with timeouts) rather than through
toxiproxy-python: that client keeps host and port in class-level globals (one
server per process) and has no timeouts nor toxic updates, while a test run
may drive several stacks at once.

Known Toxiproxy behaviour (upstream issue #558, still open in v2.12.0): removing a
latency or bandwidth toxic while it holds data for a connection whose client has
already gone blocks the whole API for 5 s per stuck direction (10 s measured for a
WebSocket upgrade held by 3 s of latency). Updating the toxic does not block, and
once it holds nothing back, removing it does not either: ``remove`` and ``reset``
therefore release such toxics (no delay, unlimited rate) before deleting them.
The scenario runner also lets held data drain first (see ``drain_s``).
"""
from __future__ import annotations

import httpx

from .shared.errors import SimstackError
from .shared.faults import Fault

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
    return max(((f.params["latency_ms"] + f.params["jitter_ms"]) / 1000 for f in faults if f.kind == "latency"),
               default=0.0)


# Attributes that make a holding toxic hold nothing, so removing it cannot block (#558).
_RELEASED = {"latency": {"latency": 0, "jitter": 0}, "bandwidth": {"rate": 1_000_000_000}}


def _toxic_name(kind: str, fault_id: str) -> str:
    """Toxics are named ``kind:id``, so listing can say which fault kind each one is."""
    return f"{kind}:{fault_id}"


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

    def create_proxy(self, name: str, listen: str, upstream: str) -> dict:
        return self._call("POST", "/proxies", json={"name": name, "listen": listen, "upstream": upstream,
                                                    "enabled": True})

    def proxies(self) -> dict:
        return self._call("GET", "/proxies")

    def set_enabled(self, proxy: str, enabled: bool) -> None:
        self._call("POST", f"/proxies/{proxy}", json={"enabled": enabled})

    def apply(self, fault: Fault) -> None:
        """A network fault: a toxic on the target's proxy, or the proxy disabled (proxy_down)."""
        if fault.kind == "proxy_down":
            self.set_enabled(fault.target, False)
            return
        p = fault.params
        self._call("POST", f"/proxies/{fault.target}/toxics", json={
            "name": _toxic_name(fault.kind, fault.id), "type": fault.spec.toxic, "stream": p["direction"],
            "toxicity": p["toxicity"], "attributes": _TOXIC_ATTRIBUTES[fault.kind](p)})

    def remove(self, kind: str, target: str, fault_id: str) -> None:
        if kind == "proxy_down":
            self.set_enabled(target, True)
            return
        path = f"/proxies/{target}/toxics/{_toxic_name(kind, fault_id)}"
        if kind in _RELEASED:
            self._call("POST", path, json={"attributes": _RELEASED[kind]})
        self._call("DELETE", path)

    def faults(self) -> list[dict]:
        """The network faults in force, in FaultControl.list's form."""
        out = []
        for name, proxy in self.proxies().items():
            if not proxy["enabled"]:
                out.append({"id": f"proxy_down-{name}", "kind": "proxy_down", "target": name, "params": {},
                            "layer": "network"})
            for t in proxy.get("toxics", []):
                kind, _, fid = t["name"].partition(":")
                out.append({"id": fid, "kind": kind, "target": name, "layer": "network",
                            "params": {"stream": t["stream"], "toxicity": t["toxicity"], **t["attributes"]}})
        return out

    def reset(self) -> None:
        """Enable every proxy and remove every toxic (holding ones released first, see #558 above)."""
        for name, proxy in self.proxies().items():
            for t in proxy.get("toxics", []):
                if t.get("type") in _RELEASED:
                    self._call("POST", f"/proxies/{name}/toxics/{t['name']}", json={"attributes": _RELEASED[t["type"]]})
        self._call("POST", "/reset")

    def close(self) -> None:
        self.http.close()
