"""Free TCP ports for tests and local clusters."""

from __future__ import annotations

import socket
from contextlib import ExitStack

__all__ = ["free_tcp_ports"]


def free_tcp_ports(k: int, host: str = "127.0.0.1") -> list[int]:
    """``k`` distinct TCP ports that are free on ``host`` right now.

    The ports are held open together (so they differ) and released on return.
    Another process may take one before it is bound again: where an address need
    not be known in advance, bind to port 0 and read ``transport.endpoint`` instead.
    """
    if type(k) is not int or k < 0:
        raise ValueError(f"k must be a non-negative int, got {k!r}")
    with ExitStack() as stack:
        ports = []
        for _ in range(k):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports
