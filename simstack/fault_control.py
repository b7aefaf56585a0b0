"""``FaultControl``: apply, list, remove and reset faults on a running stack, and read its timeline.

Network faults go to Toxiproxy (:mod:`simstack.toxiproxy`), protocol faults to the stand-ins' admin API.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Iterable

import httpx

from .endpoints import Endpoints
from .shared.constants import ADMIN_HEADER, ADMIN_PREFIX
from .shared.errors import ConfigError, SimstackError
from .shared.faults import DEP_PREFIX, NETWORK, Fault
from .toxiproxy import Toxiproxy


class FaultControl:
    """Apply, list, remove and reset faults on a running stack, without a restart.
    Works the same for a stack this process started and one found via ``simstack up --detach``."""

    def __init__(self, endpoints: Endpoints):
        self.endpoints = endpoints
        self.http = httpx.Client(timeout=10.0, trust_env=False, headers={ADMIN_HEADER: endpoints.admin_key})
        self.toxi = Toxiproxy(endpoints.toxiproxy_url)

    def _admin(self, target: str, method: str, path: str, **kw) -> httpx.Response:
        url = f"{self.endpoints.control_url(target)}{ADMIN_PREFIX}{path}"
        try:
            return self.http.request(method, url, **kw)
        except httpx.HTTPError as exc:
            raise SimstackError(f"the {target} stand-in did not answer {method} {path}: {exc}",
                                "is the stack still running? `simstack status`") from None

    def add(self, kind: str, target: str | None = None, trigger: Any = None, id: str | None = None,
            **params: Any) -> Fault:
        return self.apply([Fault.build(kind, target, trigger, id, **params)])[0]

    def apply(self, faults: Iterable[Fault | dict]) -> list[Fault]:
        """All or nothing: everything is validated first, and what was applied is rolled back on failure."""
        built = [_with_id(f if isinstance(f, Fault) else Fault.from_dict(f, where=f"faults[{i}]"))
                 for i, f in enumerate(faults)]
        ids = [f.id for f in built]
        taken = sorted({i for i in ids if ids.count(i) > 1} | (set(ids) & {f["id"] for f in self.list()}))
        if taken:
            raise ConfigError(f"fault id(s) already in use: {', '.join(map(repr, taken))}",
                              "give each fault its own id, or remove the active one first (`simstack fault rm ID`)")
        deps = [f.target for f in built if f.target.startswith(DEP_PREFIX)]
        if deps:
            have = sorted(n for n in self.toxi.proxies() if n.startswith(DEP_PREFIX))
            missing = sorted(set(deps) - set(have))
            if missing:
                raise ConfigError(f"no dependency {', '.join(missing)} in this stack (its dependencies: "
                                  f"{', '.join(have) or 'none'})", "declare one with --api-dep NAME=HOST:PORT")
        done: list[Fault] = []
        try:
            for f in built:
                if f.layer == NETWORK:
                    self.toxi.apply(f)
                else:
                    r = self._admin(_standin(f.target), "POST", "/faults", json=f.to_dict())
                    if r.status_code != 200:
                        body = r.json()
                        raise ConfigError(body.get("message") or str(body.get("detail")), body.get("hint"))
                done.append(f)
        except BaseException:
            for f in reversed(done):
                self._unapply(f)
            raise
        return built

    def list(self) -> list[dict]:
        out = []
        for standin in ("api", "auth"):
            out += [{**f, "layer": "protocol"} for f in self._admin(standin, "GET", "/faults").json()["faults"]]
        return out + self.toxi.faults()

    def remove(self, fault_id: str) -> None:
        for f in self.list():
            if f["id"] == fault_id:
                if f["layer"] == "protocol":
                    self._admin(_standin(f["target"]), "DELETE", f"/faults/{fault_id}")
                else:
                    self.toxi.remove(f["kind"], f["target"], fault_id)
                return
        raise ConfigError(f"no fault with id {fault_id!r}", "`simstack fault ls` lists the active faults and ids")

    def reset(self) -> None:
        """Every endpoint back to healthy defaults."""
        for standin in ("api", "auth"):
            self._admin(standin, "POST", "/reset")
        self.toxi.reset()

    def _unapply(self, f: Fault) -> None:
        try:
            if f.layer == NETWORK:
                self.toxi.remove(f.kind, f.target, f.id)
            else:
                self._admin(_standin(f.target), "DELETE", f"/faults/{f.id}")
        except SimstackError:
            pass

    def publish_urls(self) -> None:
        """Tell the api stand-in the public URLs, so /api/discovery/services reports the proxies."""
        e = self.endpoints
        self._admin("api", "POST", "/urls", json={"api_url": e.api_url, "ws_url": e.ws_url, "auth_url": e.auth_url})

    def mark(self, label: str | None, session: str | None = None) -> None:
        """Attribute the traffic that follows to ``label`` (a test id) of ``session`` (whoever marks:
        a pytest session's nonce) in the timeline, so runs sharing a stack never count each other's."""
        for standin in ("api", "auth"):
            self._admin(standin, "POST", "/mark", json={"label": label, "session": session})

    def timeline(self, since: dict[str, int] | None = None, label: str | None = None,
                 session: str | None = None) -> tuple[list[dict], dict]:
        """Records from both stand-ins newer than ``since`` (per stand-in versions), optionally only those
        of ``label`` and ``session``; returns (records, versions)."""
        since = since or {}
        records, versions = [], {}
        for standin in ("api", "auth"):
            params = {"since": since.get(standin, 0)}
            if label is not None:
                params["label"] = label
            if session is not None:
                params["session"] = session
            body = self._admin(standin, "GET", "/timeline", params=params).json()
            versions[standin] = body["version"]
            records += [{**r, "service": standin} for r in body["records"]]
        records.sort(key=lambda r: r["started"])
        return records, versions

    def close(self) -> None:
        self.http.close()
        self.toxi.close()


def _with_id(f: Fault) -> Fault:
    """proxy_down is a proxy state, so its id is fixed (proxy_down-<target>); other faults keep theirs."""
    return replace(f, id=f"proxy_down-{f.target}") if f.kind == "proxy_down" else f


def _standin(target: str) -> str:
    return "auth" if target == "auth" else "api"
