"""Loopback port helpers for test peers and benchmarks.

Invariant: only addresses in 127.0.0.0/8 are ever used; nothing here opens a
connection anywhere else.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import time

__all__ = ["free_port", "wait_port", "port_is_open", "check_loopback"]


def check_loopback(host: str) -> str:
    """Refuse anything outside 127.0.0.0/8 (test peers must never touch a real network)."""
    if not ipaddress.ip_address(host).is_loopback:
        raise ValueError(f"test peers only bind/connect to loopback, not {host!r}")
    return host


def free_port(host: str = "127.0.0.1", kind: int = socket.SOCK_STREAM) -> int:
    """Return a port that is currently free for both TCP and UDP on ``host``.

    Checking both lets the same number serve DNS (UDP+TCP). There is an inherent
    race with other processes; callers retry start-up on EADDRINUSE where it matters.
    """
    check_loopback(host)
    for _ in range(200):
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        other = socket.SOCK_DGRAM if kind == socket.SOCK_STREAM else socket.SOCK_STREAM
        try:
            with socket.socket(socket.AF_INET, other) as s2:
                s2.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                continue
            raise
        return port
    raise RuntimeError(f"no free port on {host}")


def port_is_open(host: str, port: int, timeout: float = 0.5) -> bool:
    check_loopback(host)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_port(host: str, port: int, timeout: float = 15.0, proc=None) -> None:
    """Block until a TCP connect to host:port succeeds.

    If ``proc`` (a Popen) is given and exits first, raise immediately instead of
    waiting for the timeout.
    """
    check_loopback(host)
    deadline = time.monotonic() + timeout
    while True:
        if port_is_open(host, port, timeout=0.5):
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(
                f"process {proc.pid} exited with {proc.returncode} before {host}:{port} opened"
            )
        if time.monotonic() > deadline:
            raise TimeoutError(f"{host}:{port} did not open within {timeout}s")
        time.sleep(0.05)
