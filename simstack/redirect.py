"""Redirect hard-coded staging hostnames to a stack, in this process, over TLS, with no edits.

    redirects = parse_redirects([("api.staging.example.com=api", "--simstack-redirect"),
                                 ("auth.staging.example.com=auth", "--simstack-redirect")])
    active = Redirection.start(redirects, stack.endpoints)    # resolver patched, front serving, CA trusted
    os.environ.update(active.env)                             # SSL_CERT_FILE, REQUESTS_CA_BUNDLE, NODE_EXTRA_CA_CERTS
    ...
    active.stop()

Three parts:

- **the resolver**: ``socket.getaddrinfo`` answers a listed host with a loopback address of its own,
  and a connect to that address, whatever the port (443, 80 or explicit), goes to the host's front
  (:class:`Resolver`). Every client that resolves and connects through Python's ``socket`` follows:
  httpx (sync, and async through anyio), requests/urllib3, urllib, websockets (sync and asyncio),
  aiohttp's default ThreadedResolver. A name that is not listed goes to the real resolver untouched.
- **the front**: one loopback listener per listed host, served by an asyncio loop in a thread. It
  terminates TLS when the client starts with a TLS ClientHello (plain HTTP is served as is), reads the
  request head, and splices bytes to the stack's Toxiproxy listener for the host's service; for an
  ``api`` host, a WebSocket upgrade goes to the ``ws`` listener, so network faults on ``ws`` still hit
  only WebSockets. The route is chosen by the connection's first request.
- **trust**: a throwaway CA (:mod:`simstack.tls`) with one certificate per listed host.

When the stack is gone (its Toxiproxy stops answering), a listed host fails loudly, never falling through
to the real host: the request that finds it gone gets a 502 whose JSON body names simstack, and from
then on resolution raises ``ConnectionRefusedError`` naming simstack.
"""
from __future__ import annotations

import asyncio
import errno
import ipaddress
import json
import os
import re
import socket
import ssl
import struct
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

from .endpoints import Endpoints
from .shared.errors import ConfigError
from .tls import ThrowawayCA, trust_in_process

_REAL_GETADDRINFO = socket.getaddrinfo

SERVICES = ("api", "ws", "auth")       # what a host can be redirected to: the stack's public endpoints
LOOPBACK = "127.0.0.1"
FAKE_BASE = ipaddress.IPv4Address("127.77.13.0")   # listed hosts resolve to FAKE_BASE+1, +2, ...
HEAD_LIMIT = 64 * 1024                 # a longer request head is passed to the api listener unread
FIRST_BYTE_TIMEOUT_S = 30.0
_TLS_HANDSHAKE = 0x16                  # the first byte of a TLS record carrying a ClientHello
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)\Z")
ALLOWED = ("HOST=SERVICE with SERVICE one of " + ", ".join(SERVICES)
           + ", e.g. api.staging.example.com=api (a hostname, no scheme, port or wildcard)")


@dataclass(frozen=True)
class Redirect:
    host: str          # lower case, no trailing dot, A-labels
    service: str       # api | ws | auth


def parse_redirect(spec: str, where: str) -> Redirect:
    """``HOST=SERVICE``; a ConfigError names the value and what is allowed."""
    host, eq, service = spec.partition("=")
    host, service = host.strip(), service.strip()
    if not eq or not host or not service:
        raise ConfigError(f"{where}: {spec!r} is not HOST=SERVICE", ALLOWED)
    if service not in SERVICES:
        raise ConfigError(f"{where}: unknown service {service!r} in {spec!r}",
                          f"redirect a host to one of {', '.join(SERVICES)}")
    return Redirect(_hostname(host, spec, where), service)


