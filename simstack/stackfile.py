"""The stack file a team commits once (``simstack.yaml``): which services are theirs, how to run or
reach them, what they call and how they are told where it is.

    services:
      api:
        cmd: uvicorn myapp:app --port {port}      # or url: http://127.0.0.1:9000 (already running),
                                                  # or image: myorg/backend:fix + port: 8000 (docker mode)
        health: /health                           # default /health
        depends:
          redis: 127.0.0.1:6379                   # behind a Toxiproxy listener, fault target dep:redis
          auth: auth                              # a service of this stack (its stand-in, or yours)
        env:
          REDIS_URL: redis://{dep.redis}
    redirect:                                     # hard-coded staging hosts -> the stack (like --simstack-redirect)
      api.staging.example.com: api

Either field may be left out: a file with only ``redirect:`` is valid. Used by ``simstack up -f FILE``,
``simstack scenario run -f FILE`` and the pytest plugin's ``--simstack-file`` (ini ``simstack_file``).
A service not listed keeps its stand-in. A ``cmd`` runs in the file's directory, so a committed file
works wherever it is used from. Errors name the file, the field, the value and what is allowed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .own import SERVICES, OwnService
from .shared.errors import ConfigError

SERVICE_KEYS = ("url", "cmd", "image", "port", "health", "depends", "env")
TOP_KEYS = ("services", "redirect")


@dataclass
class StackFile:
    services: list[OwnService] = field(default_factory=list)
    redirects: list[tuple[str, str]] = field(default_factory=list)   # (HOST=SERVICE, where) for parse_redirects


def load(path: str | Path) -> list[OwnService]:
    """The file's services of your own (callers that also want its redirects use :func:`read`)."""
    return read(path).services


def read(path: str | Path) -> StackFile:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"stack file {path}: cannot be read ({exc.strerror})",
                          "give the path of your simstack.yaml") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"stack file {path}: not valid YAML: {exc}", "fix the syntax") from None
    return StackFile(parse(data, str(path), cwd=str(path.resolve().parent)), parse_redirect_field(data, str(path)))


def parse_redirect_field(data: Any, where: str) -> list[tuple[str, str]]:
    """``redirect: {HOST: SERVICE}`` as ``(HOST=SERVICE, where)`` pairs, checked like --simstack-redirect."""
    from .redirect import SERVICES as TARGETS, parse_redirects
    _mapping(data, where, TOP_KEYS)
    value, at = data.get("redirect") or {}, f"{where}: redirect"
    if not isinstance(value, dict):
        raise ConfigError(f"{at}: expected a mapping of hosts to services, got {value!r}",
                          f"e.g. {_EXAMPLES['redirect']}")
    specs = []
    for host, service in value.items():
        if not isinstance(host, str) or not isinstance(service, str) or "=" in host:
            raise ConfigError(f"{at}: {host!r}: {service!r} is not HOST: SERVICE",
                              f"SERVICE one of {', '.join(TARGETS)}, e.g. {_EXAMPLES['redirect']}")
        specs.append((f"{host}={service}", at))
    parse_redirects(specs)        # the same rules and messages as the command line
    return specs


def parse(data: Any, where: str, cwd: str | None = None) -> list[OwnService]:
    _mapping(data, where, TOP_KEYS)
    services = data.get("services") or {}
    _mapping(services, f"{where}: services", SERVICES)
    out = []
    for name, spec in services.items():
        at = f"{where}: services.{name}"
        _mapping(spec, at, SERVICE_KEYS)
        if "port" in spec and (not isinstance(spec["port"], int) or isinstance(spec["port"], bool)):
            raise ConfigError(f"{at}.port: {spec['port']!r} is not a port number", "e.g. port: 8000")
        for key in ("url", "cmd", "image", "health"):
            if key in spec and not isinstance(spec[key], str):
                raise ConfigError(f"{at}.{key}: {spec[key]!r} is not a string", f"e.g. {_EXAMPLES[key]}")
        depends, env = spec.get("depends") or {}, spec.get("env") or {}
        for key, value in (("depends", depends), ("env", env)):
            if not isinstance(value, dict) or not all(isinstance(v, (str, int)) for v in value.values()):
                raise ConfigError(f"{at}.{key}: {value!r} is not a mapping of names to strings",
                                  f"e.g. {key}: {{{_EXAMPLES[key]}}}")
        try:
            out.append(OwnService(name, url=spec.get("url"), cmd=spec.get("cmd"), image=spec.get("image"),
                                  port=spec.get("port", 8000), health=spec.get("health", "/health"),
                                  deps={str(k): str(v) for k, v in depends.items()},
                                  env={str(k): str(v) for k, v in env.items()}, cwd=cwd))
        except ConfigError as exc:
            raise ConfigError(f"{at}: {exc.message}", exc.hint) from None
    return out


_EXAMPLES = {"url": "url: http://127.0.0.1:9000", "cmd": "cmd: uvicorn myapp:app --port {port}",
             "image": "image: myorg/backend:fix",
             "health": "health: /health", "depends": "redis: 127.0.0.1:6379", "env": "REDIS_URL: redis://{dep.redis}",
             "redirect": "redirect: {api.staging.example.com: api}"}


def _mapping(value: Any, where: str, allowed: tuple[str, ...]) -> None:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping, got {value!r}", f"keys: {', '.join(allowed)}")
    extra = sorted((k for k in value if k not in allowed), key=str)
    if extra:
        raise ConfigError(f"{where}: unknown field {extra[0]!r} (value {value[extra[0]]!r})",
                          f"allowed fields: {', '.join(allowed)}")
