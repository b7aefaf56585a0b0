"""The floor for start-up figures: one bare uvicorn process serving one route.

It is started and probed the way a stack's stand-ins are (see :mod:`bench.figures.startup`), so
``stack start / floor start`` is what simstack adds on top of "Python + uvicorn answering".
The same source runs in a container (``python3 -c``), so the docker floor needs no extra image.
"""
from __future__ import annotations

PATH = "/__simstack/ping"   # the path the Stack polls, so both probes are the same request


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    status, body = (200, b'{"ok":true}') if scope["path"] == PATH else (404, b'{"detail":"Not Found"}')
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


if __name__ == "__main__":   # `python3 -c "$(cat floor.py)" PORT` in a container
    import sys

    import uvicorn

    uvicorn.run(app, host="0.0.0.0", port=int(sys.argv[1]), log_level="warning", access_log=False)
