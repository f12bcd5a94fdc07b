"""Listener start-up for every protocol adapter: one socket, one :class:`Connection` per client.

RFC 8314 §3.3: with implicit TLS (ports 465, 993, 995) the TLS handshake happens before the
session sees a byte, bounded by ``Limits.tls_handshake_timeout``. With several worker processes
(``[server] workers``) every worker binds the same address with SO_REUSEPORT and the kernel
spreads the connections.

Invariants:
* Every session runs as one task handed to ``track`` at once, so the node's drain on SIGTERM
  waits for it (and cancels it after the drain period, which aborts the connection).
* The limits are taken per connection (``limits()``), so a configuration reload applies to new
  connections without restarting the listener.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
from collections.abc import Callable, Mapping
from typing import Any

from mailhouse.runtime.connection import Connection, Opener
from mailhouse.runtime.connlimits import ConnectionGate, Refusal
from mailhouse.runtime.limits import Limits


def reuse_port() -> bool:
    """Listeners bind with SO_REUSEPORT when several workers share them."""
    return os.environ.get("MAILHOUSE_WORKER") == "1"


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
    return await asyncio.get_running_loop().create_server(
        lambda: Connection(limits(), on_open, track, gate=gate, service=service, refusals=refusals),
        host,
        port,
        ssl=ssl_ctx,
        reuse_port=reuse_port(),
        family=socket.AF_INET6 if ":" in host else socket.AF_INET,
        ssl_handshake_timeout=handshake if ssl_ctx is not None else None,
    )