def _hostname(host: str, spec: str, where: str) -> str:
    if "://" in host or "/" in host:
        raise ConfigError(f"{where}: {host!r} in {spec!r} is a URL, not a hostname",
                          f"give the bare hostname, e.g. {urlsplit(host).hostname or 'api.staging.example.com'}={spec.rpartition('=')[2].strip()}")
    if "*" in host:
        raise ConfigError(f"{where}: wildcard {host!r} in {spec!r} is not supported",
                          "list each staging host the suite uses, one redirect each")
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    else:
        raise ConfigError(f"{where}: {host!r} in {spec!r} is an IP address",
                          "redirect the hostname the suite's URLs name (an address is never resolved); "
                          "for a suite that uses an address, use --simstack-env or --simstack-override")
    if ":" in host:
        raise ConfigError(f"{where}: {host!r} in {spec!r} has a port",
                          "give the host without a port: every port of a redirected host reaches the stack")
    name = host.rstrip(".").lower()
    try:
        name = name.encode("idna").decode("ascii")
    except UnicodeError:
        pass
    if name in ("localhost",) or name.endswith(".localhost") or not all(_LABEL.match(p) for p in name.split(".")):
        raise ConfigError(f"{where}: {host!r} in {spec!r} is not a hostname simstack can redirect",
                          "give a DNS name such as api.staging.example.com (letters, digits, '-' and dots; "
                          "not localhost, where the stack itself listens)")
    return name


def parse_redirects(specs: list[tuple[str, str]]) -> list[Redirect]:
    """``(spec, where)`` pairs to redirects; the same host twice with different services is an error."""
    out: dict[str, tuple[Redirect, str]] = {}
    for spec, where in specs:
        r = parse_redirect(spec, where)
        if r.host in out and out[r.host][0].service != r.service:
            first, first_where = out[r.host]
            raise ConfigError(f"{where}: {r.host} is redirected twice, to {first.service!r} ({first_where}) "
                              f"and to {r.service!r}",
                              "a host reaches one service; for WebSockets on the api host use api "
                              "(upgrades go to the ws listener by themselves)")
        out.setdefault(r.host, (r, where))
    return [r for r, _ in out.values()]


def _hostport(url: str) -> tuple[str, int]:
    u = urlsplit(url)
    return u.hostname, u.port


def listeners(endpoints: Endpoints) -> dict[str, tuple[str, int]]:
    """The stack's Toxiproxy listener of each service a host can be redirected to."""
    return {"api": _hostport(endpoints.api_url), "ws": _hostport(endpoints.ws_url),
            "auth": _hostport(endpoints.auth_url)}


# ------------------------------------------------------------------ the front

