"""The `simstack` command."""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from .repro import REPROS
from .resources import SCENARIOS_ENV
from .services import TOXIPROXY_PORT_OPTION, port_option
from .shared.constants import (DEFAULT_EMAIL, ENV_CLI_BYPASS_KEY, ENV_JWT_SECRET, ENV_UP_LOG, MODES, NO_PROXY,
                               PROFILES)
from .shared.errors import NotRunning, SimstackError
from .shared.faults import KINDS, Fault
from .stack import FaultControl, Stack, launcher_class
from .terminal import fit
from . import own, recording, report, state

# `ws-mode healthy` is "no WebSocket fault at all". It was called `fixed`, which read like
# `race_on_accept -p fixed=true` (the slow registration *with* the fix): that name stays as a
# deprecated alias that says so.
WS_MODES = {
    "healthy": [],
    "race_on_accept": [{"kind": "race_on_accept", "target": "ws", "params": {"fixed": False}}],
    "setup_error": [{"kind": "setup_error", "target": "ws"}],
}
WS_MODE_ALIASES = {"fixed": "healthy"}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        state.reap()   # what killed commands and sessions left behind
        return args.func(args) or 0
    except SimstackError as exc:
        print(f"simstack: error: {exc.message}" + (f" -> {exc.hint}" if exc.hint else ""), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:   # `simstack watch | head`
        return 0
    except Exception as exc:   # never a traceback: say what happened and how to see more
        if os.environ.get("SIMSTACK_DEBUG"):
            raise
        print(f"simstack: error: unexpected {exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
              " -> this is a simstack bug: rerun with SIMSTACK_DEBUG=1 to see where, and report it", file=sys.stderr)
        return 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="simstack", description="A locally simulated staging stack for offline reproduction.")
    sub = p.add_subparsers(metavar="COMMAND")

    def cmd(name: str, func, help: str) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help, description=help)
        c.set_defaults(func=func)
        return c

    def stack_options(c: argparse.ArgumentParser) -> None:
        c.add_argument("--mode", choices=MODES, default="local", help="local processes, docker containers, or auto")
        c.add_argument("--profile", choices=PROFILES, default="staging", help="timing profile (default staging)")

    c = cmd("up", cmd_up, "start a stack and print its endpoints")
    stack_options(c)
    c.add_argument("--detach", action="store_true", help="return once healthy; the stack keeps running")
    c.add_argument("--scenario", help="apply this scenario's faults once the stack is up")
    c.add_argument("--auth-policy", choices=("lenient", "strict"), default="lenient")
    c.add_argument("--bypass-key", default=os.environ.get(ENV_CLI_BYPASS_KEY) or None,
                   help=f"require this X-E2E-Bypass-Key on /auth/e2e/test-auth (prefer ${ENV_CLI_BYPASS_KEY}: "
                        "an option is visible in `ps`)")
    c.add_argument("--jwt-secret", default=os.environ.get(ENV_JWT_SECRET) or None,
                   help=f"HS256 secret the stand-ins sign and verify with (prefer ${ENV_JWT_SECRET}); default: "
                        "random per stack in strict mode, the public simstack-dev-secret in lenient mode")
    for name in ("api", "ws", "auth"):
        c.add_argument(port_option(name), type=int, default=0, help=f"host port of the {name} endpoint (0: any free)")
    c.add_argument(TOXIPROXY_PORT_OPTION, type=int, default=0, help="host port of Toxiproxy's API (0: any free)")
    c.add_argument("--redirect", metavar="HOST=SERVICE", action="append", default=[],
                   help="serve TLS for HOST (a throwaway CA) and pass it to SERVICE (api, ws, auth), for clients "
                        "outside pytest; see `simstack env --redirect` (repeatable)")
    own.add_options(c)
    recording.add_replay_options(c)

    c = cmd("record", cmd_record, "start a stack in front of real services and record what they answer")
    c.add_argument("--api-url", required=True, help="the real api service, e.g. https://api.staging.example.com")
    c.add_argument("--auth-url", help="the real auth service (default: the auth stand-in, not recorded)")
    c.add_argument("--detach", action="store_true", help="return once healthy; `simstack down` stops the recording")
    recording.add_record_options(c)

    c = cmd("drift", cmd_drift, "replay a cassette's requests against a target and list where its answers differ")
    from .drift import add_arguments as drift_arguments
    drift_arguments(c)

    c = cmd("down", cmd_down, "stop the running stack(s)")
    c.add_argument("--id", help="only this stack")

    cmd("status", cmd_status, "list running stacks and their endpoints")

    c = cmd("env", cmd_env, "print export lines for the running stack, with a fresh token")
    c.add_argument("--id")
    c.add_argument("--email", default=DEFAULT_EMAIL)
    c.add_argument("--redirect", metavar="HOST=SERVICE", action="append", default=[],
                   help="also print the CA bundle, the port and /etc/hosts lines for HOST, served by a stack "
                        "started with `simstack up --redirect HOST=SERVICE` (repeatable)")

    c = cmd("logs", cmd_logs, "print a service's log (api, auth, toxiproxy; with a service of your own, "
            "api is yours and api-gateway the gateway in front of it)")
    c.add_argument("service", choices=("api", "auth", "toxiproxy", "api-gateway", "auth-gateway"))
    c.add_argument("--id")

    c = cmd("ws-mode", cmd_ws_mode, "switch the WebSocket behaviour of the running stack: healthy (no fault), "
            "race_on_accept (the 1011 race, unfixed) or setup_error")
    c.add_argument("behaviour", choices=tuple(WS_MODES) + tuple(WS_MODE_ALIASES),
                   help="`fixed` is a deprecated name of healthy")
    c.add_argument("--id")

    c = cmd("fault", None, "add, list, remove and reset faults on the running stack")
    fsub = c.add_subparsers(metavar="ACTION")
    f = fsub.add_parser("kinds", help="list fault kinds, parameters and client signatures")
    f.add_argument("--markdown", action="store_true", help="as the README's fault catalogue table")
    f.set_defaults(func=cmd_fault_kinds)
    f = fsub.add_parser("add", help="apply a fault")
    f.add_argument("kind", help="a kind from `simstack fault kinds`")
    f.add_argument("--target", help="api, ws, auth, or dep:NAME (a dependency of a service of yours; network kinds)")
    f.add_argument("--param", "-p", action="append", default=[], metavar="NAME=VALUE")
    f.add_argument("--trigger", "-t", help="YAML, e.g. '{first: 3}' or '{probability: 0.5, seed: 7}'")
    f.add_argument("--id", dest="fault_id", help="id for the fault (default: kind-<random>)")
    f.add_argument("--stack", dest="id")
    f.set_defaults(func=cmd_fault_add)
    f = fsub.add_parser("ls", help="list active faults")
    f.add_argument("--stack", dest="id")
    f.set_defaults(func=cmd_fault_ls)
    f = fsub.add_parser("rm", help="remove a fault by id")
    f.add_argument("fault_id")
    f.add_argument("--stack", dest="id")
    f.set_defaults(func=cmd_fault_rm)
    f = fsub.add_parser("reset", help="remove every fault")
    f.add_argument("--stack", dest="id")
    f.set_defaults(func=cmd_fault_reset)

    c = cmd("scenario", None, "list and run scenarios")
    ssub = c.add_subparsers(metavar="ACTION")
    scenario_dirs = argparse.ArgumentParser(add_help=False)
    scenario_dirs.add_argument("--scenarios", action="append", default=[], metavar="DIR", type=Path,
                               help=f"also a directory of your own scenarios (repeatable; or ${SCENARIOS_ENV})")
    s = ssub.add_parser("ls", help="list scenarios (validates every file)", parents=[scenario_dirs])
    s.set_defaults(func=cmd_scenario_ls)
    s = ssub.add_parser("run", help="apply a scenario and check its expectations with a real client",
                        parents=[scenario_dirs])
    s.add_argument("names", nargs="+", metavar="NAME", help="scenario names or paths to YAML files")
    stack_options(s)
    s.add_argument("--id", help="use this running stack (default: the running one, else start one; with -f or "
                                "--api-*/--auth-*: always a new one, with your services)")
    s.add_argument("--html", metavar="PATH", help="also write an HTML timeline of the scenarios, side by side")
    own.add_options(s, file_help="for a stack started for this run (its redirect: lines are checked, not served)")
    s.set_defaults(func=cmd_scenario_run)

    c = cmd("repro", cmd_repro, "reproduce a staging failure and show what the fix changes")
    c.add_argument("what", choices=tuple(REPROS))
    stack_options(c)
    c.add_argument("--html", metavar="PATH", help="also write an HTML timeline of the three phases, side by side")

    c = cmd("report", cmd_report, "write an HTML timeline of what the running stack has seen so far")
    c.add_argument("--out", required=True, metavar="PATH", help="where to write the report (.html)")
    c.add_argument("--id")

    c = cmd("watch", cmd_watch, "follow what each request and connection goes through")
    c.add_argument("--id")
    c.add_argument("--once", action="store_true", help="print what is recorded so far and exit")

    c = cmd("e2e", cmd_e2e, "run tests/e2e under repro-1011 and fix-1011, side by side")
    from .e2e import add_arguments
    add_arguments(c)

    c = cmd("images", None, "docker mode's images")
    isub = c.add_subparsers(metavar="ACTION")
    i = isub.add_parser("build", help="build the images offline from this installation's files (needs an engine)")
    i.set_defaults(func=cmd_images_build)

    c = cmd("install-toxiproxy", cmd_install_toxiproxy, "build toxiproxy-server v2.12.0 with Go (>= 1.23)")
    c.add_argument("--bin-dir", type=Path, help="where to put it (default: where simstack looks first)")
    return p


