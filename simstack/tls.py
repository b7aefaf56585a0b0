"""TLS for redirected staging hosts: a throwaway CA, a leaf certificate per host, and trust in it.

    ca = ThrowawayCA.create(["api.staging.example.com", "auth.staging.example.com"])
    ca.server_context("api.staging.example.com")   # what the redirect front serves for that host
    ca.client_env()                                 # SSL_CERT_FILE, REQUESTS_CA_BUNDLE, NODE_EXTRA_CA_CERTS
    undo = trust_in_process(ca)                     # certifi and contexts built before the variables were set

The CA and its certificates live only in a temporary directory that :meth:`ThrowawayCA.close` removes.
Its bundle holds the public roots the process trusted before (certifi, the system's file, a bundle the
user named in SSL_CERT_FILE or REQUESTS_CA_BUNDLE) plus the CA, so real hosts stay verifiable.
"""
from __future__ import annotations

import os
import shutil
import ssl
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import certifi
import trustme

from .state import private_tempdir

# The variables the standard clients read: OpenSSL (Python's ssl, curl) and httpx read SSL_CERT_FILE,
# requests reads REQUESTS_CA_BUNDLE, Node adds NODE_EXTRA_CA_CERTS to its own roots.
BUNDLE_VARS = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")
NODE_VAR = "NODE_EXTRA_CA_CERTS"


@dataclass
class ThrowawayCA:
    dir: Path
    ca_pem: Path                      # the CA certificate alone
    bundle: Path                      # public roots + the CA
    _leaves: dict[str, trustme.LeafCert] = field(default_factory=dict, repr=False)

    @classmethod
    def create(cls, hosts: Iterable[str]) -> "ThrowawayCA":
        """A new CA and one leaf certificate per host, valid for that name only."""
        ca = trustme.CA(organization_name="simstack throwaway CA")
        d = private_tempdir()   # marked with its owner: the next command removes it if the owner is killed
        try:
            ca_pem = d / "ca.pem"
            ca.cert_pem.write_to_path(str(ca_pem))
            bundle = d / "bundle.pem"
            bundle.write_bytes(b"\n".join(_public_roots()) + b"\n" + ca.cert_pem.bytes())
            out = cls(d, ca_pem, bundle)
            for host in hosts:
                leaf = ca.issue_cert(host)
                leaf.private_key_and_cert_chain_pem.write_to_path(str(d / f"{host}.pem"))
                out._leaves[host] = leaf
            return out
        except BaseException:
            shutil.rmtree(d, ignore_errors=True)
            raise

    def server_context(self, host: str) -> ssl.SSLContext:
        """A server context presenting ``host``'s certificate, HTTP/1.1 only (no h2 to splice)."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(self.dir / f"{host}.pem"))
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx

    def client_env(self) -> dict[str, str]:
        """What a client process needs to trust the CA (and still the public roots)."""
        return self.env_for(self.bundle, self.ca_pem)

    @staticmethod
    def env_for(bundle, ca_pem) -> dict[str, str]:
        return {**{v: str(bundle) for v in BUNDLE_VARS}, NODE_VAR: str(ca_pem)}

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _public_roots() -> list[bytes]:
    """The roots a client of this process trusts today, deduplicated by file."""
    paths = [certifi.where(), ssl.get_default_verify_paths().openssl_cafile,
             *(os.environ.get(v) for v in BUNDLE_VARS)]
    out, seen = [], set()
    for p in paths:
        if p and os.path.isfile(p) and os.path.realpath(p) not in seen:
            seen.add(os.path.realpath(p))
            out.append(Path(p).read_bytes().strip())
    return out


def trust_in_process(ca: ThrowawayCA) -> Callable[[], None]:
    """Make clients of this process that do not read the variables trust the CA too; returns the undo.

    - ``certifi.where()`` names the bundle (httpx with ``trust_env=False``, helper libraries that
      pass certifi's file themselves);
    - requests' default bundle path, computed when it was imported;
    - aiohttp's verified SSL context, built once when it was imported (before the plugin ran, if a
      plugin imported it), gets the CA added.
    Contexts created from now on by ``ssl.create_default_context()`` (urllib, websockets, aiohttp
    imported later) read SSL_CERT_FILE, which the caller exports (:meth:`ThrowawayCA.client_env`).
    """
    undo: list[Callable[[], None]] = []
    original_where = certifi.where
    certifi.where = lambda: str(ca.bundle)
    undo.append(lambda: setattr(certifi, "where", original_where))
    for module, attr in (("requests.utils", "DEFAULT_CA_BUNDLE_PATH"), ("requests.adapters", "DEFAULT_CA_BUNDLE_PATH")):
        mod = sys.modules.get(module)
        if mod is not None and hasattr(mod, attr):
            old = getattr(mod, attr)
            setattr(mod, attr, str(ca.bundle))
            undo.append(lambda mod=mod, attr=attr, old=old: setattr(mod, attr, old))
    aio = sys.modules.get("aiohttp.connector")
    ctx = getattr(aio, "_SSL_CONTEXT_VERIFIED", None)
    if isinstance(ctx, ssl.SSLContext):
        ctx.load_verify_locations(cafile=str(ca.ca_pem))   # cannot be removed again; it dies with the process

    def restore() -> None:
        for fn in reversed(undo):
            fn()
    return restore
