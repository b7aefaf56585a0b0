"""simstack runs a real, standard Toxiproxy: its official Python client sees the proxies."""
from __future__ import annotations

from urllib.parse import urlsplit

from toxiproxy.api import APIConsumer
from toxiproxy.server import Toxiproxy


def test_the_toxiproxy_python_client_sees_simstacks_proxies_and_toxics(stack, monkeypatch):
    url = urlsplit(stack.endpoints.toxiproxy_url)
    monkeypatch.setattr(APIConsumer, "host", url.hostname)   # the client keeps its server in class globals
    monkeypatch.setattr(APIConsumer, "port", url.port)
    fault = stack.faults.add("latency", target="ws", latency_ms=5)

    server = Toxiproxy()
    assert server.running()
    assert b"2.12.0" in server.version()
    proxies = server.proxies()
    assert {"api", "ws", "auth"} <= set(proxies)
    for name, public in (("api", stack.endpoints.api_url), ("ws", stack.endpoints.ws_url),
                         ("auth", stack.endpoints.auth_url)):
        assert proxies[name].enabled
        assert stack.launcher.host_port(name, proxies[name].listen) == urlsplit(public).port
    assert proxies["ws"].upstream == proxies["api"].upstream          # same api stand-in behind both
    assert [t.type for t in proxies["ws"].toxics().values()] == ["latency"]
    assert f"latency:{fault.id}" in proxies["ws"].toxics()
