"""Record and replay wiring: what `simstack record`, `simstack up --replay` and the pytest plugin's
``--simstack-record``/``--simstack-replay`` give a :class:`~simstack.stack.Stack`.

- Recording: the upstreams are real services (``--api-url``, ``--auth-url``) behind the gateway;
  the gateway's recorder (:mod:`simstack.fakes.recorder`) writes the cassette.
- Replaying: the upstreams are cassette players (:mod:`simstack.fakes.replay`), run like services
  of yours behind Toxiproxy and the gateway, so faults apply on top.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from . import cassette
from .own import OwnService
from .services import PROTOCOLS
from .shared.errors import ConfigError

REPLAY_APP = "simstack.fakes.replay:from_env"


@dataclass
class RecordOptions:
    """Where a recording stack writes its cassette, and what else to redact."""
    out: str
    redact_headers: list[str] = field(default_factory=list)
    redact_keys: list[str] = field(default_factory=list)
    created: bool = False      # the directory did not exist before (removed again if nothing was recorded)

    @staticmethod
    def check_out(out: str) -> None:
        """The output directory is new, or holds no cassette file."""
        path = Path(out)
        if path.exists() and not path.is_dir():
            raise ConfigError(f"--out {out!r} is a file, not a directory", "give a new or empty directory")
        if path.is_dir():
            existing = cassette.files(path)
            if existing:
                raise ConfigError(f"--out {out!r} already holds a cassette ({len(existing)} file(s), e.g. "
                                  f"{existing[0].name}); recording would mix two runs",
                                  "give a new or empty directory, or remove the old cassette first")

    @classmethod
    def prepare(cls, out: str, redact_headers=(), redact_keys=()) -> "RecordOptions":
        """Check the output directory before anything starts, and create it."""
        cls.check_out(out)
        path = Path(out)
        created = not path.exists()
        path.mkdir(parents=True, exist_ok=True)
        return cls(str(path.resolve()), list(redact_headers), list(redact_keys), created)

    def env(self) -> dict[str, str]:
        from .fakes.recorder import ENV_RECORD_DIR, ENV_REDACT_HEADERS, ENV_REDACT_KEYS
        return {ENV_RECORD_DIR: self.out, ENV_REDACT_HEADERS: ",".join(self.redact_headers),
                ENV_REDACT_KEYS: ",".join(self.redact_keys)}

    def finish(self) -> str:
        """One line saying what was recorded; a directory this run created and left empty is removed."""
        if self.created and not cassette.files(self.out):
            shutil.rmtree(self.out, ignore_errors=True)
            return f"nothing was recorded; {self.out} removed"
        return cassette.summary(self.out)


@dataclass
class ReplayOptions:
    """What a replaying stack's gateways need: they answer HTTP from the cassette in-process."""
    directory: str
    speed: float = 1.0
    ignore: list[str] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        from .fakes.replay import ENV_DIR, ENV_IGNORE, ENV_SPEED
        return {ENV_DIR: self.directory, ENV_SPEED: str(self.speed), ENV_IGNORE: ",".join(self.ignore)}


def replaying(directory: str, speed: float = 1.0, ignore=()) -> dict:
    """``Stack`` keyword arguments that serve a cassette in place of the services it recorded."""
    own = replay_services(directory, speed, ignore)
    return {"own": own, "cassette": ReplayOptions(str(Path(directory).resolve()), speed, list(ignore))}


CHECK_TIMEOUT_S = 3.0


def check_target(option: str, url: str, health: str = "/health") -> None:
    """Before anything starts: the service to record answers its health path (any status below 500)."""
    import httpx
    from .shared.errors import StartError
    target = f"{url.rstrip('/')}{health}"
    try:
        r = httpx.get(target, timeout=CHECK_TIMEOUT_S, trust_env=False)
    except httpx.TimeoutException as exc:
        raise StartError(f"{option} {url}: the service accepted but did not answer {target} within "
                         f"{CHECK_TIMEOUT_S:.0f} s ({exc.__class__.__name__}); nothing was recorded",
                         "is it hanging or overloaded? check it answers, then record again") from None
    except httpx.HTTPError as exc:
        raise StartError(f"{option} {url}: {target} cannot be reached ({exc.__class__.__name__}: {exc}); "
                         "nothing was recorded", f"is the service up? fix {option}") from None
    if r.status_code >= 500:
        raise StartError(f"{option} {url}: {target} answered HTTP {r.status_code}; nothing was recorded",
                         "record while the service is healthy")


def replay_services(directory: str, speed: float = 1.0, ignore=()) -> list[OwnService]:
    """The cassette's players as services of yours: one per service it recorded (api, auth)."""
    if speed < 0:
        raise ConfigError(f"--replay-speed {speed!r} is negative", "1.0 replays recorded timing, 2.0 twice as fast, "
                          "0 without waiting")
    entries = cassette.load(directory)          # a bad or empty cassette stops here, before anything starts
    from .fakes.replay import ENV_DIR, ENV_IGNORE, ENV_SERVICE, ENV_SPEED, HEALTH_PATH
    path = str(Path(directory).resolve())
    out = []
    for name in ("api", "auth"):
        if not any(e.data["service"] == name for e in entries):
            continue
        cmd = " ".join([sys.executable, "-m", "simstack.fakes.serve", REPLAY_APP, "--factory", "--port", "{port}",
                        "--log-level", "warning", "--no-access-log", "--lifespan", "off", *PROTOCOLS])
        env = {ENV_DIR: _literal(path), ENV_SERVICE: name, ENV_SPEED: str(speed), ENV_IGNORE: _literal(",".join(ignore))}
        out.append(OwnService(name, cmd=cmd, health=HEALTH_PATH, env=env))
    return out


