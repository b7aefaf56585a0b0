"""Waiting until something answers over HTTP: one wait strategy, as Testcontainers has them.

Start-up waits for Toxiproxy's API (both launchers) and for every endpoint through its proxy (the
stack). Each caller says what to poll and what to do about a process that died meanwhile; the
polling, the deadline and the last error seen per URL live here.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import httpx


class NotReady(Exception):
    """The deadline passed; ``last`` holds, per name still pending, the last error seen."""

    def __init__(self, last: dict[str, str]):
        super().__init__(", ".join(f"{name} ({error})" for name, error in last.items()))
        self.last = last


def _is_200(response: httpx.Response) -> bool:
    return response.status_code == 200


@dataclass(frozen=True)
class UntilAnswers:
    """Poll GET on named URLs until each answers as ``ready`` says (default: 200), or until ``timeout``
    seconds have passed."""
    timeout: float
    interval: float = 0.02
    request_timeout: float = 1.0
    headers: Mapping[str, str] = field(default_factory=dict)
    ready: Callable[[httpx.Response], bool] = _is_200

    def wait(self, urls: Mapping[str, str], check: Callable[[dict[str, str]], None] | None = None) -> None:
        """Return once every URL answered ready. Between rounds ``check(last)`` runs with the last error
        seen per pending name and may raise (e.g. a process exited); at the deadline :class:`NotReady`
        is raised."""
        pending, last = dict(urls), {name: "no answer yet" for name in urls}
        deadline = time.monotonic() + self.timeout
        with httpx.Client(timeout=self.request_timeout, trust_env=False, headers=dict(self.headers)) as http:
            while True:
                for name, url in list(pending.items()):
                    try:
                        r = http.get(url)
                    except httpx.HTTPError as exc:   # e.g. docker-proxy accepts before Toxiproxy listens
                        last[name] = exc.__class__.__name__
                        continue
                    if self.ready(r):
                        del pending[name]
                    else:
                        last[name] = f"HTTP {r.status_code}"
                if not pending:
                    return
                if check is not None:
                    check({name: last[name] for name in pending})
                if time.monotonic() > deadline:
                    raise NotReady({name: last[name] for name in pending})
                time.sleep(self.interval)