class Front:
    """Loopback listeners, one per redirected host, in an asyncio loop on a thread of their own.

    ``also`` names extra addresses a host listens on (``simstack up --redirect`` as root: port 443 and
    80 on an address of its own, for /etc/hosts)."""

    def __init__(self, redirects: list[Redirect], endpoints: Endpoints, ca: ThrowawayCA,
                 also: dict[str, list[tuple[str, int]]] | None = None):
        self.redirects = redirects
        self.upstream = listeners(endpoints)
        self.toxiproxy = _hostport(endpoints.toxiproxy_url)
        self.ca = ca
        self.ports: dict[str, int] = {}                     # host -> its port on 127.0.0.1
        self.also: dict[str, list[tuple[str, int]]] = {}    # host -> further addresses it listens on
        self.gone: str | None = None                        # why the stack is known to be gone
        self._sockets: list[tuple[socket.socket, Redirect]] = []
        try:
            for r in redirects:
                for addr in [(LOOPBACK, 0), *(also or {}).get(r.host, [])]:
                    sock = socket.create_server(addr)
                    sock.setblocking(False)
                    self._sockets.append((sock, r))
                    if addr[1] == 0:
                        self.ports[r.host] = sock.getsockname()[1]
                    else:
                        self.also.setdefault(r.host, []).append(addr)
        except BaseException:
            self._close_sockets()
            raise
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="simstack-redirect", daemon=True)
        self._tasks: set[asyncio.Task] = set()

    def start(self) -> "Front":
        contexts = {r.host: self.ca.server_context(r.host) for r in self.redirects}
        self._thread.start()
        for sock, r in self._sockets:
            self._loop.call_soon_threadsafe(self._spawn, self._accept(sock, r, contexts[r.host]))
        return self

    def _spawn(self, coro) -> None:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, listener: socket.socket, r: Redirect, tls: ssl.SSLContext) -> None:
        while True:
            sock, _ = await self._loop.sock_accept(listener)
            # asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP, and accepted ones say 0:
            # without it, Nagle held the first response behind TLS 1.3's session tickets for a delayed ACK (40 ms)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._spawn(self._serve(sock, r, tls))

    async def _serve(self, sock: socket.socket, r: Redirect, tls: ssl.SSLContext) -> None:
        writer = None
        try:
            first = await self._first_byte(sock)
            if not first:
                sock.close()
                return
            reader = asyncio.StreamReader(limit=HEAD_LIMIT, loop=self._loop)
            protocol = asyncio.StreamReaderProtocol(reader, loop=self._loop)
            use_tls = tls if first[0] == _TLS_HANDSHAKE else None
            transport, _ = await self._loop.connect_accepted_socket(
                lambda: protocol, sock, ssl=use_tls, ssl_handshake_timeout=10 if use_tls else None)
            writer = asyncio.StreamWriter(transport, protocol, reader, self._loop)
            head, service = b"", r.service
            if r.service == "api":
                head = await _read_head(reader)
                if _is_websocket_upgrade(head):
                    service = "ws"
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.upstream[service])
            except ConnectionRefusedError:
                # the proxy_down fault: reset, as close as a front can come to a refusal. The stack
                # gone: a 502 that says so. Either way, never an answer from anywhere else.
                await self._check_stack()
                if self.gone:
                    writer.write(_gone_response(r, self.gone))
                    await writer.drain()
                    writer.close()
                else:
                    _reset(writer)
                return
            up_writer.write(head)
            await _splice(reader, writer, up_reader, up_writer)
        except (OSError, asyncio.TimeoutError, asyncio.CancelledError):
            # a client that left, a failed TLS handshake (e.g. it does not trust the CA), or shutdown
            if writer is not None:
                writer.transport.abort()
            else:
                sock.close()

    async def _first_byte(self, sock: socket.socket) -> bytes:
        """The first byte the client sent, left in the socket (TLS or plain is decided on it)."""
        ready = self._loop.create_future()
        self._loop.add_reader(sock.fileno(), lambda: ready.done() or ready.set_result(None))
        try:
            await asyncio.wait_for(ready, FIRST_BYTE_TIMEOUT_S)
        finally:
            self._loop.remove_reader(sock.fileno())
        return sock.recv(1, socket.MSG_PEEK)

    async def _check_stack(self) -> None:
        """After a refusal: if Toxiproxy's API does not answer either, the stack is gone."""
        try:
            _, w = await asyncio.wait_for(asyncio.open_connection(*self.toxiproxy), 1.0)
            w.close()
        except (OSError, asyncio.TimeoutError):
            self.gone = (f"its Toxiproxy ({self.toxiproxy[0]}:{self.toxiproxy[1]}) does not answer: "
                         "the stack is not running")

    def stop(self) -> None:
        if self._thread.is_alive():
            async def cancel_all():
                for t in list(self._tasks):
                    t.cancel()
                await asyncio.gather(*self._tasks, return_exceptions=True)
            try:
                asyncio.run_coroutine_threadsafe(cancel_all(), self._loop).result(5)
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()
        self._close_sockets()

    def _close_sockets(self) -> None:
        for sock, _ in self._sockets:
            sock.close()


async def _read_head(reader: asyncio.StreamReader) -> bytes:
    """The bytes up to the end of the first request head (or HEAD_LIMIT bytes, or what came before EOF)."""
    buf = b""
    while b"\r\n\r\n" not in buf and len(buf) < HEAD_LIMIT:
        chunk = await reader.read(HEAD_LIMIT)
        if not chunk:
            break
        buf += chunk
    return buf


def _is_websocket_upgrade(head: bytes) -> bool:
    for line in head.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"upgrade" and b"websocket" in value.lower():
            return True
    return False


def _gone_response(r: Redirect, why: str) -> bytes:
    body = json.dumps({"detail": f"simstack: {r.host} is redirected to the simstack stack ({r.service}), but {why}",
                       "error_code": "SIMSTACK_NOT_RUNNING"}).encode()
    return (b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: application/json\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body))


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset, as the other side did."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, half_close: bool) -> None:
    """Copy until EOF; an end with an error (a reset) is passed on as a reset."""
    while True:
        try:
            data = await src.read(65536)
        except OSError:
            _reset(dst)
            return
        if not data:
            break
        try:
            dst.write(data)
            await dst.drain()
        except OSError:        # dst went away: the other direction reads that and passes it on
            return
    if half_close and dst.can_write_eof():
        dst.write_eof()
    else:
        dst.close()


