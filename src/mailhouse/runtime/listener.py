"""Listener start-up for every protocol adapter: one socket, one :class:`Connection` per client.

RFC 8314 §3.3: with implicit TLS (ports 465, 993, 995) the TLS handshake happens before the
session sees a byte, bounded by ``Limits.tls_handshake_timeout``. With several worker processes
(``[server] workers``) the parent binds each address once before the fork (`bind_shared`) and
every worker accepts from that one socket, as Postfix's smtpd processes share theirs: a client
is taken by whichever worker is waiting, so a busy worker never holds the next connection in
its own queue while the other one idles (SO_REUSEPORT hashes each connection to one worker
whatever its load: with short connections the busier worker fell behind; issue 12 item 8).
An address not bound before the fork (the web server's) binds with SO_REUSEPORT in each worker.
A node that drops root (runtime/privileges.py) binds every address, the web server's too, here
first: the web server takes its socket from `shared_socket`.

Invariants:
* Every session runs as one task handed to ``track`` at once, so the node's drain on SIGTERM
  waits for it (and cancels it after the drain period, which aborts the connection).
* The limits are taken per connection (``limits()``), so a configuration reload applies to new
  connections without restarting the listener.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import ssl
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from mailhouse.runtime.connection import Connection, Opener
from mailhouse.runtime.connlimits import ConnectionGate, Refusal
from mailhouse.runtime.limits import Limits

#: Pending connections per listening socket (the kernel caps it at net.core.somaxconn): a burst
#: of one-connection-per-message senders waits in the queue instead of being reset.
BACKLOG: Final = 1024

#: Listening sockets bound by the parent before forking workers, by (host, port).
_shared: dict[tuple[str, int], socket.socket] = {}


def reuse_port() -> bool:
    """Listeners bind with SO_REUSEPORT when several workers share them."""
    return os.environ.get("MAILHOUSE_WORKER") == "1"


def bind_shared(addresses: Iterable[tuple[str, int]]) -> None:
    """Bind and listen on every (host, port) once, before forking workers: each worker's
    `start_listener` for that address accepts from the inherited socket."""
    for host, port in addresses:
        try:
            family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
        except ValueError:
            continue  # a host name may stand for several addresses: each worker binds it (SO_REUSEPORT)
        if (host, port) in _shared:
            continue
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # as create_server binds it
        sock.bind((host, port))
        sock.listen(BACKLOG)
        sock.setblocking(False)
        _shared[(host, port)] = sock


#: sd_listen_fds(3): the first descriptor systemd passes with socket activation
SD_LISTEN_FDS_START: Final = 3


def adopt_listen_fds(environ: dict[str, str] | None = None) -> list[tuple[str, int]]:
    """Take the listening sockets systemd passed (socket activation, sd_listen_fds(3)): each one
    stands in for the configured listener on its address, so nothing is bound here and the
    process needs no privilege. Returns the (host, port) of each; none without LISTEN_FDS."""
    env = os.environ if environ is None else environ
    if env.get("LISTEN_PID") != str(os.getpid()) or not env.get("LISTEN_FDS", "").isdigit():
        return []
    n = int(env["LISTEN_FDS"])
    for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        env.pop(key, None)  # sd_listen_fds(unset_environment=1): not inherited by what we start
    out = []
    for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + n):
        sock = socket.socket(fileno=fd)
        os.set_inheritable(fd, False)
        sock.setblocking(False)
        host, port = sock.getsockname()[:2]
        _shared[(host, port)] = sock
        out.append((host, port))
    return out


def shared_socket(host: str, port: int) -> socket.socket | None:
    """The socket `bind_shared` bound for HOST:PORT before forking or dropping root, if any."""
    return _shared.get((host, port))


async def start_listener(
    host: str,
    port: int,
    on_open: Opener,
    *,
    limits: Callable[[], Limits],
    ssl_ctx: ssl.SSLContext | None,
    track: Callable[[asyncio.Task[Any]], None],
    gate: ConnectionGate | None = None,
    service: str = "",
    refusals: Mapping[Refusal, bytes] | None = None,
) -> asyncio.base_events.Server:
    """Listen on HOST:PORT; each connection gets a :class:`Connection` with ``limits()`` and
    ``on_open(conn)`` runs as its session task, handed to TRACK (the node's drain set).

    SSL_CTX set means implicit TLS (RFC 8314 §3.3). GATE (the node's connection limits) admits
    each connection to SERVICE (its ``[listen]`` key) or has it answered with REFUSALS[why].
    Running out of descriptors (EMFILE) never stops the listener: asyncio logs and retries the
    accept after a second, uvloop (libuv) drops the pending client and goes on; the gate's
    per-process cap keeps headroom so it does not come to that.
    """
    handshake = limits().tls_handshake_timeout
    loop = asyncio.get_running_loop()
    factory = lambda: Connection(limits(), on_open, track, gate=gate, service=service, refusals=refusals)  # noqa: E731
    timeout = handshake if ssl_ctx is not None else None
    shared = shared_socket(host, port)
    if shared is not None:  # bound by the parent: every worker accepts from it
        return await loop.create_server(factory, sock=shared, ssl=ssl_ctx, ssl_handshake_timeout=timeout)
    return await loop.create_server(
        factory,
        host,
        port,
        ssl=ssl_ctx,
        reuse_port=reuse_port(),
        family=socket.AF_INET6 if ":" in host else socket.AF_INET,
        backlog=BACKLOG,
        ssl_handshake_timeout=timeout,
    )