# ------------------------------------------------------------------ stack lifecycle

def _stack_from(args) -> Stack:
    ports = {n: getattr(args, f"{n}_port") for n in ("api", "ws", "auth") if getattr(args, f"{n}_port", 0)}
    extra = recording.stack_kwargs(args)
    return Stack(mode=args.mode, profile=args.profile, ports=ports, toxiproxy_port=args.toxiproxy_port,
                 auth_policy=args.auth_policy, bypass_key=args.bypass_key, jwt_secret=args.jwt_secret,
                 own=own.from_args(args) + extra.pop("own", []), **extra)


def _redirects(args) -> list:
    """--redirect lines, after the redirect: field of the stack file (-f) if one is given."""
    from .redirect import parse_redirects
    specs = []
    if getattr(args, "stack_file", None):
        from .stackfile import read
        specs = read(args.stack_file).redirects
    return parse_redirects(specs + [(spec, "--redirect") for spec in args.redirect])


def cmd_up(args) -> int:
    redirects = _redirects(args)     # bad values stop here, before anything starts
    if args.detach:
        return _detach(args)
    stack = _stack_from(args)
    return serve(stack, args.scenario, announce=True, redirects=redirects)


def cmd_record(args) -> int:
    """`simstack up` with the real services as upstreams and a recording gateway in front of each."""
    recording.RecordOptions.check_out(args.out)
    recording.check_target("--api-url", args.api_url)
    if args.auth_url:
        recording.check_target("--auth-url", args.auth_url)
    rec = recording.RecordOptions.prepare(args.out, args.redact_header, args.redact_key)
    argv = ["up", "--api-url", args.api_url, "--record-out", rec.out]
    if args.auth_url:
        argv += ["--auth-url", args.auth_url]
    for h in args.redact_header:
        argv += ["--record-redact-header", h]
    for k in args.redact_key:
        argv += ["--record-redact-key", k]
    up = build_parser().parse_args(argv + (["--detach"] if args.detach else []))
    try:
        code = cmd_up(up)
    except BaseException:
        print(rec.finish(), file=sys.stderr)
        raise
    if not args.detach:
        print(rec.finish())
    else:
        print(f"Recording into {rec.out}; `simstack down` stops it.")
    return code