async def _splice(reader, writer, up_reader, up_writer) -> None:
    """Both directions until both are done; the client's EOF half-closes towards the stack."""
    try:
        await asyncio.gather(_pipe(reader, up_writer, half_close=True), _pipe(up_reader, writer, half_close=False))
    finally:
        for w in (writer, up_writer):
            if not w.transport.is_closing():
                w.close()


# ------------------------------------------------------------------ the resolver

class Resolver:
    """Name resolution and connects of this process, for the listed hosts only.

    ``socket.getaddrinfo`` answers a listed host with an address of its own in 127.77.13.0/24 and the
    port asked for, as a real resolver would; ``socket.socket.connect``/``connect_ex`` take a connect to
    that address, whatever the port, to the host's front. Both steps are needed because clients differ
    in which port they use after resolving: aiohttp and ``socket.create_connection`` use the port in the
    answer, anyio (httpx's async backend) the one from the URL. A client that connects outside Python's
    socket objects (uvloop's own resolver) meets a closed loopback port: refused, never the real host.
    """

    def __init__(self, front: Front):
        self.front = front
        self.routes = {r.host: r for r in front.redirects}
        self.address = {r.host: str(FAKE_BASE + i + 1) for i, r in enumerate(front.redirects)}
        self._by_address = {a: h for h, a in self.address.items()}
        self._real: tuple | None = None

    def install(self) -> None:
        self._real = (socket.getaddrinfo, socket.socket.connect, socket.socket.connect_ex)
        resolver = self

        def connect(sock, address):
            return resolver._real[1](sock, resolver._target(address))

        def connect_ex(sock, address):
            return resolver._real[2](sock, resolver._target(address))
        socket.getaddrinfo = self.getaddrinfo
        socket.socket.connect, socket.socket.connect_ex = connect, connect_ex

    def uninstall(self) -> None:
        if self._real is not None:
            socket.getaddrinfo, socket.socket.connect, socket.socket.connect_ex = self._real
        self._real = None

    def _refuse(self, r: Redirect) -> ConnectionRefusedError:
        return ConnectionRefusedError(
            errno.ECONNREFUSED,
            f"simstack: {r.host} is redirected to the simstack stack ({r.service}), but "
            f"{self.front.gone}; start it (pytest --simstack=local, or "
            "`simstack up --detach` with --simstack-attach), or drop the redirect to reach the real host")

    def _target(self, address):
        host = self._by_address.get(address[0]) if isinstance(address, tuple) and len(address) >= 2 else None
        if host is None:
            return address
        if self.front.gone:
            raise self._refuse(self.routes[host])
        return (LOOPBACK, self.front.ports[host])

    def getaddrinfo(self, host, port, family=0, type=0, proto=0, flags=0):
        name = host.decode("ascii", "replace") if isinstance(host, (bytes, bytearray)) else host
        r = self.routes.get(name.rstrip(".").lower()) if isinstance(name, str) else None
        if r is None or self._real is None:
            return (self._real[0] if self._real else _REAL_GETADDRINFO)(host, port, family, type, proto, flags)
        if self.front.gone:
            raise self._refuse(r)
        if family not in (0, socket.AF_INET):
            raise socket.gaierror(socket.EAI_FAMILY, f"simstack: {r.host} is redirected to an IPv4 loopback address")
        if type not in (0, socket.SOCK_STREAM):
            raise socket.gaierror(socket.EAI_SOCKTYPE, f"simstack: {r.host} is redirected over TCP only")
        if isinstance(port, (bytes, bytearray)):
            port = port.decode()
        if isinstance(port, str):
            port = int(port) if port.isdigit() else socket.getservbyname(port, "tcp")
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (self.address[r.host], port or 0))]


def _free(addr: tuple[str, int]) -> bool:
    try:
        with socket.create_server(addr):
            return True
    except OSError:
        return False


# ------------------------------------------------------------------ the whole of it

class Redirection:
    """Resolver + front + trusted CA for one stack, in this process; :meth:`stop` undoes all of it."""

    def __init__(self, redirects: list[Redirect], endpoints: Endpoints,
                 also: dict[str, list[tuple[str, int]]] | None = None):
        self.redirects = redirects
        self.ca = ThrowawayCA.create([r.host for r in redirects])
        try:
            self.front = Front(redirects, endpoints, self.ca, also)
        except BaseException:
            self.ca.close()
            raise
        self.resolver = Resolver(self.front)
        self._untrust = None

    @classmethod
    def start(cls, redirects: list[Redirect], endpoints: Endpoints) -> "Redirection":
        self = cls(redirects, endpoints)
        try:
            self.front.start()
            self._untrust = trust_in_process(self.ca)
            self.resolver.install()
        except BaseException:
            self.stop()
            raise
        return self

    @classmethod
    def serve(cls, redirects: list[Redirect], endpoints: Endpoints) -> "Redirection":
        """The front and the CA only, for clients outside this process (``simstack up --redirect``).

        As root, each host also listens on ports 443 and 80 of its own loopback address, so an
        /etc/hosts line sends any client there; an address already taken (another stack) is skipped."""
        also: dict[str, list[tuple[str, int]]] = {}
        if os.geteuid() == 0:
            for i, r in enumerate(redirects):
                also[r.host] = [a for a in ((str(FAKE_BASE + i + 1), 443), (str(FAKE_BASE + i + 1), 80)) if _free(a)]
        self = cls(redirects, endpoints, also)
        try:
            self.front.start()
        except BaseException:
            self.stop()
            raise
        return self

    def record(self) -> dict:
        """What a state record keeps, so ``simstack env --redirect`` can tell clients how to get here."""
        return {"ca": str(self.ca.ca_pem), "bundle": str(self.ca.bundle),
                "hosts": {r.host: {"service": r.service, "port": self.front.ports[r.host],
                                   "also": [list(a) for a in self.front.also.get(r.host, [])]}
                          for r in self.redirects}}

    @property
    def env(self) -> dict[str, str]:
        """Variables to export: the CA bundle for this process's clients and its child processes."""
        return self.ca.client_env()

    def describe(self) -> list[str]:
        return [f"{r.host} -> {r.service} (front 127.0.0.1:{self.front.ports[r.host]})" for r in self.redirects]

    def stop(self) -> None:
        self.resolver.uninstall()
        if self._untrust is not None:
            self._untrust()
            self._untrust = None
        self.front.stop()
        self.ca.close()


def env_lines(record: dict | None, redirects: list[Redirect]) -> list[str]:
    """``simstack env --redirect``: what a client outside pytest needs to reach the stack's fronts.
    Changes nothing on the system; the /etc/hosts lines are printed as comments."""
    served = (record or {}).get("hosts", {})
    missing = [r for r in redirects if served.get(r.host, {}).get("service") != r.service]
    if missing:
        have = ", ".join(f"{h}={v['service']}" for h, v in served.items()) or "none"
        want = " ".join(f"--redirect {r.host}={r.service}" for r in redirects)
        raise ConfigError(f"the running stack does not serve {', '.join(f'{r.host}={r.service}' for r in missing)} "
                          f"(it serves: {have})", f"start it with `simstack up --detach {want}`")
    ca = ThrowawayCA.env_for(record["bundle"], record["ca"])
    lines = [f"export {k}={v}" for k, v in ca.items()]
    hosts = []
    for r in redirects:
        h = served[r.host]
        ws = "; WebSocket upgrades go to ws" if r.service == "api" else ""
        lines.append(f"# {r.host} -> {r.service} (TLS or plain HTTP{ws}): 127.0.0.1:{h['port']}, e.g.")
        lines.append(f"#   curl --cacert {record['ca']} --resolve {r.host}:443:127.0.0.1:{h['port']} https://{r.host}/health")
        hosts += [f"# {addr} {r.host}" for addr in sorted({a for a, _ in h["also"]})]
    if hosts:
        lines.append("# /etc/hosts lines (not applied; as root, add them to send every client on this machine "
                     "to the stack on ports 443 and 80):")
        lines += hosts
    else:
        lines.append("# no /etc/hosts lines: only a stack started as root listens on ports 443 and 80")
    return lines