def _literal(text: str) -> str:
    """``text`` inside an environment template (where braces are template syntax)."""
    return text.replace("{", "{{").replace("}", "}}")


# ------------------------------------------------------------------ `simstack up` options

def add_replay_options(parser) -> None:
    g = parser.add_argument_group("replay a cassette (replaces the recorded services; local mode)")
    g.add_argument("--replay", metavar="DIR", help="serve this cassette as the api/auth upstream")
    g.add_argument("--replay-speed", type=float, default=1.0,
                   help="scale recorded gaps and latencies: 1.0 as recorded (default), 2.0 twice as fast, 0 no wait")
    g.add_argument("--replay-ignore", action="append", default=[], metavar="NAME",
                   help="a query name or frame field to ignore when matching (repeatable)")
    # set by `simstack record` (which runs `up`); not for direct use
    parser.add_argument("--record-out", help=argparse.SUPPRESS)
    parser.add_argument("--record-redact-header", action="append", default=[], help=argparse.SUPPRESS)
    parser.add_argument("--record-redact-key", action="append", default=[], help=argparse.SUPPRESS)


def add_record_options(parser) -> None:
    parser.add_argument("--out", required=True, metavar="DIR", help="the cassette directory to write (new or empty)")
    parser.add_argument("--redact-header", action="append", default=[], metavar="NAME",
                        help="also redact this header (Authorization, cookies, bypass keys are by default)")
    parser.add_argument("--redact-key", action="append", default=[], metavar="KEY",
                        help="also redact this JSON key (access_token, refresh_token, password, ... are by default)")


def stack_kwargs(args) -> dict:
    """``own``/``cassette`` for the Stack, from `simstack up`'s options."""
    kw: dict = {}
    if getattr(args, "replay", None):
        if getattr(args, "api_url", None) or getattr(args, "api_cmd", None) or getattr(args, "record_out", None):
            raise ConfigError("--replay serves the cassette in place of the recorded services",
                              "drop --api-url/--api-cmd (and --auth-*) when replaying")
        if getattr(args, "mode", "local") == "docker":
            raise ConfigError(f"--replay {args.replay!r} runs in local mode only (the cassette player is a local "
                              "process behind the gateway)", "use --mode local (or auto)")
        kw.update(replaying(args.replay, args.replay_speed, args.replay_ignore))
    if getattr(args, "record_out", None):
        kw["cassette"] = RecordOptions(args.record_out, args.record_redact_header, args.record_redact_key)
    return kw


def to_argv(args) -> list[str]:
    """The options again, for the detached `simstack up`."""
    argv = []
    if getattr(args, "replay", None):
        argv += ["--replay", args.replay, "--replay-speed", str(args.replay_speed)]
        for name in args.replay_ignore:
            argv += ["--replay-ignore", name]
    if getattr(args, "record_out", None):
        argv += ["--record-out", args.record_out]
        for h in args.record_redact_header:
            argv += ["--record-redact-header", h]
        for k in args.record_redact_key:
            argv += ["--record-redact-key", k]
    return argv


# ------------------------------------------------------------------ pytest plugin options

def add_pytest_options(group) -> None:
    group.addoption("--simstack-record", metavar="DIR", dest="simstack_record",
                    help="record a cassette (one file per test) of real services given by --simstack-record-api "
                         "(and --simstack-record-auth), put behind the stack in place of the stand-ins")
    group.addoption("--simstack-record-api", metavar="URL", dest="simstack_record_api",
                    help="with --simstack-record: the real api service, e.g. https://api.staging.example.com")
    group.addoption("--simstack-record-auth", metavar="URL", dest="simstack_record_auth",
                    help="with --simstack-record: the real auth service (default: the auth stand-in, not recorded)")
    group.addoption("--simstack-replay", metavar="DIR", dest="simstack_replay",
                    help="serve this cassette in place of the recorded services (faults still apply)")
    group.addoption("--simstack-replay-speed", type=float, default=1.0, dest="simstack_replay_speed",
                    help="with --simstack-replay: 1.0 recorded timing (default), 2.0 twice as fast, 0 no waiting")


def pytest_stack_kwargs(ns) -> dict:
    """``own``/``cassette`` for the plugin's Stack; raises ConfigError on a bad combination."""
    record, replay = getattr(ns, "simstack_record", None), getattr(ns, "simstack_replay", None)
    api, auth = getattr(ns, "simstack_record_api", None), getattr(ns, "simstack_record_auth", None)
    if record and replay:
        raise ConfigError("--simstack-record and --simstack-replay together", "record first, then replay")
    if (api or auth) and not record:
        raise ConfigError("--simstack-record-api/--simstack-record-auth without --simstack-record DIR",
                          "add --simstack-record DIR (where the cassette goes)")
    if record:
        if not api:
            raise ConfigError(f"--simstack-record {record!r} needs the real api service",
                              "add --simstack-record-api URL (and --simstack-record-auth URL)")
        check_target("--simstack-record-api", api)
        if auth:
            check_target("--simstack-record-auth", auth)
        own = [OwnService("api", url=api)] + ([OwnService("auth", url=auth)] if auth else [])
        return {"own": own, "cassette": RecordOptions.prepare(record)}
    if replay:
        return replaying(replay, getattr(ns, "simstack_replay_speed", 1.0))
    return {}