def serve(stack: Stack, scenario: str | None, announce: bool, redirects: list | None = None) -> int:
    """Run a stack until SIGINT/SIGTERM, with a record so other commands find it."""
    def stop(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, stop)
    _reap()
    if stack.mode_note:
        print(stack.mode_note, flush=True)
    redirection = None
    try:
        stack.start()
        if scenario:
            from .scenarios import load_scenario
            stack.faults.apply(load_scenario(scenario).faults)
        if redirects:
            from .redirect import Redirection
            redirection = Redirection.serve(redirects, stack.endpoints)
        state.write_record(stack, os.getpid(), scenario, redirects=redirection.record() if redirection else None)
        if announce:
            print(_describe(stack), flush=True)
            print("Ctrl-C stops the stack.", flush=True)
        while True:
            signal.pause()
    except KeyboardInterrupt:
        return 0
    finally:
        state.remove_record(stack.id)
        if redirection is not None:
            redirection.stop()
        stack.stop()


def _detach(args) -> int:
    """Start `simstack up` in its own session and wait until its record appears."""
    # Named after this process, so a later command removes it if we both die before the record exists.
    log = state.state_dir() / f"up-{state.owner_mark().replace(' ', '-')}-{int(time.time() * 1000)}.log"
    argv = [sys.executable, "-m", "simstack.cli", "up", "--mode", args.mode, "--profile", args.profile,
            "--auth-policy", args.auth_policy]
    if args.scenario:
        argv += ["--scenario", args.scenario]
    for n in ("api", "ws", "auth", "toxiproxy"):
        argv += [port_option(n), str(getattr(args, f"{n}_port"))]
    for spec in args.redirect:
        argv += ["--redirect", spec]
    argv += own.to_argv(args) + recording.to_argv(args)
    env = {k: v for k, v in os.environ.items() if k not in (ENV_CLI_BYPASS_KEY, ENV_JWT_SECRET)}
    env[ENV_UP_LOG] = str(log)
    if args.bypass_key:   # secrets travel in the environment (owner-only), never on a command line
        env[ENV_CLI_BYPASS_KEY] = args.bypass_key
    if args.jwt_secret:
        env[ENV_JWT_SECRET] = args.jwt_secret
    before = {r["id"] for r in state.records()}
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        new = [r for r in state.records() if r["id"] not in before and r["pid"] == proc.pid]
        if new:
            stack_id = new[0]["id"]
            print(_describe_record(new[0]))
            for host, r in ((new[0].get("redirects") or {}).get("hosts") or {}).items():
                print(f"  {host} -> {r['service']}, TLS on 127.0.0.1:{r['port']} "
                      f"(`simstack env --redirect {host}={r['service']}` says how to use it)")
            print(f"Detached (pid {proc.pid}). `simstack down --id {stack_id}` stops it.")
            return 0
        if proc.poll() is not None:
            raise SimstackError(f"the stack did not start:\n{log.read_text(errors='replace').strip()}",
                                f"full log: {log}")
        time.sleep(0.05)
    proc.terminate()
    raise SimstackError("the detached stack did not become healthy within 120 s", f"see {log}")


