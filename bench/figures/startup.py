"""Figure 1: stack start to healthy, local and docker mode, against the floor.

The floor is one bare uvicorn process serving one route (:mod:`bench.floor`), started the way the
mode starts a stand-in (local: a pre-bound socket through ``simstack.fakes.serve``; docker: a Testcontainers
container of the stand-ins image on 127.0.0.1) and probed the way the Stack probes its endpoints
(GET ``/__simstack/ping`` every 20 ms). Stack and floor runs alternate, so the ratio compares like
with like.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from simstack.launchers.local import _die_with, bind
from simstack.stack import Stack

from .. import floor
from ..harness import ROOT, entry, figure, skipped
from ..stats import ratio, summary

POLL_S = 0.02          # what Stack._wait_ready sleeps between rounds
FLOOR_TIMEOUT_S = 20.0
TARGETS = {"local": 1.5, "docker": 4.0}


def _probe_until_ok(url: str, alive, deadline: float) -> None:
    with httpx.Client(timeout=1.0, trust_env=False) as http:
        while True:
            try:
                if http.get(url).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if not alive():
                raise RuntimeError(f"the floor process exited before answering {url}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the floor did not answer {url} within {FLOOR_TIMEOUT_S:.0f} s")
            time.sleep(POLL_S)


def floor_local() -> float:
    t0 = time.perf_counter()
    sock = bind(0, "floor")
    port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "simstack.fakes.serve", "bench.floor:app", "--fd", str(sock.fileno()),
                             "--log-level", "warning", "--no-access-log"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                            pass_fds=(sock.fileno(),), cwd=ROOT, start_new_session=True,
                            preexec_fn=_die_with(os.getpid()))
    sock.close()
    try:
        _probe_until_ok(f"http://127.0.0.1:{port}{floor.PATH}", lambda: proc.poll() is None,
                        time.monotonic() + FLOOR_TIMEOUT_S)
        return time.perf_counter() - t0
    finally:
        proc.terminate()
        proc.wait(5)


def floor_docker() -> float:
    from testcontainers.core.container import DockerContainer

    from simstack import images
    from simstack.launchers.docker.engine import LOOPBACK, _configure_testcontainers

    _configure_testcontainers()
    source = Path(floor.__file__).read_text()
    t0 = time.perf_counter()
    container = (DockerContainer(images.standins_image())
                 .with_command(["-c", source, "8000"])
                 .with_kwargs(entrypoint=["python3"], labels={"simstack.bench": "floor"}))
    container.ports.update({"8000/tcp": (LOOPBACK, None)})
    try:
        container.start()
        wrapped = container.get_wrapped_container()
        wrapped.reload()
        port = int(wrapped.attrs["NetworkSettings"]["Ports"]["8000/tcp"][0]["HostPort"])

        def alive() -> bool:
            wrapped.reload()
            return wrapped.status in ("running", "created")

        _probe_until_ok(f"http://{LOOPBACK}:{port}{floor.PATH}", alive, time.monotonic() + FLOOR_TIMEOUT_S)
        return time.perf_counter() - t0
    finally:
        container.stop()
        container.get_docker_client().client.close()


def stack_start(mode: str) -> float:
    t0 = time.perf_counter()
    stack = Stack(mode=mode, profile="fast").start()
    took = time.perf_counter() - t0
    stack.stop()
    return took


def _figure(mode: str, runs: int, floor_fn) -> dict:
    stack_s, floor_s = [], []
    for _ in range(runs):
        floor_s.append(floor_fn())
        stack_s.append(stack_start(mode))
    s, f = summary(stack_s, 3), summary(floor_s, 3)
    target = TARGETS[mode]
    return entry(f"{mode} stack start to healthy", "s", s, baseline=f"bare uvicorn, {mode}",
                 baseline_median=f["median"], ratio=ratio(s["median"], f["median"]),
                 target=f"<= {target} s", met=s["median"] <= target,
                 floor=f, profile="fast",
                 measures="Stack(...).start() wall time: processes/containers up, 5 proxies created, every "
                          "endpoint answering /__simstack/ping through Toxiproxy")


@figure("startup", "stack start to healthy vs a bare uvicorn floor", ("start_local_s", "start_docker_s"))
def startup(ctx) -> dict:
    runs = ctx.n(5, 1)
    out = {"start_local_s": _figure("local", runs, floor_local)}
    ctx.log(f"   local: {out['start_local_s']['median']} s (floor {out['start_local_s']['baseline_median']} s)")
    from simstack.launchers.docker import engine_problem
    problem = engine_problem()
    if problem:
        out["start_docker_s"] = skipped("docker stack start to healthy", f"docker mode unavailable: {problem}")
    else:
        out["start_docker_s"] = _figure("docker", runs, floor_docker)
        ctx.log(f"   docker: {out['start_docker_s']['median']} s "
                f"(floor {out['start_docker_s']['baseline_median']} s)")
    return out
