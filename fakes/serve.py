"""``python -m simstack.fakes.serve`` = ``python -m uvicorn`` for a stand-in on an inherited socket (``--fd``).

uvicorn wraps an inherited listening socket as AF_UNIX, so asyncio never sets
TCP_NODELAY on the TCP connections it accepts, and every response after the
first on a keep-alive connection waits ~40 ms for the client's delayed ACK.
Here the socket keeps its real family; the command line is uvicorn's own.
"""
from __future__ import annotations

import os
import socket

import uvicorn.main


def _fromfd(fd: int, family: int, type: int, proto: int = 0) -> socket.socket:
    return socket.socket(fileno=os.dup(fd))   # family and type read from the descriptor


if __name__ == "__main__":
    socket.fromfd = _fromfd   # this process only: it serves one stand-in
    uvicorn.main.main()
