"""``make repro-own-backend``: a backend that is not simstack's, in two builds, checked with the same
e2e suite with and without a slow link to its Redis.

For each build (``racy``, ``fixed``) it starts the stack with the backend as the api service, as the
committed stack file ``simstack.yaml`` describes it (its Redis behind a Toxiproxy listener, at the
address of the Redis started here), runs the team's
suite (``suite/``, through the pytest plugin, attached) and a probe of five connections, first with
a healthy link, then under ``scenarios/slow-redis.yaml`` (latency on ``dep:redis``). It prints one table and
exits 0 only when the racy build fails with 1011 under latency alone and the fixed build passes
everywhere.

Needs Debian's ``redis-server`` on PATH (the make target installs it); runs it on loopback, on a
free port, for the length of the comparison.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace
from pathlib import Path

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from simstack import state
from simstack.own import OwnService
from simstack.scenarios import load_scenario
from simstack.stack import Stack
from simstack.stackfile import load
from simstack.toxiproxy import drain_s

HERE = Path(__file__).resolve().parent
SCENARIO = HERE / "scenarios" / "slow-redis.yaml"
STACK_FILE = HERE / "simstack.yaml"
EVENTS = ("agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_completed")
BUILDS = ("racy", "fixed")


def start_redis() -> tuple[subprocess.Popen, str]:
    """redis-server on a free loopback port, no persistence; returns the process and host:port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    try:
        proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                 "--appendonly", "no", "--daemonize", "no"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    except FileNotFoundError:
        raise SystemExit("redis-server is not installed: `make redis` (apt-get install redis-server)") from None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as c:
                c.sendall(b"PING\r\n")
                if c.recv(16).startswith(b"+PONG"):
                    return proc, f"127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"redis-server did not answer PING on 127.0.0.1:{port} within 10 s")


def backend(build: str, redis_addr: str) -> OwnService:
    """The stack file's api service, in this build, calling the Redis at ``redis_addr``."""
    [api] = load(STACK_FILE)
    return replace(api, deps={"redis": redis_addr}, env={**api.env, "BUILD": build})


def venv_path() -> str:
    """$PATH with this interpreter's directory first: the stack file's ``uvicorn``, as in an active venv."""
    return os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


@dataclass
class Outcome:
    close: int | None      # close code the client received (None: still open after agent_completed)
    events: int            # agent events received


async def probe(ws_url: str, token: str, connections: int = 5) -> list[Outcome]:
    """Connections at once, each starting an agent run straight after connect, like the suites."""
    async def one() -> Outcome:
        events = 0
        try:
            async with connect(ws_url, additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=5,
                               proxy=None) as ws:
                await ws.send(json.dumps({"type": "start_agent", "payload": {"user_request": "analyse my spend"}}))
                while events < len(EVENTS):
                    if json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] in EVENTS:
                        events += 1
                return Outcome(None, events)
        except ConnectionClosed as exc:
            return Outcome(exc.rcvd.code if exc.rcvd else 1006, events)
    return list(await asyncio.gather(*(one() for _ in range(connections))))


def run_suite() -> dict[str, str]:
    """The team's suite through the pytest plugin, attached to the running stack: test -> outcome."""
    with tempfile.TemporaryDirectory(prefix="simstack-suite-") as tmp:
        junit = Path(tmp) / "junit.xml"
        subprocess.run([sys.executable, "-m", "pytest", str(HERE / "suite"), "-q", "--simstack-attach",
                        "--simstack-require-traffic", f"--junit-xml={junit}"],
                       cwd=HERE / "suite", capture_output=True, text=True, timeout=120)
        cases = list(ET.parse(junit).getroot().iter("testcase"))
    outcomes = {}
    for case in cases:
        failure = case.find("failure")
        if failure is None:
            failure = case.find("error")
        message = (failure.get("message") or "").splitlines()[0].rpartition("exceptions.")[2][:80] \
            if failure is not None else ""
        outcomes[case.get("name")] = f"FAILED: {message}" if failure is not None else "passed"
    return outcomes


def compare(redis_addr: str, out=print) -> list[dict]:
    rows = []
    scenario = load_scenario(SCENARIO)
    for build in BUILDS:
        with Stack(mode="local", profile="fast", own=[backend(build, redis_addr)]) as stack:
            state.write_record(stack, os.getpid())
            try:
                for link, faults in (("healthy", []), ("slow (latency 800 ms on dep:redis)", scenario.faults)):
                    applied = stack.faults.apply(faults)
                    suite = run_suite()
                    outcomes = asyncio.run(probe(stack.endpoints.ws_url, stack.token()))
                    time.sleep(drain_s(applied))       # let held Redis answers through before removing the toxic
                    stack.faults.reset()
                    rows.append({"build": build, "link": link, "suite": suite, "probe": outcomes})
                    out(f"  {build:5}  {link}: done")
            finally:
                state.remove_record(stack.id)
    return rows


def verdict(rows: list[dict]) -> list[str]:
    """What did not come out as expected (empty: the comparison shows the race and the fix)."""
    problems = []
    for r in rows:
        slow = r["link"] != "healthy"
        failing = r["build"] == "racy" and slow
        suite_ok = all(v == "passed" for v in r["suite"].values()) and len(r["suite"]) == 2
        if failing:
            if r["suite"].get("test_health") != "passed" or r["suite"].get("test_agent_run_delivers_all_five_events") == "passed":
                problems.append(f"racy under a slow link: expected health passed, agent run failed; got {r['suite']}")
            if any(o.close != 1011 or o.events for o in r["probe"]):
                problems.append(f"racy under a slow link: expected every connection closed 1011 with no event; "
                                f"got {r['probe']}")
        else:
            if not suite_ok:
                problems.append(f"{r['build']} with a {r['link']} link: expected the suite to pass; got {r['suite']}")
            if any(o.events != len(EVENTS) for o in r["probe"]):
                problems.append(f"{r['build']} with a {r['link']} link: expected 5 events on every connection; "
                                f"got {r['probe']}")
    return problems


def table(rows: list[dict]) -> str:
    lines = [f"{'build':6} {'link to Redis':36} {'test_health':12} {'test_agent_run_delivers_all_five_events':72} "
             f"probe (5 connections)"]
    for r in rows:
        closes = sorted({o.close for o in r["probe"] if o.close is not None})
        probe = (f"closed {','.join(map(str, closes))}; " if closes else "") + \
            f"events {'/'.join(str(o.events) for o in r['probe'])}"
        lines.append(f"{r['build']:6} {r['link']:36} {r['suite'].get('test_health', '?'):12} "
                     f"{r['suite'].get('test_agent_run_delivers_all_five_events', '?'):72} {probe}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost,::1")
    os.environ["PATH"] = venv_path()
    with tempfile.TemporaryDirectory(prefix="simstack-own-backend-") as tmp:
        os.environ["SIMSTACK_STATE_DIR"] = tmp          # the suite attaches to this comparison's stack only
        redis, addr = start_redis()
        try:
            print(f"redis-server on {addr}; the backend reaches it through Toxiproxy (dep:redis)")
            rows = compare(addr)
        finally:
            redis.terminate()
            redis.wait(5)
    print()
    print(table(rows))
    problems = verdict(rows)
    print()
    for p in problems:
        print(f"UNEXPECTED: {p}")
    if not problems:
        print("As expected: the racy build closes 1011 on every connection only when its Redis link is slow; "
              "the fixed build delivers all five agent events either way.")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
