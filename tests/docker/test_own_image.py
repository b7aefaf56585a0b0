"""A service of your own as an image (`--api-image`, docker mode): the tests' own backend
(tests/upstream_app.py) built into an image offline, behind Toxiproxy and the gateway, with edge
faults proven by their client signature; a missing image refused without a pull; nothing left."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosedError, InvalidStatus

from simstack import images
from simstack.launchers.docker import LABEL_STACK, docker_client
from simstack.own import OwnService
from simstack.shared.errors import StartError
from simstack.stack import Stack
from standin_client import closed_by_server, connect_ws, http, mint, recv_json, send_json

TESTS = Path(__file__).resolve().parents[1]
STAGING_1011 = "received 1011 (internal error) Internal error; then sent 1011 (internal error) Internal error"
pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def upstream_image(tmp_path_factory):
    """The tests' backend on top of the stand-ins image (its Python, Starlette and uvicorn), built offline."""
    tag = f"simstack-test/upstream:{uuid.uuid4().hex[:8]}"
    ctx = tmp_path_factory.mktemp("upstream-image")
    shutil.copy(TESTS / "upstream_app.py", ctx / "upstream_app.py")
    (ctx / "Dockerfile").write_text(
        f"FROM {images.standins_image()}\nCOPY upstream_app.py /app/\nENTRYPOINT [\"python3\"]\n"
        "CMD [\"-m\", \"uvicorn\", \"upstream_app:app\", \"--app-dir\", \"/app\", \"--host\", \"0.0.0.0\", "
        "\"--port\", \"8000\", \"--log-level\", \"warning\"]\n")
    subprocess.run(["docker", "build", "-q", "--network=none", "-t", tag, str(ctx)], check=True, capture_output=True,
                   env={**os.environ, "DOCKER_BUILDKIT": "0"}, timeout=120)
    yield tag
    subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, timeout=60)


def _labelled(stack_id: str) -> list:
    client = docker_client()
    try:
        return client.containers.list(all=True, filters={"label": f"{LABEL_STACK}={stack_id}"})
    finally:
        client.close()


async def test_an_image_of_yours_is_forwarded_with_edge_faults_and_removed_afterwards(upstream_image):
    token = mint("e2e-user-7")
    with Stack(mode="docker", profile="fast", own=[OwnService("api", image=upstream_image)]) as stack:
        names = sorted(c.name.removeprefix(f"simstack-{stack.id}-") for c in _labelled(stack.id))
        with http(stack.endpoints.api_url) as c:
            echoed = c.get("/echo?x=1").json()
        async with connect_ws(stack, token) as ws:
            hello = await recv_json(ws)
            await send_json(ws, {"type": "close", "code": 4001, "reason": "bye"})
            passed_close, _ = await closed_by_server(ws)
        stack.faults.add("close_after_accept")
        async with connect_ws(stack, token) as ws:
            with pytest.raises(ConnectionClosedError) as staging:
                await recv_json(ws)
        stack.faults.reset()
        stack.faults.add("cold_start", target="ws")
        with pytest.raises(InvalidStatus) as cold:
            async with connect_ws(stack, token):
                pass
        stack_id = stack.id
    assert names == ["api", "api-gateway", "auth", "toxiproxy"]     # api: your image
    assert (echoed["path"], echoed["query"]) == ("/echo", "x=1")
    assert hello["type"] == "hello" and hello["headers"]["authorization"] == f"Bearer {token}"
    assert (passed_close.rcvd.code, passed_close.rcvd.reason) == (4001, "bye")
    assert str(staging.value) == STAGING_1011
    assert cold.value.response.status_code == 503
    assert _labelled(stack_id) == []


def test_an_image_not_in_the_local_engine_is_refused_without_a_pull():
    missing = f"simstack-test/not-built:{uuid.uuid4().hex[:8]}"
    with pytest.raises(StartError) as info:
        Stack(mode="docker", profile="fast", own=[OwnService("api", image=missing)]).start()
    assert f"the image {missing} (--api-image) is not in the local Docker engine" in str(info.value)
    assert "never pulls" in str(info.value)


def test_an_image_that_never_becomes_healthy_is_reported_and_nothing_is_left(upstream_image):
    svc = OwnService("api", image=upstream_image, port=9999)   # it listens on 8000: nothing answers on 9999
    stack = Stack(mode="docker", profile="fast", own=[svc], startup_timeout=3)
    with pytest.raises(StartError) as info:
        stack.start()
    assert "your api image never became healthy at http://127.0.0.1:" in str(info.value)
    assert "/health within 3 s (last error: " in str(info.value)
    assert _labelled(stack.id) == []
