"""A service of your own as an image (`--api-image`, docker mode): the containers it runs as and
their removal, a missing image refused without a pull, an image never healthy reported. What a
client sees through the gateway in front of the image (pass-through and every edge fault kind) is
tests/test_gateway.py's docker half; the image is the session's ``upstream_image`` (conftest)."""
from __future__ import annotations

import uuid

import pytest

from own_image import labelled
from simstack.own import OwnService
from simstack.shared.errors import StartError
from simstack.stack import Stack
from standin_client import http

pytestmark = pytest.mark.docker


def test_an_image_of_yours_runs_behind_the_gateway_and_is_removed_afterwards(upstream_image):
    with Stack(mode="docker", profile="fast", own=[OwnService("api", image=upstream_image)]) as stack:
        containers, networks = labelled(stack.id)
        with http(stack.endpoints.api_url) as c:
            answered = c.get("/echo")
    assert [c.removeprefix(f"simstack-{stack.id}-") for c in containers] == ["api", "api-gateway", "auth", "toxiproxy"]
    assert len(networks) == 1
    assert answered.headers["x-upstream"] == "tests"                 # api: your image, through the gateway
    assert labelled(stack.id) == ([], [])


def test_an_image_that_exits_at_start_is_reported_as_yours_with_its_code_and_log(upstream_image):
    """Before, it was called "the api stand-in" and its exit code was not given (or, exited before
    its port was read, a KeyError)."""
    svc = OwnService("api", image=upstream_image, env={"EXIT_AT_ONCE": "3"})
    stack = Stack(mode="docker", profile="fast", own=[svc], startup_timeout=10)
    with pytest.raises(StartError) as info:
        stack.start()
    assert f"your api image {upstream_image} exited with code 3" in str(info.value)
    assert "exiting at once with code 3" in str(info.value)
    assert f"docker run --rm {upstream_image}" in str(info.value)
    assert labelled(stack.id) == ([], [])


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
    assert labelled(stack.id) == ([], [])