def _reap() -> None:
    """Remove containers left by runs that died (docker mode); harmless without Docker."""
    try:
        from .launchers.docker import reap_orphans
    except ImportError:
        return
    try:
        reap_orphans()
    except Exception:   # no engine: nothing to reap
        pass


def cmd_down(args) -> int:
    live = [state.find_record(args.id)] if args.id else state.records()
    for rec in live:
        try:
            os.kill(rec["pid"], signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 15
    for rec in live:
        while state.pid_alive(rec["pid"]) and time.monotonic() < deadline:
            time.sleep(0.05)
        if state.pid_alive(rec["pid"]):
            os.kill(rec["pid"], signal.SIGKILL)
        state.remove_record(rec["id"])
        if rec.get("up_log"):
            Path(rec["up_log"]).unlink(missing_ok=True)
        print(f"stopped {rec['id']} ({rec['mode']})")
    _reap()
    if not live:
        print("no stack was running")
    return 0


def _describe(stack: Stack) -> str:
    return _describe_record({"id": stack.id, "mode": stack.mode, "profile": stack.profile,
                             "startup_s": stack.startup_s, "endpoints": stack.endpoints.to_dict()})


def _describe_record(rec: dict) -> str:
    e = rec["endpoints"]
    took = f", healthy in {rec['startup_s']:.2f} s" if rec.get("startup_s") else ""
    return "\n".join([f"simstack {rec['id']}: {rec['mode']} mode, {rec['profile']} profile{took}",
                      f"  api   {e['api_url']}", f"  ws    {e['ws_url']}", f"  auth  {e['auth_url']}",
                      f"  toxiproxy API {e['toxiproxy_url']}"])


def cmd_status(args) -> int:
    _reap()
    live = state.records()
    if not live:
        print("no stack is running (`simstack up --detach` starts one)")
        return 1
    for rec in live:
        print(_describe_record(rec))
        print(f"  owner pid {rec['pid']}, logs {rec.get('log_dir') or '(containers: simstack logs)'}")
        if rec.get("scenario"):
            print(f"  scenario {rec['scenario']}")
    return 0


def cmd_env(args) -> int:
    redirects = _redirects(args)
    stack = Stack.attach(args.id)
    try:
        if redirects:
            from .redirect import env_lines
            redirect_lines = env_lines(stack.record.get("redirects"), redirects)   # refused before anything is printed
        token = stack.token(args.email)
        for k, v in stack.endpoints.env(token).items():
            print(f"export {k}={v}")
    finally:
        stack.stop()
    print(f"export NO_PROXY={NO_PROXY}")
    if redirects:
        print("\n".join(redirect_lines))
    return 0


def cmd_logs(args) -> int:
    rec = state.find_record(args.id)
    print(launcher_class(rec["mode"]).attach(rec).logs(args.service), end="")
    return 0


# ------------------------------------------------------------------ faults

def _control(args) -> FaultControl:
    """The fault API of the running stack (``--id``/``--stack`` picks one of several)."""
    return Stack.attach(getattr(args, "id", None)).faults


def cmd_ws_mode(args) -> int:
    behaviour = args.behaviour
    if behaviour in WS_MODE_ALIASES:
        behaviour = WS_MODE_ALIASES[behaviour]
        print(f"simstack: `ws-mode {args.behaviour}` is deprecated: it means `ws-mode {behaviour}` (no WebSocket "
              f"fault), not race_on_accept with fixed=true", file=sys.stderr)
    control = _control(args)
    for f in control.list():
        if f["kind"] in ("race_on_accept", "setup_error"):
            control.remove(f["id"])
    applied = control.apply(WS_MODES[behaviour])
    print(f"ws-mode {behaviour}" + (f": {', '.join(f.id for f in applied)}" if applied else ": no fault"))
    return 0


def fault_catalogue_markdown() -> str:
    """The README's fault table, generated from the declarations (a test keeps the README in step)."""
    rows = ["| kind | layer | targets | parameters (default) | what a client sees |", "| --- | --- | --- | --- | --- |"]
    for k in KINDS.values():
        params = "<br>".join(f"`{p.name}`={p.default!r}" for p in k.params) or "-"
        trig = f"<br>default trigger `{k.default_trigger}`" if k.default_trigger else ""
        rows.append(f"| `{k.name}` | {k.layer} | {', '.join(k.targets)} | {params}{trig} | {k.signature} |")
    return "\n".join(rows)


def cmd_fault_kinds(args) -> int:
    if args.markdown:
        print(fault_catalogue_markdown())
        return 0
    for kind in KINDS.values():
        print(fit(f"{kind.name}  [{kind.layer}; targets {', '.join(kind.targets)}]"))
        print(fit(f"    {kind.summary}"))
        print(fit(f"    client sees: {kind.signature}"))
        for p in kind.params:
            print(fit(f"    --param {p.name}=<{p.type.__name__}> (default {p.default!r}): {p.help}"))
        if kind.default_trigger:
            print(fit(f"    default trigger: {kind.default_trigger}"))
    return 0


def _parse_params(pairs: list[str]) -> dict:
    params = {}
    for pair in pairs:
        if "=" not in pair:
            raise SimstackError(f"--param {pair!r} is not NAME=VALUE", "e.g. --param latency_ms=500")
        name, value = pair.split("=", 1)
        params[name] = yaml.safe_load(value) if value else value
    return params


def cmd_fault_add(args) -> int:
    trigger = None
    if args.trigger:
        try:
            trigger = yaml.safe_load(args.trigger)
        except yaml.YAMLError as exc:
            why = " ".join(line.strip() for line in str(exc).splitlines() if line.strip() and line.strip() != "^")
            raise SimstackError(f"--trigger {args.trigger!r} is not valid YAML ({why})", "e.g. --trigger '{first: 3}'") from None
    fault = Fault.build(args.kind, args.target, trigger, args.fault_id, where="fault",
                        **_parse_params(args.param))   # a bad request is refused before looking for a stack
    fault = _control(args).apply([fault])[0]
    print(f"applied {fault.id}: {fault.kind} on {fault.target} {json.dumps(fault.params)} trigger {fault.trigger}")
    return 0


def cmd_fault_ls(args) -> int:
    faults = _control(args).list()
    if not faults:
        print("no faults: every endpoint is healthy")
    for f in faults:
        counts = f"  seen={f['seen']} fired={f['fired']}" if "seen" in f else ""
        print(fit(f"{f['id']}  {f['kind']} on {f['target']} ({f['layer']}) {json.dumps(f['params'])}"
                  f"{'  trigger ' + json.dumps(f['trigger']) if f.get('trigger') else ''}{counts}"))
    return 0


def cmd_fault_rm(args) -> int:
    _control(args).remove(args.fault_id)
    print(f"removed {args.fault_id}")
    return 0


def cmd_fault_reset(args) -> int:
    _control(args).reset()
    print("reset: every endpoint is back to healthy defaults")
    return 0


# ------------------------------------------------------------------ scenarios, repro, watch

def cmd_scenario_ls(args) -> int:
    from .scenarios import list_scenarios
    for s in list_scenarios(args.scenarios):
        print(fit(f"{s.name:24} {s.description.splitlines()[0] if s.description else ''}", indent=25))
    return 0


def cmd_scenario_run(args) -> int:
    from .scenarios import format_result, load_scenario, run_labelled
    scenarios = [load_scenario(n, args.scenarios) for n in args.names]   # every file is checked before anything runs
    html = report.check_path(args.html, "--html") if args.html else None
    stack = _scenario_stack(args)
    try:
        runs = [run_labelled(s, stack, f"scenario:{s.name}") for s in scenarios]
    finally:
        stack.stop()   # stops only a stack started here
    results = [r for r, _ in runs]
    for r in results:
        print(format_result(r))
    if html:
        from .repro import phase_group
        report.write(html, [phase_group(r.scenario.name, r, records) for r, records in runs],
                     "simstack scenario run", subtitle=", ".join(args.names), layout="columns")
        print(f"HTML timeline: {html}")
    return 0 if all(r.passed for r in results) else 1


def _scenario_stack(args) -> Stack:
    """The stack `scenario run` uses. Services of your own (-f, --api-*, --auth-*) describe a stack to
    start, so they always get a new one, never a running stack that may hold other services; without
    them: --id's stack, else the running one, else a new one of stand-ins."""
    services = own.from_args(args)   # a bad stack file or option stops here, before anything starts
    if services or args.stack_file:
        if args.id:
            raise SimstackError(f"--id {args.id} picks a running stack, and -f/--api-*/--auth-* describe one to start",
                                "drop --id to run on a new stack with your services, or drop the others to use that stack")
        stack = Stack(mode=args.mode, profile=args.profile, own=services)
        if stack.mode_note:
            print(stack.mode_note, flush=True)
        stack.start()
        print(f"started stack {stack.id} ({stack.mode} mode) for this run"
              + (f" with your {' and '.join(stack.own)} service" if stack.own else "") + "; it stops when the run ends",
              flush=True)
        return stack
    try:
        return Stack.attach(args.id)
    except NotRunning:
        if args.id:
            raise
        return Stack(mode=args.mode, profile=args.profile).start()


def cmd_repro(args) -> int:
    from .repro import run
    return run(args.what, mode=args.mode, profile=args.profile, html=args.html)


def cmd_report(args) -> int:
    path = report.check_path(args.out, "--out")
    stack = Stack.attach(args.id)
    try:
        print(f"HTML timeline: {report.of_running_stack(stack, path)}")
    finally:
        stack.stop()   # leaves the stack running
    return 0


def cmd_watch(args) -> int:
    from .timeline import follow
    follow(_control(args), once=args.once)
    return 0


def cmd_drift(args) -> int:
    from .drift import run
    return run(args)


def cmd_e2e(args) -> int:
    from .e2e import run
    return run(args)


# ------------------------------------------------------------------ installation

def cmd_images_build(args) -> int:
    from .images import build
    build()
    return 0


def cmd_install_toxiproxy(args) -> int:
    from .launchers.local import install_toxiproxy
    print(f"toxiproxy-server: {install_toxiproxy(args.bin_dir)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
